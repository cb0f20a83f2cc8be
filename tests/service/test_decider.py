"""Tests of the decider: known probabilities, sampling frequencies, masks, seeds, strict input."""

from __future__ import annotations

import threading
from collections import Counter

import numpy as np
import pytest

from campaignrl.policies import ConstantPolicy, Exploration, LinearPolicy, TabularPolicy
from campaignrl.service.decider import Decider, DecisionInputError, ServedPolicy

ACTIONS = ("no_contact", "pct10@email", "bundle@sms")
FEATURES = ("recency", "frequency")


def constant(epsilon: float = 0.3) -> ConstantPolicy:
    """Greedy on [0, 1, 2] with ``epsilon``: [e/3, e/3, 1 - 2e/3] when all are allowed."""
    return ConstantPolicy(
        FEATURES, ACTIONS, np.array([0.0, 1.0, 2.0]), Exploration("greedy", epsilon=epsilon)
    )


def tabular() -> TabularPolicy:
    """Two states by ``recency`` (< 5, >= 5): best action 1 in state 0, action 0 in state 1."""
    table = np.array([[0.0, 3.0, 1.0], [2.0, 0.0, 1.0]])
    return TabularPolicy(
        FEATURES, ACTIONS, ["recency"], [[5.0]], table, Exploration("greedy", epsilon=0.6)
    )


ROW = {"recency": 2.0, "frequency": 1}


@pytest.mark.parametrize(
    ("policy", "features", "mask", "expected"),
    [
        (constant(0.3), ROW, None, [0.1, 0.1, 0.8]),
        # action 2 masked: action 1 is the best allowed, 0.3 spread over the two allowed
        (constant(0.3), ROW, ["no_contact", "pct10@email"], [0.15, 0.85, 0.0]),
        (constant(0.3), ROW, [True, False, True], [0.15, 0.0, 0.85]),
        (constant(0.0), ROW, None, [0.0, 0.0, 1.0]),
        # state 0 (recency 2 < 5): 1 - 0.6 + 0.2 on action 1
        (tabular(), ROW, None, [0.2, 0.6, 0.2]),
        (tabular(), {"recency": 7.5, "frequency": 0.0}, None, [0.6, 0.2, 0.2]),
        (tabular(), {"recency": 7.5, "frequency": 0.0}, ["bundle@sms"], [0.0, 0.0, 1.0]),
    ],
)
def test_known_probabilities(policy, features, mask, expected):
    d = Decider(policy, seed=0, policy_version=7).decide(features, mask)
    np.testing.assert_allclose(d.probabilities, expected, atol=1e-15)
    assert d.propensity == pytest.approx(expected[d.action])
    assert d.propensity > 0
    assert d.policy_version == 7
    assert d.action_name == ACTIONS[d.action]
    np.testing.assert_array_equal(d.features, [features["recency"], features["frequency"]])
    assert (d.mask is None) == (mask is None)


def test_offer_and_channel_from_the_action_name():
    policy = ConstantPolicy(FEATURES, ACTIONS, np.array([0.0, 0.0, 1.0]))
    d = Decider(policy, seed=0).decide(ROW)
    assert (d.action, d.offer, d.channel) == (2, "bundle", "sms")
    d = Decider(policy, seed=0).decide(ROW, ["no_contact"])
    assert (d.action, d.offer, d.channel, d.propensity) == (0, None, None, 1.0)


def test_sampled_frequencies_match_the_logged_propensities():
    n = 20_000
    rows = [{"recency": float(r), "frequency": 0.0} for r in np.arange(n) % 10]
    decisions = Decider(tabular(), seed=3).decide_batch(rows)
    for state in (0, 1):
        chosen = [d for d in decisions if (d.features[0] >= 5) == bool(state)]
        probs = chosen[0].probabilities
        counts = np.bincount([d.action for d in chosen], minlength=3)
        freq = counts / len(chosen)
        # 4.5 standard errors of a binomial share: a false alarm about once in 150,000 runs
        bound = 4.5 * np.sqrt(probs * (1 - probs) / len(chosen))
        assert np.all(np.abs(freq - probs) <= bound), (state, freq, probs)
        assert all(d.propensity == probs[d.action] for d in chosen)


