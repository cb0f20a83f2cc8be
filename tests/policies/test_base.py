"""The Policy base: Exploration (greedy, epsilon, softmax), masked_softmax, input checks."""

from __future__ import annotations

import numpy as np
import pytest
from float_bounds import assert_within_bound, softmax32_bound

from campaignrl.policies import ConstantPolicy, Exploration, LinearPolicy, masked_softmax


def _hand_softmax(row: list[float], allowed: list[bool], temperature: float = 1.0) -> np.ndarray:
    """Plain-Python softmax over the allowed entries (no max subtraction: small inputs only)."""
    e = [np.exp(s / temperature) if ok else 0.0 for s, ok in zip(row, allowed, strict=True)]
    total = sum(e)
    return np.array([v / total for v in e])


# ---------------------------------------------------------------------- greedy
@pytest.mark.parametrize(
    ("scores", "masks", "expected"),
    [
        # ties go to the lowest index
        ([2.0, 2.0, 1.0], [True, True, True], [1.0, 0.0, 0.0]),
        ([1.0, 3.0, 3.0, 3.0], [True, True, True, True], [0.0, 1.0, 0.0, 0.0]),
        # the lowest *allowed* index among the tied best allowed
        ([3.0, 3.0, 3.0, 0.0], [False, True, True, True], [0.0, 1.0, 0.0, 0.0]),
        # a masked best is skipped
        ([0.0, 9.0, 4.0, 4.0], [True, False, True, True], [0.0, 0.0, 1.0, 0.0]),
        # negative scores, only the last allowed
        ([-1.0, -2.0, -50.0], [False, False, True], [0.0, 0.0, 1.0]),
    ],
)
def test_greedy_known_answers_ties_to_lowest_index(scores, masks, expected):
    probs = Exploration("greedy").probabilities(np.array([scores]), np.array([masks]))
    np.testing.assert_array_equal(probs, np.array([expected]))


def test_greedy_with_epsilon_equals_hand_values():
    scores = np.array([[1.0, 5.0, 2.0, 0.0], [4.0, 5.0, 4.0, 1.0]])
    masks = np.array([[True, True, True, True], [True, False, True, False]])
    probs = Exploration("greedy", epsilon=0.2).probabilities(scores, masks)
    # Row 0: 4 allowed, best = 1 -> 0.8 + 0.2/4 = 0.85 on it, 0.05 elsewhere.
    # Row 1: allowed {0, 2}, tie 4 = 4 -> index 0: 0.8 + 0.1 = 0.9, index 2: 0.1.
    expected = np.array([[0.05, 0.85, 0.05, 0.05], [0.9, 0.0, 0.1, 0.0]])
    np.testing.assert_allclose(probs, expected, rtol=0, atol=1e-15)


def test_epsilon_one_is_uniform_over_allowed():
    scores = np.array([[10.0, -3.0, 2.0, 7.0, 0.0]])
    masks = np.array([[True, False, True, True, False]])
    for kind in ("greedy", "softmax"):
        probs = Exploration(kind, epsilon=1.0).probabilities(scores, masks)
        np.testing.assert_allclose(probs, [[1 / 3, 0.0, 1 / 3, 1 / 3, 0.0]], rtol=0, atol=1e-15)


# ---------------------------------------------------------------------- softmax
@pytest.mark.parametrize("temperature", [1.0, 0.5, 2.0, 3.7])
def test_softmax_equals_hand_computation(temperature):
    row = [0.3, -1.2, 2.0, 0.0, 1.1]
    allowed = [True, True, False, True, True]
    probs = Exploration("softmax", temperature=temperature).probabilities(
        np.array([row]), np.array([allowed])
    )
    np.testing.assert_allclose(probs[0], _hand_softmax(row, allowed, temperature), rtol=1e-13)
    assert probs[0, 2] == 0.0


def test_softmax_temperature_known_numbers():
    # scores (0, ln 2) at T=1 -> (1/3, 2/3); at T=0.5 -> exp(2 ln 2) = 4 -> (1/5, 4/5)
    scores = np.array([[0.0, np.log(2.0)]])
    masks = np.ones((1, 2), dtype=bool)
    np.testing.assert_allclose(
        Exploration("softmax").probabilities(scores, masks), [[1 / 3, 2 / 3]], rtol=1e-14
    )
    np.testing.assert_allclose(
        Exploration("softmax", temperature=0.5).probabilities(scores, masks),
        [[0.2, 0.8]],
        rtol=1e-14,
    )


def test_softmax_with_epsilon_equals_hand_computation():
    row = [1.0, 2.0, 0.5, -1.0]
    allowed = [True, True, True, False]
    probs = Exploration("softmax", epsilon=0.3, temperature=2.0).probabilities(
        np.array([row]), np.array([allowed])
    )
    expected = 0.7 * _hand_softmax(row, allowed, 2.0) + 0.3 * np.array([1, 1, 1, 0]) / 3
    np.testing.assert_allclose(probs[0], expected, rtol=1e-13)


