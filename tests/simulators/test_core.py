"""Tests for campaignrl.simulators.core: the vectorized customer dynamics.

Known answers come from three places: a tiny one-segment world whose probabilities are
computed by hand from the formulas in the module docstring, Monte Carlo replicas of one
frozen population state, and the documented rules of the world (consent, opt-outs, cap).
"""

from __future__ import annotations

import math
import re
from dataclasses import fields

import numpy as np
import pytest

from campaignrl.catalog import Catalog, Channel, Offer
from campaignrl.policies.sampling import sample_actions, uniform_probabilities
from campaignrl.simulators import (
    CustomerSimulator,
    CustomerState,
    SegmentSpec,
    StepResult,
    WorldSpec,
    get_world,
)

# ---------------------------------------------------------------- a tiny, hand-computable world

DEAL = Offer("deal", discount_rate=0.2, fixed_cost=1.5, basket_multiplier=1.25, incentive=0.1)
TINY_SEGMENT = {
    "name": "only",
    "share": 1.0,
    "organic_rate": 0.1,
    "basket_median": 40.0,
    "basket_sigma": 0.5,
    "open_rates": (0.3, 0.9),
    "conversion_logit": -2.0,
    "discount_sensitivity": 0.4,
    "fatigue_sensitivity": 0.2,
    "churn_base": 0.0,
    "recency_range": (0, 0),
    "frequency_mean": 2.0,
    "taste_mean": (0.5, -0.4),
}
NO_CONTACT, EMAIL, SMS = 0, 1, 2  # actions of the tiny world: no_contact, deal@email, deal@sms


def tiny_world(segment: dict | None = None, sms_consent: float = 1.0, **world) -> WorldSpec:
    """One segment, one offer, two channels; no taste or sensitivity noise."""
    catalog = Catalog(
        (DEAL,),
        (
            Channel("email", cost_per_contact=0.01, consent_rate=1.0, fatigue_weight=1.0),
            Channel("sms", cost_per_contact=0.05, consent_rate=sms_consent, fatigue_weight=2.0),
        ),
    )
    params = {
        "name": "tiny",
        "segments": (SegmentSpec(**{**TINY_SEGMENT, **(segment or {})}),),
        "offer_tastes": ((1.0, 0.5),),
        "catalog": catalog,
        "taste_noise": 0.0,
        "discount_sensitivity_noise": 0.0,
        "affinity_weight": 0.7,
        "margin_rate": 0.4,
        "channel_conversion": (1.0, 0.5),
        "unsubscribe_base": (0.0, 0.0),
        "unsubscribe_fatigue_slope": 0.0,
        "fatigue_decay": 0.5,
        "fatigue_organic_penalty": 0.1,
        "lapse_after": 3,
        "winback_open_factor": 0.5,
        "churn_slope": 0.0,
        "contact_cap": 3,
        "cap_window": 4,
    }
    return WorldSpec(**{**params, **world})


def tiny_sim(n: int = 50, horizon: int = 20, seed: int = 0, **kwargs) -> CustomerSimulator:
    sim = CustomerSimulator(tiny_world(**kwargs), n_customers=n, horizon=horizon)
    sim.reset(np.random.default_rng(seed))
    return sim


def hand_expected(action: int, fatigue: float, lapsing: bool) -> float:
    """E[r] of the tiny world, written out from the expected_reward docstring."""
    e_basket = 40.0 * math.exp(0.5**2 / 2)  # lognormal mean: median * exp(sigma^2 / 2)
    margin = 0.4
    p_org = 0.1 * math.exp(-0.1 * fatigue)  # organic * exp(-penalty * F)
    if action == NO_CONTACT:
        return p_org * margin * e_basket
    cost, open_rate, channel_conv = {EMAIL: (0.01, 0.3, 1.0), SMS: (0.05, 0.9, 0.5)}[action]
    p_open = open_rate * math.exp(-0.2 * fatigue) * (0.5 if lapsing else 1.0)
    affinity = 0.5 * 1.0 + (-0.4) * 0.5  # taste . offer
    logit = -2.0 + 0.7 * affinity + 0.4 * 10 * 0.1
    p_conv = channel_conv / (1.0 + math.exp(-logit))
    redeemed_value = (margin - 0.2) * 1.25 * e_basket - 1.5
    return (
        -cost
        + (1 - p_open) * p_org * margin * e_basket
        + p_open * (p_org + (1 - p_org) * p_conv) * redeemed_value
    )