def test_masks_are_respected():
    rng = np.random.default_rng(0)
    masks = rng.random((2_000, 3)) < 0.5
    masks[np.arange(2_000), rng.integers(0, 3, 2_000)] = True
    x = np.column_stack([np.arange(2_000) % 10, np.zeros(2_000)]).astype(np.float64)
    decisions = Decider(tabular(), seed=1).decide_batch(x, masks)
    for d, m in zip(decisions, masks, strict=True):
        assert m[d.action]
        assert np.all(d.probabilities[~m] == 0.0)
        assert d.probabilities.sum() == pytest.approx(1.0)
        np.testing.assert_array_equal(d.mask, m)


def test_columns_hold_the_decisions_row_by_row():
    # The service builds its records from the columns: the same draws as decide_batch, with
    # masks logged only for the rows that gave one, and nothing writable.
    rng = np.random.default_rng(2)
    n = 500
    x = np.column_stack([np.arange(n) % 10, np.zeros(n)]).astype(np.float64)
    masks: list[object] = [None] * n
    for i in range(0, n, 3):
        masks[i] = [True, bool(rng.random() < 0.5), True]
    rows = Decider(tabular(), seed=9, policy_version=4).decide_batch(x, masks)
    columns = Decider(tabular(), seed=9, policy_version=4).decide_columns(x, masks)
    assert len(columns) == n and columns.policy_version == 4
    assert columns.action_names == ACTIONS
    assert columns.actions.tolist() == [d.action for d in rows]
    assert columns.propensities.tolist() == [d.propensity for d in rows]
    np.testing.assert_array_equal(columns.probabilities, [d.probabilities for d in rows])
    np.testing.assert_array_equal(
        columns.propensities, columns.probabilities[np.arange(n), columns.actions]
    )
    assert columns.given == [m is not None for m in masks]
    assert columns.masks is not None
    for i, d in enumerate(rows):
        assert (d.mask is None) == (masks[i] is None)
        if d.mask is not None:
            np.testing.assert_array_equal(columns.masks[i], d.mask)
    for array in (columns.actions, columns.probabilities, columns.features, columns.masks):
        assert not array.flags.writeable
    empty = Decider(tabular(), seed=9).decide_columns(np.empty((0, 2)))
    assert len(empty) == 0 and empty.probabilities.shape == (0, 3)


def test_a_single_decision_as_columns_names_fields_without_a_row():
    decider = Decider(constant(0.3), seed=0)
    one = decider.decide_columns(ROW, ["bundle@sms"], single=True)
    assert one.actions.tolist() == [2] and one.propensities.tolist() == [1.0]
    with pytest.raises(DecisionInputError, match=r"^`features.frequency` must be a finite"):
        decider.decide_columns({"recency": 1.0, "frequency": True}, single=True)
    with pytest.raises(DecisionInputError, match=r"^`\[0\].features.frequency` must be"):
        decider.decide_columns([{"recency": 1.0, "frequency": True}])


def test_the_same_seed_and_calls_give_the_same_decisions():
    def run(seed: int) -> list[int]:
        decider = Decider(constant(0.9), seed=seed)
        out = [decider.decide(ROW).action for _ in range(200)]
        out += [d.action for d in decider.decide_batch([ROW] * 300)]
        return out

    assert run(5) == run(5)
    assert run(5) != run(6)


def test_threads_share_one_stream_of_draws():
    # Every call draws one uniform from the locked Generator and the probabilities never
    # change: whatever the interleaving, the multiset of actions is the sequential one's.
    sequential = Decider(constant(0.9), seed=11)
    expected = Counter(sequential.decide(ROW).action for _ in range(1_000))
    decider = Decider(constant(0.9), seed=11)
    got: list[int] = []
    lock = threading.Lock()

    def work() -> None:
        mine = [decider.decide(ROW).action for _ in range(250)]
        with lock:
            got.extend(mine)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert Counter(got) == expected


