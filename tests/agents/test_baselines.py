"""Baselines: one contract for all of them, then a known answer for each."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from float_bounds import U32

from campaignrl.agents.baselines import (
    BASELINES,
    Baseline,
    RestrainedOracle,
    StaticBest,
    baseline_names,
    make_baseline,
)
from campaignrl.catalog import Catalog, Channel, Offer, default_catalog
from campaignrl.envs.observation import ObservationEncoder
from campaignrl.envs.vector import CampaignVectorEnv
from campaignrl.simulators.core import CustomerSimulator
from campaignrl.simulators.presets import get_world, world_names

HORIZON = 6

# ---------------------------------------------------------------------- helpers


def _make_fitted(name: str, world: str, seed: int = 0) -> Baseline:
    policy = make_baseline(name)
    policy.fit(get_world(world), HORIZON, np.random.default_rng(seed))
    return policy


def _state_snapshot(sim: CustomerSimulator) -> dict[str, object]:
    return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in vars(sim.state).items()}


def _assert_same_state(before: dict[str, object], sim: CustomerSimulator) -> None:
    after = vars(sim.state)
    for key, value in before.items():
        if isinstance(value, np.ndarray):
            assert np.array_equal(value, after[key]), key
        else:
            assert value == after[key], key


def _assert_valid_probabilities(probs: np.ndarray, masks: np.ndarray) -> None:
    assert probs.shape == masks.shape
    assert np.issubdtype(probs.dtype, np.floating)
    assert np.all(np.isfinite(probs))
    assert np.all(probs >= 0.0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    assert np.all(probs[~masks] == 0.0), "mass on a masked action"


# ---------------------------------------------------------------------- registry


def test_baseline_names_are_the_documented_six():
    assert baseline_names() == (
        "random",
        "no-contact",
        "static-best",
        "rfm-rules",
        "myopic-oracle",
        "restrained-oracle",
    )
    for name in baseline_names():
        policy = make_baseline(name)
        assert isinstance(policy, Baseline)
        assert policy.name == name
        assert isinstance(policy, BASELINES[name])
    privileged = {n for n in baseline_names() if BASELINES[n].privileged}
    assert privileged == {"myopic-oracle", "restrained-oracle"}


@pytest.mark.parametrize(
    ("name", "kwargs", "err", "match"),
    [
        ("nope", {}, ValueError, r"`policy` must be one of .*got 'nope'"),
        ("Random", {}, ValueError, r"`policy` must be one of .*got 'Random'"),
        ("", {}, ValueError, r"`policy` must be one of .*got ''"),
        ("myopic_oracle", {}, ValueError, r"`policy` .*got 'myopic_oracle'"),
        (
            "static-best",
            {"pilot_customers": 0},
            ValueError,
            r"`pilot_customers` must be >= 1, got 0",
        ),
        (
            "static-best",
            {"pilot_customers": 10.0},
            TypeError,
            r"`pilot_customers` must be of type int, got float 10.0",
        ),
        (
            "restrained-oracle",
            {"fatigue_threshold": -0.5},
            ValueError,
            r"`fatigue_threshold` must be >= 0.0, got -0.5",
        ),
        (
            "restrained-oracle",
            {"fatigue_threshold": float("nan")},
            ValueError,
            r"`fatigue_threshold` must be finite",
        ),
        (
            "restrained-oracle",
            {"fatigue_threshold": "1"},
            TypeError,
            r"`fatigue_threshold` must be of type .*got str '1'",
        ),
    ],
)
def test_make_baseline_refuses_bad_input(name, kwargs, err, match):
    with pytest.raises(err, match=match):
        make_baseline(name, **kwargs)


# ---------------------------------------------------------------------- the shared contract


@pytest.mark.parametrize("world", world_names())
@pytest.mark.parametrize("name", baseline_names())
def test_baseline_contract(name, world):
    """Every baseline, every preset world, every period of a short campaign."""
    policy = _make_fitted(name, world)
    twin = _make_fitted(name, world)  # a second instance must agree (no hidden state)
    env = CampaignVectorEnv(300, world=world, horizon=HORIZON)
    obs, _ = env.reset(seed=11)
    sim = env.simulator
    rng = np.random.default_rng(12)
    for _ in range(HORIZON):
        masks = env.action_masks()
        before = _state_snapshot(sim)
        obs_before = obs.copy()
        probs = policy.probabilities(obs, masks, sim)
        _assert_valid_probabilities(probs, masks)
        # Deterministic for a fixed state, and reading it does not change it.
        assert np.array_equal(policy.probabilities(obs, masks, sim), probs)
        assert np.array_equal(twin.probabilities(obs, masks, sim), probs)
        _assert_same_state(before, sim)
        assert np.array_equal(obs, obs_before)
        # Masks stricter than the world's own (e.g. a business rule) are respected too.
        strict = masks & (rng.random(masks.shape) < 0.5)
        strict[:, 0] = True
        _assert_valid_probabilities(policy.probabilities(obs, strict, sim), strict)
        actions = np.array([rng.choice(probs.shape[1], p=row) for row in probs])
        obs, _, _, _, info = env.step(actions)
        assert not info["masked"].any(), "a baseline chose an action the world refuses"
    assert isinstance(policy.describe(), str) and policy.describe().startswith(name)


# ---------------------------------------------------------------------- known answers


@pytest.fixture
def retail_sim():
    sim = CustomerSimulator(get_world("retail"), 2_000, HORIZON)
    sim.reset(np.random.default_rng(21))
    # Let some history build up: contacts, fatigue, opt-outs, caps.
    rng = np.random.default_rng(22)
    for _ in range(3):
        masks = sim.action_masks()
        p = masks / masks.sum(axis=1, keepdims=True)
        sim.step(np.array([rng.choice(p.shape[1], p=row) for row in p]), rng)
    return sim


def _obs(sim: CustomerSimulator) -> np.ndarray:
    st = sim.state
    return ObservationEncoder(sim.spec, sim.horizon).encode(st, st.consent & ~st.unsubscribed)


def test_random_is_uniform_over_masks(retail_sim):
    masks = retail_sim.action_masks()
    probs = make_baseline("random").probabilities(_obs(retail_sim), masks, retail_sim)
    k = masks.sum(axis=1, keepdims=True)
    assert np.array_equal(probs, masks / k)
    assert len(np.unique(k)) > 1  # the test population has varied masks


def test_no_contact_puts_all_mass_on_action_zero(retail_sim):
    masks = retail_sim.action_masks()
    probs = make_baseline("no-contact").probabilities(_obs(retail_sim), masks, retail_sim)
    expected = np.zeros(masks.shape)
    expected[:, 0] = 1.0
    assert np.array_equal(probs, expected)


def _argmax_allowed(values: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Plain loop, independent of greedy_probabilities: best allowed, lowest index on ties."""
    out = np.empty(values.shape[0], dtype=np.int64)
    for i in range(values.shape[0]):
        best_a, best_v = -1, -np.inf
        for a in range(values.shape[1]):
            if masks[i, a] and values[i, a] > best_v:
                best_a, best_v = a, values[i, a]
        out[i] = best_a
    return out