def full(sim: CustomerSimulator, action: int) -> np.ndarray:
    return np.full(sim.n_customers, action, dtype=np.int64)


# ---------------------------------------------------------------- expected reward: by hand


def test_expected_reward_matches_hand_computation_in_a_fresh_state():
    sim = tiny_sim()
    table = sim.expected_reward()
    assert table.shape == (50, 3)
    for action in (NO_CONTACT, EMAIL, SMS):
        want = hand_expected(action, fatigue=0.0, lapsing=False)
        np.testing.assert_allclose(table[:, action], want, rtol=1e-12, atol=1e-12)
    # Spot values, so that a change of the formula in both places still shows up.
    assert table[0, NO_CONTACT] == pytest.approx(0.1 * 0.4 * 40 * math.exp(0.125), rel=1e-12)


def test_expected_reward_matches_hand_computation_with_fatigue_and_winback():
    sim = tiny_sim(n=400, seed=3)
    rng = np.random.default_rng(4)
    sim.step(full(sim, SMS), rng)  # F = 2 for everyone
    np.testing.assert_array_equal(sim.state.fatigue, 2.0)
    for row in range(sim.n_customers):
        for action in (NO_CONTACT, EMAIL, SMS):
            got = sim.expected_reward()[row, action]
            assert got == pytest.approx(hand_expected(action, 2.0, False), rel=1e-12)
    sim.step(full(sim, NO_CONTACT), rng)
    sim.step(full(sim, NO_CONTACT), rng)  # F = 0.5; non-buyers now have recency 3: lapsing
    lapsing = sim.state.recency >= 3
    assert lapsing.any() and (~lapsing).any(), "the test needs both kinds of customer"
    table = sim.expected_reward()
    for action in (NO_CONTACT, EMAIL, SMS):
        want = np.where(
            lapsing, hand_expected(action, 0.5, True), hand_expected(action, 0.5, False)
        )
        np.testing.assert_allclose(table[:, action], want, rtol=1e-12, atol=1e-12)


def test_expected_reward_of_churned_customer_is_minus_the_contact_cost():
    sim = tiny_sim(n=100, segment={"organic_rate": 0.0, "churn_base": 1.0}, churn_max=1.0)
    sim.step(full(sim, NO_CONTACT), np.random.default_rng(1))  # nobody buys -> all churn
    assert sim.state.churned.all()
    np.testing.assert_array_equal(sim.expected_reward(), np.tile([0.0, -0.01, -0.05], (100, 1)))


def test_expected_reward_of_given_actions_is_the_table_entry():
    sim = CustomerSimulator(get_world("retail"), 300, 10)
    rng = np.random.default_rng(2)
    sim.reset(rng)
    actions = rng.integers(0, sim.n_actions, 300)
    table = sim.expected_reward()
    assert table.shape == (300, 19)
    np.testing.assert_array_equal(sim.expected_reward(actions), table[np.arange(300), actions])


def test_expected_reward_of_masked_action_is_the_no_contact_value():
    sim = CustomerSimulator(get_world("retail"), 2000, 10)
    sim.reset(np.random.default_rng(5))
    masks, table = sim.action_masks(), sim.expected_reward()
    assert (~masks).any()
    rows, cols = np.nonzero(~masks)
    np.testing.assert_array_equal(table[rows, cols], table[rows, 0])
    # and an allowed contact is not (it costs something, at least)
    rows, cols = np.nonzero(masks[:, 1:])
    assert np.all(table[rows, cols + 1] != table[rows, 0])


# ---------------------------------------------------------------- expected reward: Monte Carlo