def test_exploration_changes_without_touching_the_policy():
    policy = constant(0.3)
    decider = Decider(policy, seed=0)
    decider.set_exploration(0.6)
    np.testing.assert_allclose(decider.decide(ROW).probabilities, [0.2, 0.2, 0.6])
    assert decider.exploration_epsilon == 0.6
    # the served policy and its parameters are untouched
    assert decider.served.policy is policy
    assert policy.exploration.epsilon == 0.3
    np.testing.assert_array_equal(policy.score_vector, [0.0, 1.0, 2.0])
    decider.set_exploration(None)
    np.testing.assert_allclose(decider.decide(ROW).probabilities, [0.1, 0.1, 0.8])
    assert Decider(policy, seed=0, exploration_epsilon=0.0).decide(ROW).propensity == 1.0


def test_a_source_is_read_on_every_call():
    class Source:
        current = ServedPolicy(1, constant(0.0))

    source = Source()
    decider = Decider(source, seed=0)
    assert decider.decide(ROW).action == 2
    flipped = ConstantPolicy(FEATURES, ACTIONS, np.array([5.0, 1.0, 2.0]))
    source.current = ServedPolicy(2, flipped)
    d = decider.decide(ROW)
    assert (d.action, d.policy_version) == (0, 2)


def test_array_features_and_a_linear_policy():
    beta = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    policy = LinearPolicy(FEATURES, ACTIONS, beta, exploration=Exploration("greedy", epsilon=0.0))
    x = np.array([[3.0, 1.0], [1.0, 3.0], [-1.0, -1.0]])
    assert [d.action for d in Decider(policy, seed=0).decide_batch(x)] == [1, 2, 0]
    assert Decider(policy, seed=0).decide_batch(np.empty((0, 2))) == []


BAD_INPUT = [
    ({"recency": 1.0}, None, r"`features` must hold exactly .*missing \['frequency'\]"),
    (
        {"recency": 1.0, "frequency": 2.0, "age": 3.0},
        None,
        r"`features` must hold exactly .*unknown \['age'\]",
    ),
    (
        {"recency": True, "frequency": 1.0},
        None,
        r"`features.recency` must be a finite real "
        r"number, got bool True",
    ),
    ({"recency": "1", "frequency": 1.0}, None, r"`features.recency` .* got str '1'"),
    ({"recency": None, "frequency": 1.0}, None, r"`features.recency` .* got NoneType None"),
    ({"recency": float("nan"), "frequency": 1.0}, None, r"`features.recency` .* got float nan"),
    ({"recency": 1.0, "frequency": float("inf")}, None, r"`features.frequency` .* float inf"),
    ({"recency": 10**400, "frequency": 1.0}, None, r"`features.recency` must be a finite"),
    ({"recency": np.bool_(True), "frequency": 1.0}, None, r"`features.recency` .* bool"),
    ([ROW], None, r"`features` must be a mapping"),
    ("recency=1", None, r"`features` must be a mapping"),
    (ROW, [False, False, False], r"`mask` must allow at least one action"),
    (ROW, [], r"`mask` must be 3 booleans or a list of allowed action names"),
    (ROW, ["email"], r"`mask` names an unknown action; known: .* got str 'email'"),
    (ROW, [1, 0, 1], r"`mask` must be 3 booleans"),
    (ROW, [True, False], r"`mask` must be 3 booleans"),
    (ROW, "no_contact", r"`mask` must be 3 booleans"),
]


@pytest.mark.parametrize(("features", "mask", "match"), BAD_INPUT)
def test_bad_input_is_refused_by_field(features, mask, match):
    decider = Decider(constant(), seed=0)
    with pytest.raises(DecisionInputError, match=match):
        decider.decide(features, mask)


BAD_BATCHES = [
    ([ROW, {"recency": 1.0, "frequency": False}], None, r"`\[1\].features.frequency` .* bool"),
    ([ROW, 3], None, r"`\[1\].features` must be a mapping"),
    (np.array([[1.0, np.nan]]), None, r"`\[0\].features.frequency` .* float nan"),
    (np.array([[True, False]]), None, r"`features` must hold real numbers"),
    (np.ones((2, 3)), None, r"`features` must have shape \(n, 2\)"),
    ([ROW, ROW], [None, []], r"`\[1\].mask` must be 3 booleans"),
    ([ROW, ROW], [None], r"`mask` must hold 2 rows, got int 1"),
    ([ROW], np.zeros((1, 3), dtype=bool), r"`\[0\].mask` must allow at least one action"),
    ([ROW], np.ones((1, 3), dtype=int), r"`mask` must be a boolean array of shape \(1, 3\)"),
]


