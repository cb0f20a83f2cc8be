"""Tests for campaignrl.simulators.presets: the three preset worlds and what they promise."""

from __future__ import annotations

import math

import numpy as np
import pytest

from campaignrl.simulators import WORLDS, CustomerSimulator, WorldSpec, get_world, world_names
from campaignrl.simulators.calibration import calibration_report


def test_world_names_and_factories():
    assert world_names() == ("retail", "fatigue", "sparse")
    assert tuple(WORLDS) == world_names()
    for name in world_names():
        spec = get_world(name)
        assert isinstance(spec, WorldSpec) and spec.name == name
        assert math.isclose(sum(s.share for s in spec.segments), 1.0)
    assert get_world().name == "retail"


def test_unknown_world_is_refused_by_name():
    with pytest.raises(
        ValueError, match="`world` must be one of 'retail', 'fatigue', 'sparse', got 'shop'"
    ):
        get_world("shop")


def test_overrides_are_applied_and_validated():
    spec = get_world("sparse", contact_cap=1, margin_rate=0.5)
    assert (spec.contact_cap, spec.margin_rate, spec.name) == (1, 0.5, "sparse")
    with pytest.raises(ValueError, match=r"`WorldSpec\.fatigue_decay` must be < 1\.0, got 1\.0"):
        get_world("fatigue", fatigue_decay=1.0)
    with pytest.raises(ValueError, match=r"unknown WorldSpec field\(s\) \['horizon'\]"):
        get_world("retail", horizon=10)


def test_fatigue_and_sparse_are_retail_with_documented_changes():
    retail, fatigue, sparse = (get_world(n) for n in world_names())
    for r, f, s in zip(retail.segments, fatigue.segments, sparse.segments, strict=True):
        assert f.fatigue_sensitivity == pytest.approx(6 * r.fatigue_sensitivity)
        assert f.conversion_logit == pytest.approx(r.conversion_logit + 1.5)
        assert s.conversion_logit == pytest.approx(r.conversion_logit - 2.6)
        assert s.organic_rate == pytest.approx(0.3 * r.organic_rate)
        assert (f.share, s.share, f.open_rates) == (r.share, r.share, r.open_rates)
    assert fatigue.fatigue_decay == 0.85 > retail.fatigue_decay
    assert fatigue.fatigue_organic_penalty > 0 == retail.fatigue_organic_penalty
    assert fatigue.unsubscribe_fatigue_slope > retail.unsubscribe_fatigue_slope
    assert (retail.contact_cap, retail.cap_window) == (3, 4)
    assert sparse.offer_tastes == retail.offer_tastes == fatigue.offer_tastes


def test_presets_are_fresh_objects():
    assert get_world("retail") is not get_world("retail")
    assert get_world("retail").to_dict() == get_world("retail").to_dict()


# ---------------------------------------------------------------- calibration (DESIGN.md)


@pytest.fixture(scope="module")
def reports():
    """Each preset's calibration report at its default cadence (20,000 customers)."""
    return {n: calibration_report(get_world(n)).set_index("channel") for n in world_names()}


@pytest.mark.parametrize("channel", ["email", "sms"])
def test_sparse_world_converts_under_one_percent_per_contact(reports, channel):
    # presets.sparse: "Rare conversions (under 1% per contact)"
    assert reports["sparse"].loc[channel, "converted"] < 0.01


def test_sparse_world_converts_far_less_than_retail(reports):
    for channel in ("email", "sms", "push"):
        ratio = (
            reports["sparse"].loc[channel, "converted"]
            / reports["retail"].loc[channel, "converted"]
        )
        assert ratio < 0.35


def test_retail_email_open_rate_is_in_the_survey_range(reports):
    assert 0.10 <= reports["retail"].loc["email", "opened"] <= 0.30