BASE_CUSTOMERS = 500
REPLICAS = 300  # 150,000 copies of one frozen state


def tile_state(spec: WorldSpec, base: CustomerState, copies: int) -> CustomerSimulator:
    """A simulator whose population is ``copies`` replicas of ``base``, in blocks."""
    sim = CustomerSimulator(spec, base.n * copies, horizon=26)
    sim.reset(np.random.default_rng(0))
    state = sim.state
    for name, value in vars(base).items():
        if name == "contact_log":  # (W, n): customers on the second axis
            value = np.tile(value, (1, copies))
        elif isinstance(value, np.ndarray):
            value = np.tile(value, (copies,) + (1,) * (value.ndim - 1))
        setattr(state, name, value)
    return sim


@pytest.fixture(scope="module", params=["retail", "fatigue"])
def frozen_state(request):
    """A population state after 6 periods of random allowed contacts: fatigue, opt-outs,
    lapsing and churned customers and capped customers all present."""
    spec = get_world(request.param)
    sim = CustomerSimulator(spec, BASE_CUSTOMERS, horizon=26)
    rng = np.random.default_rng(11)
    sim.reset(rng)
    for _ in range(6):
        actions, _ = sample_actions(uniform_probabilities(sim.action_masks()), rng)
        sim.step(actions, rng)
    state = sim.state.copy()
    assert state.churned.any() and state.unsubscribed.any() and (state.fatigue > 1).any()
    assert (state.recency >= spec.lapse_after).any()
    assert (state.contacts_in_window >= spec.contact_cap).any()
    return spec, state, sim.expected_reward()


@pytest.mark.parametrize(
    "action_name",
    ["no_contact", "content@sms", "pct20@email", "pct20@sms", "freeship@push", "bundle@email"],
)
def test_expected_reward_matches_monte_carlo_from_one_state(frozen_state, action_name):
    spec, base, base_table = frozen_state
    cat = spec.catalog
    action = cat.action_index(action_name)
    sim = tile_state(spec, base, REPLICAS)
    n = sim.n_customers
    expected = sim.expected_reward(full(sim, action))
    # A function of the state alone: the replicas agree with the original population.
    np.testing.assert_array_equal(expected, np.tile(base_table[:, action], REPLICAS))

    result = sim.step(full(sim, action), np.random.default_rng(1000 + action))
    diff = result.reward - expected
    se = diff.std(ddof=1) / math.sqrt(n)
    assert abs(diff.mean()) < 4 * se, (diff.mean(), se)

    # Power: the offer's cost (discount and fixed cost actually paid) is far larger than the
    # tolerance, so an expectation that forgot it would fail above.
    offer_index = cat.offer_of[action]
    if offer_index >= 0:
        offer = cat.offers[offer_index]
        channel = cat.channels[cat.channel_of[action]]
        paid_basket = (result.reward + channel.cost_per_contact + offer.fixed_cost) / (
            spec.margin_rate - offer.discount_rate
        )
        offer_cost = np.where(
            result.redeemed, offer.discount_rate * paid_basket + offer.fixed_cost, 0.0
        ).mean()
        if offer.discount_rate >= 0.15:
            assert offer_cost > 6 * se, (offer_cost, se)


# ---------------------------------------------------------------- response probabilities


def frequency_close(events: np.ndarray, p: float, k: float = 4.0) -> bool:
    se = math.sqrt(p * (1 - p) / events.size)
    return abs(events.mean() - p) < k * se


def test_open_and_unsubscribe_rates_follow_fatigue():
    n = 20_000
    sim = tiny_sim(
        n=n,
        seed=8,
        segment={"organic_rate": 0.0},
        unsubscribe_base=(0.1, 0.1),
        unsubscribe_fatigue_slope=0.5,
    )
    rng = np.random.default_rng(9)
    res = sim.step(full(sim, SMS), rng)  # F = 0 before the send
    assert frequency_close(res.opened, 0.9)
    assert frequency_close(res.unsubscribed, 0.1)
    res = sim.step(full(sim, EMAIL), rng)  # F = 2 before the send
    assert frequency_close(res.opened, 0.3 * math.exp(-0.2 * 2.0))
    assert frequency_close(res.unsubscribed, 0.1 * (1 + 0.5 * 2.0))