@pytest.mark.parametrize("world", world_names())
def test_myopic_oracle_is_argmax_of_expected_reward(world):
    sim = CustomerSimulator(get_world(world), 1_000, HORIZON)
    sim.reset(np.random.default_rng(31))
    masks = sim.action_masks()
    rng = np.random.default_rng(32)
    strict = masks & (rng.random(masks.shape) < 0.6)
    strict[:, 0] = True
    policy = make_baseline("myopic-oracle")
    truth = sim.expected_reward()
    for m in (masks, strict):
        probs = policy.probabilities(_obs(sim), m, sim)
        chosen = _argmax_allowed(truth, m)
        expected = np.zeros(m.shape)
        expected[np.arange(m.shape[0]), chosen] = 1.0
        assert np.array_equal(probs, expected)
    # Non-trivial: the oracle contacts some customers and leaves others alone.
    chosen = probs.argmax(axis=1)
    assert 0 < (chosen > 0).mean() < 1


@pytest.mark.parametrize("threshold", [1.0, 0.5, 2])
def test_restrained_oracle_rests_fatigued_customers_only(threshold):
    sim = CustomerSimulator(get_world("fatigue"), 2_000, HORIZON)
    sim.reset(np.random.default_rng(41))
    fatigue = np.random.default_rng(42).uniform(0.0, 2.5, sim.n_customers)
    fatigue[:10] = threshold  # "at most the threshold" still contacts
    sim.state.fatigue = fatigue
    masks = sim.action_masks()
    obs = _obs(sim)
    restrained = make_baseline("restrained-oracle", fatigue_threshold=threshold)
    probs = restrained.probabilities(obs, masks, sim)
    myopic = make_baseline("myopic-oracle").probabilities(obs, masks, sim)
    tired = fatigue > threshold
    assert tired.any() and (~tired).any()
    assert np.all(probs[tired, 0] == 1.0)
    assert np.array_equal(probs[~tired], myopic[~tired])
    # The comparison is not vacuous: the myopic oracle would have contacted tired customers,
    # and contacts rested ones.
    assert (myopic[tired, 0] < 1.0).any()
    assert (probs[~tired, 0] < 1.0).any()
    assert restrained.describe() == f"restrained-oracle (fatigue <= {threshold:g})"