@pytest.mark.parametrize(("features", "masks", "match"), BAD_BATCHES)
def test_bad_batches_are_refused_by_row_and_field(features, masks, match):
    with pytest.raises(DecisionInputError, match=match) as info:
        Decider(constant(), seed=0).decide_batch(features, masks)
    assert isinstance(info.value, ValueError)


def test_error_location_for_the_http_layer():
    with pytest.raises(DecisionInputError) as info:
        Decider(constant(), seed=0).decide_batch([ROW, {"recency": "x", "frequency": 0}])
    assert info.value.loc == (1, "features", "recency")
    assert info.value.value == "x"


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"seed": -1}, ValueError, r"`seed` must be >= 0, got -1"),
        ({"seed": 1.5}, TypeError, r"`seed` must be an int, got float 1.5"),
        ({"seed": 0, "exploration_epsilon": 1.5}, ValueError, r"in \[0, 1\], got 1.5"),
        ({"seed": 0, "exploration_epsilon": True}, TypeError, r"got bool True"),
    ],
)
def test_bad_settings(kwargs, error, match):
    with pytest.raises(error, match=match):
        Decider(constant(), **kwargs)


def test_a_non_policy_is_refused():
    with pytest.raises(TypeError, match=r"`policy` must be a Policy"):
        Decider(object(), seed=0)  # type: ignore[arg-type]


def _grouped_linear(rng: np.random.Generator, epsilon: float) -> LinearPolicy:
    """Per-segment linear models on 6 features (2 segment columns), 5 actions."""
    names = [f"f{i}" for i in range(6)]
    actions = ["no_contact"] + [f"o{i}@email" for i in range(4)]
    beta = rng.normal(size=(5, 12))
    beta[2] = beta[1]  # exact ties
    return LinearPolicy(
        names, actions, beta, interact_with=names[:2], exploration=Exploration(epsilon=epsilon)
    )


@pytest.mark.parametrize("epsilon", [0.0, 0.1])
@pytest.mark.parametrize("n", [1, 3, 100, 400])
def test_decisions_are_the_policy_probabilities_and_sample_actions(epsilon, n):
    # The decider skips the policy's re-check of inputs it checked itself: the same
    # probabilities (bit for bit) and draws as the policy's own checked path.
    from campaignrl.policies import sample_actions

    rng = np.random.default_rng(n)
    for policy in (_grouped_linear(rng, epsilon), tabular(), constant(epsilon)):
        d = len(policy.feature_names)
        x = rng.normal(size=(n, d))
        if d == 6:
            x[:, :2] = 0.0
            x[np.arange(n), rng.integers(0, 2, n)] = rng.choice([1.0, 0.5, -2.0], n)
        masks = rng.random((n, policy.n_actions)) < 0.6
        masks[np.arange(n), rng.integers(0, policy.n_actions, n)] = True
        for given in (None, masks):
            single = n == 1
            rows = None if given is None else (given[0].tolist() if single else list(given))
            got = Decider(policy, seed=5).decide_columns(x, rows, single=single)
            probs = policy.probabilities(x, given)
            actions, propensities = sample_actions(probs, np.random.default_rng(5))
            assert got.probabilities.tobytes() == np.ascontiguousarray(probs).tobytes()
            assert got.probabilities.flags.c_contiguous
            assert got.actions.tolist() == actions.tolist()
            assert got.propensities.tobytes() == propensities.tobytes()


def test_a_kind_with_checks_of_its_own_keeps_them():
    # The decider skips Policy.probabilities' checks only for kinds that keep them as the
    # base class has them.
    class Fussy(ConstantPolicy):
        def _check_masks(self, masks, n):
            raise ValueError("fussy masks")

    policy = Fussy(FEATURES, ACTIONS, np.array([0.0, 1.0, 2.0]), Exploration("greedy"))
    with pytest.raises(ValueError, match="fussy masks"):
        Decider(policy, seed=0).decide(ROW)
    assert Decider(constant(), seed=0).decide(ROW).action in (0, 1, 2)