def test_organic_purchase_rate_falls_with_fatigue():
    n = 20_000
    sim = tiny_sim(n=n, seed=10, segment={"organic_rate": 0.5})
    rng = np.random.default_rng(11)
    res = sim.step(full(sim, NO_CONTACT), rng)
    assert frequency_close(res.purchased, 0.5)
    sim.state.fatigue[:] = 5.0  # as after a heavy programme
    res = sim.step(full(sim, NO_CONTACT), rng)
    assert frequency_close(res.purchased, 0.5 * math.exp(-0.1 * 5.0))


@pytest.mark.parametrize(("churn_max", "rate"), [(1.0, 0.3), (0.2, 0.2)])
def test_churn_hazard_grows_with_inactivity_up_to_the_cap(churn_max, rate):
    sim = tiny_sim(
        n=20_000,
        seed=12,
        segment={"organic_rate": 0.0, "recency_range": (5, 5)},
        churn_slope=0.1,
        churn_max=churn_max,
    )
    res = sim.step(full(sim, NO_CONTACT), np.random.default_rng(13))
    # recency is 6 after the period: hazard = 0 + 0.1 * (6 - 3), capped at churn_max
    assert frequency_close(res.churned, rate)


def test_redeemed_implies_opened_and_purchased():
    sim = CustomerSimulator(get_world("fatigue"), 5000, 10)
    rng = np.random.default_rng(14)
    sim.reset(rng)
    for _ in range(5):
        actions, _ = sample_actions(uniform_probabilities(sim.action_masks()), rng)
        res = sim.step(actions, rng)
        np.testing.assert_array_equal(res.redeemed, res.opened & res.purchased)
        assert not (res.opened & (res.action == 0)).any()
        assert not (res.unsubscribed & (res.action == 0)).any()
        assert res.opened.any() and res.redeemed.any()


# ---------------------------------------------------------------- dynamics


def test_fatigue_decays_and_adds_the_channel_weight():
    sim = tiny_sim(contact_cap=4, cap_window=4)
    rng = np.random.default_rng(0)
    expected = [(SMS, 2.0), (EMAIL, 0.5 * 2.0 + 1.0), (NO_CONTACT, 1.0), (SMS, 0.5 + 2.0)]
    for action, fatigue in expected:
        sim.step(full(sim, action), rng)
        np.testing.assert_array_equal(sim.state.fatigue, fatigue)


def test_recency_frequency_monetary_update():
    sim = tiny_sim(n=2000, seed=15, segment={"organic_rate": 0.5, "recency_range": (4, 4)})
    before = sim.state.copy()
    res = sim.step(full(sim, NO_CONTACT), np.random.default_rng(16))
    st = sim.state
    bought = res.purchased
    assert bought.any() and (~bought).any()
    np.testing.assert_array_equal(st.recency, np.where(bought, 0, 5))
    np.testing.assert_allclose(st.frequency, before.frequency * (1 - 1 / 52) + bought)
    basket = res.reward / 0.4  # no contact: reward = margin * basket
    want = np.where(bought, before.monetary + 0.3 * (basket - before.monetary), before.monetary)
    np.testing.assert_allclose(st.monetary, want, rtol=1e-12)
    assert st.t == 1