def test_masked_softmax_doctest_value():
    out = masked_softmax(np.array([[0.0, 0.0, 5.0]]), np.array([[True, True, False]]))
    np.testing.assert_array_equal(out, [[0.5, 0.5, 0.0]])


@pytest.mark.parametrize("gap", [1e3, 1e6, 1e300])
def test_masked_softmax_never_nan_when_masked_score_far_above(gap):
    scores = np.array([[0.0, gap, 1.0, -2.0], [gap, -gap, 0.0, 0.0]])
    masks = np.array([[True, False, True, True], [False, True, True, True]])
    # no overflow, no invalid value, no division by zero on the way (underflow is harmless)
    with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
        probs = masked_softmax(scores, masks)
    assert np.isfinite(probs).all()
    assert probs[0, 1] == 0.0 and probs[1, 0] == 0.0
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(probs[0], _hand_softmax([0.0, 0.0, 1.0, -2.0], masks[0]), 1e-13)
    # row 1: allowed scores (-gap, 0, 0) -> (0, 1/2, 1/2)
    np.testing.assert_allclose(probs[1], [0.0, 0.0, 0.5, 0.5], rtol=0, atol=1e-15)


def test_masked_softmax_large_allowed_scores_stable():
    # Shifting by the best allowed score: 1e6 + (0, ln 3) -> (1/4, 3/4), no overflow.
    scores = np.array([[1e6, 1e6 + np.log(3.0), 5e6]])
    masks = np.array([[True, True, False]])
    probs = masked_softmax(scores, masks)
    np.testing.assert_allclose(probs, [[0.25, 0.75, 0.0]], rtol=1e-9)


def test_masked_softmax_single_allowed_action_gets_all_mass():
    probs = masked_softmax(np.array([[5.0, -1e6, 7.0]]), np.array([[False, True, False]]))
    np.testing.assert_array_equal(probs, [[0.0, 1.0, 0.0]])


@pytest.mark.parametrize("temperature", [1.0, 0.6])
def test_masked_softmax_float32_scores_match_float64(temperature):
    # float32 scores (an MLP's logits) are exponentiated in float32: float64 probabilities,
    # rows summing to 1 to double precision, within float32's error of the float64 softmax.
    rng = np.random.default_rng(7)
    scores = rng.normal(size=(500, 9)) * 4.0
    masks = rng.random((500, 9)) < 0.6
    masks[:, 4] = True
    scores[:, 2] = 1e30  # a masked-or-not huge score must not overflow either path
    masks[:250, 2] = False
    s32 = scores.astype(np.float32)
    with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
        got = masked_softmax(s32, masks, temperature)
    expected = masked_softmax(s32.astype(np.float64), masks, temperature)
    assert got.dtype == np.float64
    assert (got[~masks] == 0.0).all()
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    # Within the float32 rounding of the shift, the division and exp (3 ulps on numpy's every
    # SIMD path): float_bounds.softmax32_bound, from the same scores (no error in them).
    s64 = s32.astype(np.float64)
    exact, bound = softmax32_bound(s64, np.zeros_like(s64), masks, temperature)
    np.testing.assert_allclose(exact, expected, rtol=1e-13, atol=1e-300)
    assert_within_bound(got, expected, bound)
    # ... which a probability off by 1e-5 of itself exceeds.
    assert (np.abs(got * (1.0 + 1e-5) - expected) > bound).any()


@pytest.mark.parametrize("epsilon", [0.0, 0.1, 0.3, 1.0, 1, 1e-300])
def test_greedy_probabilities_of_one_row_equal_those_in_a_batch(epsilon):
    # One row is computed in plain Python: bit for bit the numpy batch's row.
    rng = np.random.default_rng(9)
    e = Exploration("greedy", epsilon=epsilon)
    for a in (1, 2, 7, 13, 300):
        masks = rng.random((40, a)) < 0.4
        masks[np.arange(40), rng.integers(0, a, 40)] = True
        best = np.array([rng.choice(np.flatnonzero(m)) for m in masks])
        whole = e.greedy_probabilities(best, masks)
        for i in range(40):
            one = e.greedy_probabilities(best[i : i + 1], masks[i : i + 1])
            assert one.shape == (1, a) and one.dtype == np.float64
            assert one.tobytes() == np.ascontiguousarray(whole[i : i + 1]).tobytes()


@pytest.mark.parametrize("epsilon", [0.0, 0.3])
def test_greedy_probabilities_from_best_equal_probabilities(epsilon):
    rng = np.random.default_rng(8)
    scores = rng.normal(size=(300, 6))
    masks = rng.random((300, 6)) < 0.5
    masks[np.arange(300), rng.integers(0, 6, 300)] = True
    e = Exploration("greedy", epsilon=epsilon)
    best = np.where(masks, scores, -np.inf).argmax(axis=1)
    np.testing.assert_array_equal(
        e.greedy_probabilities(best, masks), e.probabilities(scores, masks)
    )