def test_retail_sms_is_reachable_for_30_to_60_percent(reports):
    r = reports["retail"]
    assert 0.30 <= r.loc["sms", "reachable"] <= 0.60
    assert 0.30 <= r.loc["sms", "reachable"] / r.loc["email", "reachable"] <= 0.60  # of the list
    assert r.loc["email", "reachable"] > 0.8  # "most customers"
    assert 0.40 <= r.loc["push", "reachable"] <= 0.60


def test_retail_opt_outs_per_send(reports):
    r = reports["retail"]
    assert r.loc["email", "opted_out"] < 0.005  # over 0.5% signals fatigue
    assert 0.005 <= r.loc["sms", "opted_out"] <= 0.03  # surveys: 1-2%


def test_fatigue_world_shows_fatigue_in_its_rates(reports):
    f, r = reports["fatigue"], reports["retail"]
    assert f.loc["email", "opted_out"] > 0.005  # the fatigue signal of DESIGN.md
    for channel in ("email", "sms", "push"):
        assert f.loc[channel, "opened"] < r.loc[channel, "opened"]


def test_winback_sends_open_less(reports):
    r = reports["retail"]
    assert (r["winback_opened"] < 0.8 * r["opened"]).all()


# ---------------------------------------------------------------- the MDP: restraint pays


def expected_return(world: str, policy: str, n: int = 5000, horizon: int = 26) -> np.ndarray:
    """Per-customer sum of exact expected immediate rewards along one simulated trajectory.

    Same population (seed) for every policy; summing E[r | s, a] instead of r removes the
    purchase noise, which leaves the policy's effect on the state as the signal.
    """
    sim = CustomerSimulator(get_world(world), n, horizon)
    rng = np.random.default_rng(0)
    sim.reset(rng)
    rows = np.arange(n)
    total = np.zeros(n)
    while not sim.done:
        masks, table = sim.action_masks(), sim.expected_reward()
        best_contact = 1 + np.where(masks[:, 1:], table[:, 1:], -np.inf).argmax(axis=1)
        best_contact = np.where(masks[:, 1:].any(axis=1), best_contact, 0)
        if policy == "greedy":  # myopic: best expected reward now, no_contact included
            actions = table.argmax(axis=1)
        elif policy == "none":
            actions = np.zeros(n, dtype=np.int64)
        elif policy == "every5":  # the best contact once every five weeks
            actions = best_contact if sim.t % 5 == 0 else np.zeros(n, dtype=np.int64)
        total += table[rows, actions]
        sim.step(actions, rng)
    return total


def paired_gap(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    d = a - b
    return float(d.mean()), float(d.std(ddof=1) / math.sqrt(d.size))


def test_fatigue_world_is_an_mdp_where_restraint_pays():
    greedy, none, every5 = (expected_return("fatigue", p) for p in ("greedy", "none", "every5"))
    # the myopic choice contacts nearly everyone every week...
    gap, se = paired_gap(none, greedy)
    assert gap > 4 * se, "sending nothing should beat greedy weekly sends"
    gap, se = paired_gap(every5, none)
    assert gap > 4 * se, "a send every five weeks should beat sending nothing"


def test_retail_world_rewards_acting_greedily():
    greedy, none, every5 = (expected_return("retail", p) for p in ("greedy", "none", "every5"))
    gap, se = paired_gap(greedy, every5)
    assert gap > 4 * se
    gap, se = paired_gap(every5, none)
    assert gap > 4 * se


def test_fatigue_world_allows_weekly_sends():
    # presets.fatigue: "weekly sends are allowed (no binding cap)": 4 contacts in 4 weeks.
    spec = get_world("fatigue")
    sim = CustomerSimulator(spec, 2000, 12)
    rng = np.random.default_rng(1)
    sim.reset(rng)
    email = spec.catalog.action_index("content@email")
    for week in range(12):
        reachable = sim.state.consent[:, 0] & ~sim.state.unsubscribed[:, 0]
        assert sim.action_masks()[reachable, email].all(), f"email masked in week {week}"
        sim.step(np.where(reachable, email, 0), rng)