def test_churned_customers_never_purchase_nor_open():
    sim = tiny_sim(
        n=4000,
        seed=17,
        segment={"organic_rate": 0.5, "churn_base": 1.0},
        churn_max=1.0,
        unsubscribe_base=(0.3, 0.3),
    )
    rng = np.random.default_rng(18)
    res = sim.step(full(sim, NO_CONTACT), rng)
    np.testing.assert_array_equal(res.churned, ~res.purchased)  # churn_base = 1
    churned = sim.state.churned.copy()
    for action in (EMAIL, SMS, NO_CONTACT, EMAIL):
        res = sim.step(full(sim, action), rng)
        assert not (res.purchased & churned).any()
        assert not (res.opened & churned).any()
        assert not (res.unsubscribed & churned).any()  # the gone do not opt out either
        assert not res.churned[churned].any()  # churn happens once
        assert res.purchased[~churned].mean() > 0.25  # the living still buy (organic ~0.4)
        assert np.all(sim.state.churned[churned])  # and churn is for good
        churned = sim.state.churned.copy()


def test_state_copy_is_deep():
    sim = tiny_sim()
    copy = sim.state.copy()
    assert isinstance(copy, CustomerState)
    for f in fields(CustomerState):
        original = getattr(sim.state, f.name)
        if isinstance(original, np.ndarray):
            assert getattr(copy, f.name) is not original
            np.testing.assert_array_equal(getattr(copy, f.name), original)
    sim.step(full(sim, SMS), np.random.default_rng(0))
    assert copy.t == 0 and np.all(copy.fatigue == 0.0) and np.all(copy.contact_log == 0)


# ---------------------------------------------------------------- masks


def test_masks_are_consent_and_no_opt_out_and_under_cap():
    spec = get_world("retail")
    sim = CustomerSimulator(spec, 3000, 26)
    rng = np.random.default_rng(19)
    sim.reset(rng)
    for _ in range(5):
        masks = sim.action_masks()
        st = sim.state
        assert masks.shape == (3000, 19) and masks.dtype == bool
        assert masks[:, 0].all()
        recent = st.contacts_in_window - st.contact_log[st.t % spec.cap_window]
        reach = st.consent & ~st.unsubscribed & (recent < spec.contact_cap)[:, None]
        for a in range(1, 19):
            np.testing.assert_array_equal(masks[:, a], reach[:, spec.catalog.channel_of[a]])
        actions, _ = sample_actions(uniform_probabilities(masks), rng)
        sim.step(actions, rng)


def test_no_consent_masks_the_channel():
    sim = tiny_sim(n=200, sms_consent=0.0)
    assert not sim.state.consent[:, 1].any() and sim.state.consent[:, 0].all()
    masks = sim.action_masks()
    assert masks[:, [NO_CONTACT, EMAIL]].all()
    assert not masks[:, SMS].any()


def test_opted_out_channel_is_masked_and_refused():
    sim = tiny_sim(n=200, unsubscribe_base=(1.0, 0.0))
    rng = np.random.default_rng(20)
    res = sim.step(full(sim, EMAIL), rng)
    assert res.unsubscribed.all() and sim.state.unsubscribed[:, 0].all()
    masks = sim.action_masks()
    assert not masks[:, EMAIL].any() and masks[:, SMS].all()
    res = sim.step(full(sim, EMAIL), rng)
    assert res.masked.all() and (res.action == NO_CONTACT).all()
    assert not res.opened.any()


def test_stepping_a_masked_action_is_no_contact():
    sim = tiny_sim(
        n=500, sms_consent=0.0, segment={"organic_rate": 0.0}, unsubscribe_base=(0.0, 1.0)
    )
    rng = np.random.default_rng(21)
    sim.step(full(sim, EMAIL), rng)  # F = 1, one contact in the window
    before = sim.state.copy()
    res = sim.step(full(sim, SMS), rng)
    assert res.masked.all()
    np.testing.assert_array_equal(res.action, NO_CONTACT)
    # no contact cost, no open, no purchase (organic rate 0), no opt-out (sms base is 1)
    np.testing.assert_array_equal(res.reward, 0.0)
    assert not (res.opened.any() or res.purchased.any() or res.unsubscribed.any())
    np.testing.assert_array_equal(sim.state.unsubscribed, before.unsubscribed)
    # fatigue only decays; the window count does not grow
    np.testing.assert_array_equal(sim.state.fatigue, 0.5 * before.fatigue)
    np.testing.assert_array_equal(sim.state.contacts_in_window, before.contacts_in_window)
    # an allowed contact in the same world is charged
    res = sim.step(full(sim, EMAIL), rng)
    assert not res.masked.any()
    np.testing.assert_array_equal(res.reward[~res.purchased], -0.01)