def test_restrained_oracle_default_threshold_is_one():
    assert RestrainedOracle().fatigue_threshold == 1.0


def _one_good_offer_world(channel_cost: float = 0.001):
    """Only ``bundle`` is worth sending: it doubles the basket at no discount; every other
    offer gives the whole basket away. Opened offers nearly always convert."""
    base = get_world("retail")
    offers = tuple(
        Offer(o.name, basket_multiplier=2.0)
        if o.name == "bundle"
        else Offer(o.name, discount_rate=1.0, incentive=o.incentive)
        for o in default_catalog().offers
    )
    channels = tuple(
        Channel(c.name, cost_per_contact=channel_cost, consent_rate=0.95, fatigue_weight=0.1)
        for c in default_catalog().channels
    )
    segments = tuple(replace(s, conversion_logit=4.0) for s in base.segments)
    return base.replace(catalog=Catalog(offers, channels), segments=segments)


def test_static_best_fit_picks_the_obviously_best_action():
    spec = _one_good_offer_world()
    policy = StaticBest(pilot_customers=2_000)
    policy.fit(spec, 8, np.random.default_rng(51))
    cat = spec.catalog
    best = policy.pilot_values.argmax()
    assert cat.offer_of[best] == 4  # bundle
    # Sent on the channel that is opened most: SMS.
    assert policy.action == cat.action_index("bundle@sms")
    # Every give-away offer loses to sending nothing; bundle on any channel beats it.
    values = policy.pilot_values
    for a, name in enumerate(cat.action_names):
        if name.startswith("bundle@"):
            assert values[a] > values[0]
        elif a > 0:
            assert values[a] < values[0]
    assert policy.describe() == "static-best (bundle@sms)"


def test_static_best_picks_no_contact_when_every_send_loses_money():
    spec = _one_good_offer_world(channel_cost=500.0)
    policy = StaticBest(pilot_customers=500)
    policy.fit(spec, 4, np.random.default_rng(52))
    assert policy.action == 0


def test_static_best_sends_its_action_where_allowed_else_nothing():
    spec = _one_good_offer_world()
    policy = StaticBest(pilot_customers=1_000)
    policy.fit(spec, 4, np.random.default_rng(53))
    a = policy.action
    sim = CustomerSimulator(spec, 500, 4)
    sim.reset(np.random.default_rng(54))
    masks = sim.action_masks()
    assert (~masks[:, a]).any() and masks[:, a].any()
    probs = policy.probabilities(_obs(sim), masks, sim)
    assert np.all(probs[masks[:, a], a] == 1.0)
    assert np.all(probs[~masks[:, a], 0] == 1.0)


def test_static_best_fit_is_reproducible():
    spec = get_world("retail")
    p1, p2 = StaticBest(pilot_customers=300), StaticBest(pilot_customers=300)
    p1.fit(spec, 4, np.random.default_rng(55))
    p2.fit(spec, 4, np.random.default_rng(55))
    assert np.array_equal(p1.pilot_values, p2.pilot_values)
    assert p1.action == p2.action


def test_static_best_refuses_to_act_before_fit(retail_sim):
    with pytest.raises(RuntimeError, match="fit"):
        make_baseline("static-best").probabilities(
            _obs(retail_sim), retail_sim.action_masks(), retail_sim
        )


# ---------------------------------------------------------------------- rfm-rules

