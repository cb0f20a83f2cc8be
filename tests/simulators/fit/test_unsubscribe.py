"""Per-segment opt-out multipliers: the simulator draws them, the fit recovers them."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from campaignrl.agents.baselines import make_baseline
from campaignrl.rollout import run_policy
from campaignrl.simulators import CustomerSimulator, get_world
from campaignrl.simulators.fit import fit_simulator
from campaignrl.simulators.fit.estimators import fit_unsubscribe
from campaignrl.simulators.spec import WorldSpec

MULTIPLIERS = (0.4, 1.0, 2.5, 1.5, 0.7)
"""true opt-out multipliers of the retail segments (loyal, bargain, new, lapsing, dormant)"""


def _world_with_multipliers() -> WorldSpec:
    base = get_world("retail")
    segs = tuple(
        replace(s, unsubscribe_multiplier=m)
        for s, m in zip(base.segments, MULTIPLIERS, strict=True)
    )
    # opt-outs six to seven times the preset's: enough events per segment for a sharp test
    return base.replace(segments=segs, unsubscribe_base=(0.015, 0.08, 0.06))


def _log_bound(k: np.ndarray, total: float) -> np.ndarray:
    """5 standard errors of a fitted log-multiplier from ``k`` events (``total`` in all).

    A segment's log-multiplier is estimated from its ``k`` events (Poisson: se ``1 /
    sqrt(k)``) against the normalizing mean, itself estimated from all events (se ``1 /
    sqrt(total)``); the two add in quadrature at most.
    """
    return 5.0 * np.sqrt(1.0 / k + 1.0 / total)


def test_estimator_recovers_known_segment_multipliers():
    rng = np.random.default_rng(3)
    n, n_ch, n_seg = 400_000, 3, 4
    base = np.array([0.004, 0.02, 0.012])
    mult = np.array([0.5, 1.0, 1.8, 1.2])
    slope = 0.4
    channel = rng.integers(0, n_ch, n)
    seg = rng.choice(n_seg, n, p=[0.4, 0.3, 0.2, 0.1])
    fatigue = np.round(rng.exponential(1.0, n), 2)  # rounded: rows pool, as logged floats do
    p = base[channel] * mult[seg] * (1 + slope * fatigue)
    y = rng.random(n) < p

    fit = fit_unsubscribe(channel, fatigue, y, n_ch, seg=seg, n_seg=n_seg)

    assert fit.multiplier is not None
    sends = np.bincount(seg, minlength=n_seg)
    # identifiability: the send-weighted mean multiplier is 1, exactly up to rounding
    assert np.sum(sends * fit.multiplier) / sends.sum() == pytest.approx(1.0, abs=1e-12)
    mean = np.sum(sends * mult) / sends.sum()
    k = np.bincount(seg, y, minlength=n_seg)
    err = np.abs(np.log(fit.multiplier) - np.log(mult / mean))
    assert np.all(err <= _log_bound(k, y.sum())), (fit.multiplier, mult / mean)
    # the fitted chance of each channel's sends, on average, within 5 binomial s.e.
    fit_p = fit.base[channel] * fit.multiplier[seg] * (1 + fit.slope * fatigue)
    for c in range(n_ch):
        rows = channel == c
        se = np.sqrt(np.sum(p[rows] * (1 - p[rows]))) / rows.sum()
        assert abs(fit_p[rows].mean() - p[rows].mean()) <= 5 * se, c


def test_estimator_without_segments_is_the_per_channel_model():
    rng = np.random.default_rng(4)
    n = 100_000
    channel = rng.integers(0, 2, n)
    fatigue = np.round(rng.exponential(1.0, n), 2)
    y = rng.random(n) < np.array([0.01, 0.03])[channel] * (1 + 0.5 * fatigue)
    plain = fit_unsubscribe(channel, fatigue, y, 2)
    one = fit_unsubscribe(channel, fatigue, y, 2, seg=np.zeros(n, dtype=np.int64), n_seg=1)
    assert plain.multiplier is None
    np.testing.assert_array_equal(one.multiplier, [1.0])
    # one segment adds no parameter: the same likelihood, the same optimum
    np.testing.assert_allclose(one.base, plain.base, rtol=1e-6)
    assert one.slope == pytest.approx(plain.slope, rel=1e-6)


def test_simulator_draws_opt_outs_with_the_segment_multiplier():
    """One rested send per customer: opt-outs per segment ~ Binomial(sends, base x mult)."""
    base = get_world("retail")
    mults = (0.0, 1.0, 3.0, 1.0, 1.0)
    segs = tuple(
        replace(s, unsubscribe_multiplier=m) for s, m in zip(base.segments, mults, strict=True)
    )
    world = base.replace(segments=segs, unsubscribe_base=(0.05, 0.05, 0.05))
    n = 40_000
    sim = CustomerSimulator(world, n_customers=n, horizon=1)
    sim.reset(np.random.default_rng(0))
    email = world.catalog.action_names.index(f"{world.catalog.offers[0].name}@email")
    allowed = sim.action_masks()[:, email]
    res = sim.step(np.where(allowed, email, 0), np.random.default_rng(1))
    seg = sim.state.segment
    for s, m in enumerate(mults):
        sent = (seg == s) & allowed
        k, trials = int(res.unsubscribed[sent].sum()), int(sent.sum())
        p = 0.05 * m  # fatigue is 0 before the first contact
        assert abs(k / trials - p) <= 5 * np.sqrt(p * (1 - p) / trials) + 1e-12, world.segments[
            s
        ].name


@pytest.fixture(scope="module")
def multiplier_log() -> pd.DataFrame:
    """5,000 customers x 8 weeks of the world with known multipliers, rfm-rules + 30%."""
    res = run_policy(
        _world_with_multipliers(),
        make_baseline("rfm-rules"),
        n_customers=5_000,
        horizon=8,
        seed=21,
        epsilon=0.3,
        record=True,
    )
    assert res.log is not None
    return res.log


def test_fit_simulator_recovers_segment_multipliers(multiplier_log: pd.DataFrame):
    true = _world_with_multipliers()
    fitted = fit_simulator(multiplier_log, segments=5, seed=0)
    assert fitted.spec.segment_names == true.segment_names
    sent = multiplier_log[multiplier_log["action"] != "no_contact"]
    seg = sent[[f"segment={s}" for s in true.segment_names]].to_numpy().argmax(axis=1)
    sends = np.bincount(seg, minlength=5)
    k = np.bincount(seg, sent["unsubscribed"].to_numpy(np.float64), minlength=5)
    mult = np.array(MULTIPLIERS)
    expected = mult / (np.sum(sends * mult) / sends.sum())
    got = np.array([s.unsubscribe_multiplier for s in fitted.spec.segments])
    assert np.all(np.abs(np.log(got) - np.log(expected)) <= _log_bound(k, k.sum())), (
        got,
        expected,
    )
    # the most and the least opt-out-prone segments keep their order (2.5 against 0.4)
    assert got[2] > got[0]


def test_a_segment_without_opt_outs_is_named_in_the_notes(multiplier_log: pd.DataFrame):
    log = multiplier_log[multiplier_log["customer_id"] < multiplier_log["customer_id"].iloc[2000]]
    log = log.assign(unsubscribed=log["unsubscribed"] & (log["segment=loyal"] < 0.5))
    fitted = fit_simulator(log, segments=5, seed=0)
    loyal = fitted.spec.segment_names.index("loyal")
    assert fitted.spec.segments[loyal].unsubscribe_multiplier < 1e-3  # the MLE: no events
    note = [n for n in fitted.notes if n.startswith("segment 'loyal' had no opt-out")]
    assert len(note) == 1, fitted.notes
    # sends of living customers only: at most the logged sends of the segment
    sends = int(re.search(r"in (\d+) sends", note[0]).group(1))  # type: ignore[union-attr]
    logged = int(((log["action"] != "no_contact") & (log["segment=loyal"] > 0.5)).sum())
    assert 0 < sends <= logged
    assert all("segment 'bargain' had no opt-out" not in n for n in fitted.notes)