def test_masks_do_not_depend_on_randomness():
    # Same state, different generators: outcomes differ, masks do not.
    spec = get_world("retail")
    a = CustomerSimulator(spec, 3000, 26)
    b = CustomerSimulator(spec, 3000, 26)
    a.reset(np.random.default_rng(22))
    b.reset(np.random.default_rng(22))
    np.testing.assert_array_equal(a.action_masks(), b.action_masks())
    ra = a.step(full(a, 0), np.random.default_rng(1))
    rb = b.step(full(b, 0), np.random.default_rng(2))
    assert not np.array_equal(ra.purchased, rb.purchased)
    assert not np.array_equal(a.state.churned, b.state.churned)
    np.testing.assert_array_equal(a.action_masks(), b.action_masks())
    np.testing.assert_array_equal(a.action_masks(), a.action_masks())  # no hidden state


def contact_whenever_allowed(cap: int, window: int, periods: int) -> list[int]:
    sim = tiny_sim(n=10, horizon=periods, contact_cap=cap, cap_window=window)
    rng = np.random.default_rng(0)
    contacts = []
    for _ in range(periods):
        allowed = sim.action_masks()[:, 1:].any(axis=1)
        # the cap masks every contact action at once, for every customer alike
        assert allowed.all() or not sim.action_masks()[:, 1:].any()
        res = sim.step(full(sim, EMAIL), rng)
        np.testing.assert_array_equal(res.masked, ~allowed)
        contacts.append(int(res.action[0] > 0))
    return contacts


CAPS = [(2, 3), (3, 4), (4, 4), (1, 1), (1, 3)]


@pytest.mark.parametrize(("cap", "window"), CAPS)
def test_contact_cap_is_never_exceeded_and_masks_every_contact(cap, window):
    contacts = contact_whenever_allowed(cap, window, periods=12)
    assert contacts[:cap] == [1] * cap  # nothing blocks the first `cap` contacts
    for start in range(len(contacts) - window + 1):
        assert sum(contacts[start : start + window]) <= cap
    if cap < window:
        assert contacts[cap] == 0  # cap reached: every contact action masked
    assert sum(contacts[cap + 1 :]) > 0  # ... and they come back when the window rolls


@pytest.mark.parametrize(
    ("cap", "window"), [(3, 4), (4, 4), (1, 1)], ids=["retail", "fatigue", "1-1"]
)
def test_contact_cap_allows_cap_contacts_in_every_window(cap, window):
    # WorldSpec.contact_cap: "most contacts a customer may get in any `cap_window`
    # consecutive periods". Contacting whenever allowed then gives, at each period t,
    # a contact iff fewer than `cap` were made in the window's other periods t-W+1..t-1.
    periods = 12
    want: list[int] = []
    for t in range(periods):
        recent = sum(want[max(0, t - window + 1) : t])
        want.append(int(recent < cap))
    assert contact_whenever_allowed(cap, window, periods) == want


# ---------------------------------------------------------------- input checks

N = 6


@pytest.mark.parametrize(
    ("actions", "match"),
    [
        (np.full(N, -1), re.escape("`actions` must be in [0, 2], got -1")),
        (np.array([0, 1, 2, 3, 0, 0]), re.escape("`actions` must be in [0, 2], got 3")),
        (np.zeros(N + 1, dtype=np.int64), re.escape("`actions` must have shape (6,), got (7,)")),
        (np.zeros((N, 1), dtype=np.int64), re.escape("`actions` must have shape (6,), got (6, 1)")),
        (0, re.escape("`actions` must have shape (6,), got ()")),
        (np.full(N, 0.5), "`actions` must be integers, got dtype float64"),
        (np.array(["no_contact"] * N), "`actions` must be integers, got dtype <U10"),
    ],
    ids=["negative", "too-large", "too-long", "column", "scalar", "fractional", "strings"],
)
def test_bad_actions_are_refused_naming_actions(actions, match):
    sim = tiny_sim(n=N)
    with pytest.raises(ValueError, match=match):
        sim.step(actions, np.random.default_rng(0))
    with pytest.raises(ValueError, match=match):
        sim.expected_reward(actions)
    assert sim.t == 0  # nothing happened