# Each customer: (recency weeks, purchases a year, average basket, consents (email, sms,
# push), contacts in the cap window) -> the documented action.
RFM_CASES = [
    # champions: bought in the last 4 weeks, 8+ purchases
    ("champion", (2, 10, 60.0, (1, 1, 1), 0), "content@email"),
    ("champion at the edges", (4, 8, 60.0, (1, 1, 1), 0), "content@email"),
    ("champion, push only", (1, 12, 60.0, (0, 1, 1), 0), "content@push"),
    # active: bought in the last 8 weeks
    ("active", (6, 3, 60.0, (1, 1, 1), 0), "points2x@email"),
    ("recent but infrequent", (2, 7, 60.0, (1, 1, 1), 0), "points2x@email"),
    ("frequent, 5 weeks ago", (5, 10, 60.0, (1, 1, 1), 0), "points2x@email"),
    ("active at 8 weeks", (8, 3, 60.0, (1, 1, 1), 1), "points2x@email"),
    # lapsing: 8 to 26 weeks; SMS if consented and basket over $80
    ("lapsing high basket, sms", (12, 2, 120.0, (1, 1, 1), 0), "pct20@sms"),
    ("lapsing high basket, sms only", (12, 2, 120.0, (0, 1, 0), 0), "pct20@sms"),
    ("lapsing low basket", (12, 2, 60.0, (1, 1, 1), 0), "pct20@email"),
    ("lapsing just under $80", (12, 2, 79.0, (1, 1, 1), 0), "pct20@email"),
    ("lapsing high basket, no sms", (12, 2, 120.0, (1, 0, 1), 0), "pct20@email"),
    ("lapsing at 9 weeks", (9, 2, 90.0, (1, 1, 1), 0), "pct20@sms"),
    ("lapsing at 26 weeks", (26, 2, 50.0, (1, 1, 1), 0), "pct20@email"),
    ("lapsing, push only", (15, 2, 50.0, (0, 0, 1), 0), "pct20@push"),
    # dormant: over 26 weeks, at most once per cap window
    ("dormant", (40, 0, 50.0, (1, 1, 1), 0), "pct10@email"),
    ("dormant at 27 weeks", (27, 0, 150.0, (1, 1, 1), 0), "pct10@email"),
    ("dormant, push only", (52, 0, 50.0, (0, 1, 1), 0), "pct10@push"),
    ("dormant, contacted once", (40, 0, 50.0, (1, 1, 1), 1), "no_contact"),
    # cadence: at most two contacts per window for everyone
    ("champion, contacted twice", (2, 10, 60.0, (1, 1, 1), 2), "no_contact"),
    ("active, contacted once", (6, 3, 60.0, (1, 1, 1), 1), "points2x@email"),
    ("active, contacted twice", (6, 3, 60.0, (1, 1, 1), 2), "no_contact"),
    ("lapsing, contacted twice", (12, 2, 120.0, (1, 1, 1), 2), "no_contact"),
    ("lapsing, at the cap", (12, 2, 120.0, (1, 1, 1), 3), "no_contact"),
    # reachability: email first, push if not, nothing if neither (except the SMS win-back)
    ("active, sms only", (3, 3, 60.0, (0, 1, 0), 0), "no_contact"),
    ("active, unreachable", (3, 3, 60.0, (0, 0, 0), 0), "no_contact"),
]


def _rfm_population(world: str = "retail"):
    """A simulator whose customers are exactly the RFM_CASES, encoded by the real encoder."""
    spec = get_world(world)
    n = len(RFM_CASES)
    sim = CustomerSimulator(spec, n, 26)
    sim.reset(np.random.default_rng(61))
    st = sim.state
    for i, (_, (rec, freq, basket, consent, contacts), _) in enumerate(RFM_CASES):
        st.recency[i] = rec
        st.frequency[i] = freq
        st.monetary[i] = basket
        st.consent[i] = np.array(consent, dtype=bool)
        st.unsubscribed[i] = False
        st.contacts_in_window[i] = contacts
    return sim


@pytest.mark.parametrize("world", ["retail", "fatigue"])
def test_rfm_rules_follow_the_playbook(world):
    sim = _rfm_population(world)
    obs = _obs(sim)
    enc = ObservationEncoder(sim.spec, sim.horizon)
    # The observations say what the cases say (the test speaks the encoder's language).
    col = {n: i for i, n in enumerate(enc.feature_names)}
    # float32 observations: recency / 52 rounded once (u = 2^-24), times 52 in float64
    np.testing.assert_allclose(
        obs[:, col["recency"]] * 52.0, [c[1][0] for c in RFM_CASES], rtol=2 * U32
    )
    probs = make_baseline("rfm-rules").probabilities(obs, sim.action_masks(), sim)
    names = sim.spec.catalog.action_names
    got = {case[0]: names[a] for case, a in zip(RFM_CASES, probs.argmax(axis=1), strict=True)}
    expected = {case[0]: case[2] for case in RFM_CASES}
    assert got == expected
    assert np.array_equal(probs, np.eye(len(names))[probs.argmax(axis=1)])


def test_rfm_rules_unsubscribed_counts_as_unreachable():
    sim = _rfm_population()
    i = [c[0] for c in RFM_CASES].index("active")
    sim.state.unsubscribed[i, 0] = True  # opted out of email: push instead
    probs = make_baseline("rfm-rules").probabilities(_obs(sim), sim.action_masks(), sim)
    assert sim.spec.catalog.action_names[probs[i].argmax()] == "points2x@push"


def test_rfm_rules_reads_only_the_observation():
    """Hidden state (fatigue, churn, true tastes) must not change the rules' decision."""
    sim = _rfm_population()
    obs, masks = _obs(sim), sim.action_masks()
    before = make_baseline("rfm-rules").probabilities(obs, masks, sim)
    sim.state.fatigue[:] = 50.0
    sim.state.churned[:] = True
    sim.state.conversion_prob[:] = 0.0
    after = make_baseline("rfm-rules").probabilities(obs, masks, sim)
    assert np.array_equal(before, after)