# ---------------------------------------------------------------------- Exploration fields
@pytest.mark.parametrize(
    ("kwargs", "err", "match"),
    [
        ({"kind": "boltzmann"}, ValueError, r"`Exploration\.kind`.*'boltzmann'"),
        ({"kind": "GREEDY"}, ValueError, r"`Exploration\.kind`"),
        ({"epsilon": -0.1}, ValueError, r"`Exploration\.epsilon` must be >= 0.*-0\.1"),
        ({"epsilon": 1.5}, ValueError, r"`Exploration\.epsilon` must be <= 1.*1\.5"),
        ({"epsilon": float("nan")}, ValueError, r"`Exploration\.epsilon` must be finite"),
        ({"epsilon": "0.1"}, TypeError, r"`Exploration\.epsilon` must be of type"),
        ({"epsilon": True}, TypeError, r"`Exploration\.epsilon`.*bool"),
        ({"temperature": 0.0}, ValueError, r"`Exploration\.temperature` must be > 0"),
        ({"temperature": -1.0}, ValueError, r"`Exploration\.temperature` must be > 0"),
        ({"temperature": float("inf")}, ValueError, r"`Exploration\.temperature` must be finite"),
        ({"temperature": None}, TypeError, r"`Exploration\.temperature` must be of type"),
    ],
)
def test_exploration_refuses_invalid_fields(kwargs, err, match):
    with pytest.raises(err, match=match):
        Exploration(**kwargs)


def test_exploration_to_dict_round_trips():
    e = Exploration("softmax", epsilon=0.25, temperature=0.5)
    assert e.to_dict() == {"kind": "softmax", "epsilon": 0.25, "temperature": 0.5}
    assert Exploration(**e.to_dict()) == e


def test_default_exploration_is_pure_greedy():
    assert Exploration() == Exploration("greedy", 0.0, 1.0)
    pol = ConstantPolicy(["f"], ["a", "b"], np.array([0.0, 1.0]))
    assert pol.exploration == Exploration()


# ---------------------------------------------------------------------- input checks
def _small_policy() -> LinearPolicy:
    rng = np.random.default_rng(0)
    return LinearPolicy(
        ["age", "recency", "spend"], ["no_contact", "x@email"], rng.normal(size=(2, 3))
    )


_X_OK = np.zeros((4, 3))


def _x_with(row: int, col: int, value: float) -> np.ndarray:
    x = _X_OK.copy()
    x[row, col] = value
    return x


_NO_ACTION_ROW_2 = np.ones((4, 2), dtype=bool)
_NO_ACTION_ROW_2[2] = False


@pytest.mark.parametrize(
    ("features", "masks", "match"),
    [
        (np.zeros(3), None, r"`features` must have shape \(n, 3\), got \(3,\)"),
        (np.zeros((4, 2)), None, r"`features` must have shape \(n, 3\), got \(4, 2\)"),
        (np.zeros((4, 4)), None, r"`features` must have shape \(n, 3\), got \(4, 4\)"),
        (np.zeros((2, 3, 1)), None, r"`features` must have shape"),
        (np.array([["a", "b", "c"]]), None, r"`features` must be numeric"),
        (_x_with(1, 2, np.nan), None, r"`features` must be finite.*row 1.*'spend'"),
        (_x_with(3, 0, np.inf), None, r"`features` must be finite.*row 3.*'age'"),
        (_x_with(0, 1, -np.inf), None, r"`features` must be finite.*row 0.*'recency'"),
        (_X_OK, np.ones((4, 3), dtype=bool), r"`masks` must be a boolean array of shape \(4, 2\)"),
        (_X_OK, np.ones((3, 2), dtype=bool), r"`masks` must be a boolean array of shape \(4, 2\)"),
        (_X_OK, np.ones(2, dtype=bool), r"`masks` must be a boolean array"),
        (_X_OK, np.ones((4, 2), dtype=np.int64), r"`masks` must be a boolean array.*int64"),
        (_X_OK, np.ones((4, 2)), r"`masks` must be a boolean array.*float64"),
        (_X_OK, _NO_ACTION_ROW_2, r"`masks` allows no action at row 2"),
    ],
)
def test_probabilities_refuses_bad_input(features, masks, match):
    pol = _small_policy()
    with pytest.raises(ValueError, match=match):
        pol.probabilities(features, masks)
    with pytest.raises(ValueError, match=match):
        pol.sample(features, masks, np.random.default_rng(0))


def test_integer_features_accepted_and_equal_float():
    pol = _small_policy()
    xi = np.arange(12).reshape(4, 3)
    np.testing.assert_array_equal(pol.probabilities(xi), pol.probabilities(xi.astype(float)))


def test_n_actions_and_names_are_tuples():
    pol = _small_policy()
    assert pol.n_actions == 2
    assert pol.feature_names == ("age", "recency", "spend")
    assert pol.action_names == ("no_contact", "x@email")