def test_integral_floats_and_lists_are_accepted_as_actions():
    a, b = tiny_sim(n=N, seed=1), tiny_sim(n=N, seed=1)
    ra = a.step(np.array([0.0, 1.0, 2.0, 0.0, 1.0, 2.0]), np.random.default_rng(2))
    rb = b.step([0, 1, 2, 0, 1, 2], np.random.default_rng(2))
    np.testing.assert_array_equal(ra.action, [0, 1, 2, 0, 1, 2])
    np.testing.assert_array_equal(ra.reward, rb.reward)


@pytest.mark.parametrize(
    ("kwargs", "err", "match"),
    [
        ({"spec": "retail"}, TypeError, "`spec` must be a WorldSpec, got str"),
        ({"n_customers": 0}, ValueError, "`n_customers` must be >= 1, got 0"),
        ({"n_customers": 2.0}, TypeError, r"`n_customers` must be of type .*, got float 2\.0"),
        ({"horizon": 0}, ValueError, "`horizon` must be >= 1, got 0"),
        ({"horizon": True}, TypeError, "`horizon` must be of type .*, got bool True"),
    ],
)
def test_constructor_refuses_bad_arguments(kwargs, err, match):
    args = {"spec": get_world("retail"), "n_customers": 10, "horizon": 5, **kwargs}
    with pytest.raises(err, match=match):
        CustomerSimulator(**args)


def test_numpy_integers_are_accepted_as_sizes():
    sim = CustomerSimulator(get_world("retail"), np.int64(3), np.int32(2))
    sim.reset(np.random.default_rng(0))
    assert sim.state.n == 3 and sim.horizon == 2


def test_use_before_reset_and_step_after_horizon_raise():
    sim = CustomerSimulator(tiny_world(), 4, horizon=2)
    with pytest.raises(RuntimeError, match="reset"):
        sim.action_masks()
    sim.reset(np.random.default_rng(0))
    rng = np.random.default_rng(1)
    sim.step(full(sim, 0), rng)
    assert not sim.done
    sim.step(full(sim, 0), rng)
    assert sim.done and sim.t == 2
    with pytest.raises(RuntimeError, match=r"episode is over \(t = horizon = 2\)"):
        sim.step(full(sim, 0), rng)
    sim.reset(rng)
    assert sim.t == 0 and not sim.done


# ---------------------------------------------------------------- determinism


def run(seed: int, world: str = "retail", n: int = 1000, periods: int = 10):
    sim = CustomerSimulator(get_world(world), n, periods)
    rng = np.random.default_rng(seed)
    policy_rng = np.random.default_rng(123)  # same actions whatever the world's seed
    sim.reset(rng)
    results: list[StepResult] = []
    while not sim.done:
        actions = policy_rng.integers(0, sim.n_actions, n)
        results.append(sim.step(actions, rng))
    return results, sim.state


@pytest.mark.parametrize("world", ["retail", "fatigue", "sparse"])
def test_same_seed_same_trajectory_different_seed_different(world):
    (res_a, st_a), (res_b, st_b) = run(7, world), run(7, world)
    for ra, rb in zip(res_a, res_b, strict=True):
        for f in fields(StepResult):
            np.testing.assert_array_equal(getattr(ra, f.name), getattr(rb, f.name))
    for f in fields(CustomerState):
        np.testing.assert_array_equal(getattr(st_a, f.name), getattr(st_b, f.name))
    res_c, st_c = run(8, world)
    assert not np.array_equal(st_a.segment, st_c.segment)
    assert not all(np.array_equal(a.reward, c.reward) for a, c in zip(res_a, res_c, strict=True))
