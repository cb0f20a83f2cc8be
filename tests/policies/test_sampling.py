"""Sampling actions from probability tables: exact propensities, masks, epsilon mixing."""

from __future__ import annotations

import numpy as np
import pytest

from campaignrl.policies import sampling
from campaignrl.policies.sampling import (
    epsilon_mix,
    greedy_probabilities,
    sample_actions,
    uniform_probabilities,
)


def _random_sparse_probs(rng: np.random.Generator, n: int, a: int) -> np.ndarray:
    """Rows with zeros in random places (first, middle, last), at least one positive entry."""
    probs = rng.random((n, a))
    zero = rng.random((n, a)) < 0.5
    zero[np.arange(n), rng.integers(0, a, n)] = False  # keep one positive entry per row
    probs[zero] = 0.0
    return probs / probs.sum(axis=1, keepdims=True)


# ---------------------------------------------------------------------- sample_actions
@pytest.mark.parametrize(
    "row",
    [
        [0.0, 0.5, 0.5],  # zero first
        [0.5, 0.0, 0.5],  # zero in the middle
        [0.5, 0.5, 0.0],  # zero last
        [0.0, 0.0, 1.0],  # only the last action
        [1.0, 0.0, 0.0],  # only the first action
        [0.0, 1.0, 0.0],  # only a middle action
        [0.0, 0.0, 0.3, 0.0, 0.0, 0.7, 0.0, 0.0],
        [1e-12, 0.0, 1.0 - 1e-12],
    ],
)
def test_sample_actions_never_draws_zero_probability_action(row):
    probs = np.tile(np.asarray(row), (50_000, 1))
    actions, prop = sample_actions(probs, np.random.default_rng(0))
    assert actions.shape == (50_000,)
    assert np.all(probs[np.arange(50_000), actions] > 0.0)
    assert np.all(prop > 0.0)


def test_sample_actions_never_draws_zero_probability_action_random_rows():
    rng = np.random.default_rng(1)
    probs = _random_sparse_probs(rng, 200_000, 7)
    actions, prop = sample_actions(probs, rng)
    assert np.all(probs[np.arange(probs.shape[0]), actions] > 0.0)
    assert np.all(prop > 0.0)


def test_sample_actions_frequencies_match_probabilities():
    p = np.array([0.1, 0.0, 0.25, 0.05, 0.0, 0.6])
    n = 200_000
    actions, _ = sample_actions(np.tile(p, (n, 1)), np.random.default_rng(2))
    counts = np.bincount(actions, minlength=p.size)
    # Each count is Binomial(n, p_a): within 5 standard deviations of n p_a; zero-mass never.
    sd = np.sqrt(n * p * (1.0 - p))
    assert np.all(np.abs(counts - n * p) <= 5.0 * sd + 1e-9), (counts, n * p)
    assert counts[1] == 0 and counts[4] == 0
    # Pearson chi-square over the positive cells, 3 degrees of freedom: P(> 25) < 2e-5.
    pos = p > 0
    chi2 = float((((counts - n * p) ** 2)[pos] / (n * p)[pos]).sum())
    assert chi2 < 25.0


def test_sample_actions_frequencies_differ_per_row():
    # Two row kinds interleaved: sampling must use each row's own distribution.
    rows = np.array([[0.9, 0.1, 0.0], [0.0, 0.2, 0.8]])
    n = 100_000
    probs = np.tile(rows, (n, 1))
    actions, _ = sample_actions(probs, np.random.default_rng(3))
    even, odd = actions[0::2], actions[1::2]
    assert abs((even == 0).mean() - 0.9) < 5 * np.sqrt(0.09 / n)
    assert abs((odd == 2).mean() - 0.8) < 5 * np.sqrt(0.16 / n)
    assert not np.any(even == 2) and not np.any(odd == 0)


def test_sample_actions_returns_exact_propensities():
    rng = np.random.default_rng(4)
    probs = _random_sparse_probs(rng, 10_000, 19)
    actions, prop = sample_actions(probs, rng)
    assert actions.dtype == np.int64
    # Exactly the table entry: no renormalization, no rounding.
    assert np.array_equal(prop, probs[np.arange(probs.shape[0]), actions])


def test_sample_actions_same_seed_same_draws_other_seed_differs():
    probs = _random_sparse_probs(np.random.default_rng(5), 5_000, 10)
    a1, p1 = sample_actions(probs, np.random.default_rng(42))
    a2, p2 = sample_actions(probs, np.random.default_rng(42))
    a3, _ = sample_actions(probs, np.random.default_rng(43))
    assert np.array_equal(a1, a2) and np.array_equal(p1, p2)
    assert not np.array_equal(a1, a3)


def test_sample_actions_one_hot_is_deterministic():
    probs = np.eye(5)[[3, 0, 4, 1, 2, 2]]
    actions, prop = sample_actions(probs, np.random.default_rng(6))
    assert actions.tolist() == [3, 0, 4, 1, 2, 2]
    assert prop.tolist() == [1.0] * 6


def _sequential_inverse_cdf(probs, rng):
    """The plain algorithm: running sums action by action, count those at or below u."""
    n, a = probs.shape
    total = np.zeros(n)
    for j in range(a):
        total += probs[:, j]
    u = rng.random(n) * total
    cum = np.zeros(n)
    actions = np.zeros(n, dtype=np.int64)
    for j in range(a - 1):
        cum += probs[:, j]
        actions += cum <= u
    return actions, probs[np.arange(n), actions]


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("n_actions", [1, 2, 19, 300])
def test_sample_actions_equals_the_sequential_algorithm_bit_for_bit(order, n_actions):
    # Same draws as running sums in action order, whatever the layout and however many actions.
    rng = np.random.default_rng(7)
    probs = np.asarray(_random_sparse_probs(rng, 3_000, n_actions), order=order)
    actions, prop = sample_actions(probs, np.random.default_rng(8))
    expected, expected_prop = _sequential_inverse_cdf(probs, np.random.default_rng(8))
    np.testing.assert_array_equal(actions, expected)
    np.testing.assert_array_equal(prop, expected_prop)
    assert actions.dtype == np.int64


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("n_actions", [1, 2, 13, 300])
@pytest.mark.parametrize("n", [1, 2, 7, sampling._FEW_ROWS, sampling._FEW_ROWS + 1])
def test_sample_actions_few_rows_equal_the_loop_bit_for_bit(order, n_actions, n):
    # One row in Python, a few with one accumulate: the draws of the loop over actions, the
    # same generator state after. Rows of dyadic probabilities put u on running sums exactly.
    rng = np.random.default_rng(11)
    for trial in range(40):
        probs = _random_sparse_probs(rng, n, n_actions)
        if trial % 4 == 0:
            probs = np.floor(probs * 8.0) / 8.0
            probs[:, 0] += 1.0 - probs.sum(axis=1)
        probs = np.asarray(probs, order=order)
        seed = int(rng.integers(0, 2**31))
        got_rng, want_rng = np.random.default_rng(seed), np.random.default_rng(seed)
        actions, prop = sample_actions(probs, got_rng)
        want, want_prop = sampling._sample_rows(probs, want_rng, accumulate=False)
        assert actions.tobytes() == want.tobytes() and actions.dtype == np.int64
        assert prop.tobytes() == want_prop.tobytes() and prop.dtype == np.float64
        assert got_rng.random() == want_rng.random()


# ---------------------------------------------------------------------- uniform / greedy
def test_uniform_probabilities_hand_values():
    masks = np.array([[True, False, True, True], [True, False, False, False]])
    out = uniform_probabilities(masks)
    expected = np.array([[1 / 3, 0.0, 1 / 3, 1 / 3], [1.0, 0.0, 0.0, 0.0]])
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-15)
    assert np.all(out[~masks] == 0.0)


@pytest.mark.parametrize(
    ("scores", "masks", "expected"),
    [
        ([1.0, 3.0, 3.0, 2.0], [True, True, True, True], 1),  # tie -> lowest index
        ([1.0, 3.0, 3.0, 2.0], [True, False, True, True], 2),
        ([5.0, 5.0, 5.0, 5.0], [True, True, True, True], 0),  # all tied
        ([0.0, 9.0, 8.0, 7.0], [True, False, False, True], 3),  # masked best is skipped
        ([4.0, 9.0, 8.0, 7.0], [True, False, False, False], 0),  # only no-contact allowed
        ([-3.0, -1.0, -2.0, -1.0], [True, True, True, True], 1),  # negative values, tie
        ([-1.0, -2.0, -5.0, -1e9], [False, True, True, True], 1),
    ],
)
def test_greedy_probabilities_picks_best_allowed_lowest_index(scores, masks, expected):
    out = greedy_probabilities(np.array([scores]), np.array([masks]))
    one_hot = np.zeros((1, 4))
    one_hot[0, expected] = 1.0
    assert np.array_equal(out, one_hot)


def test_greedy_never_chooses_masked_entries():
    rng = np.random.default_rng(7)
    scores = rng.normal(size=(5_000, 19))
    masks = rng.random((5_000, 19)) < 0.4
    masks[:, 0] = True
    scores[~masks] += 100.0  # masked actions look best: they must still never be chosen
    out = greedy_probabilities(scores, masks)
    assert np.all(out[~masks] == 0.0)
    np.testing.assert_array_equal(out.sum(axis=1), 1.0)
    best = np.where(masks, scores, -np.inf).max(axis=1)
    assert np.array_equal(scores[np.arange(5_000), out.argmax(axis=1)], best)


# ---------------------------------------------------------------------- epsilon_mix
def test_epsilon_mix_hand_values():
    probs = np.array([[0.0, 1.0, 0.0, 0.0], [0.5, 0.0, 0.0, 0.5]])
    masks = np.array([[True, True, False, True], [True, False, False, True]])
    out = epsilon_mix(probs, masks, 0.3)
    expected = np.array([[0.1, 0.8, 0.0, 0.1], [0.5, 0.0, 0.0, 0.5]])
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-15)


@pytest.mark.parametrize("epsilon", [0, 0.0, 0.05, 0.5, 0.999, 1, 1.0])
def test_epsilon_mix_rows_sum_to_one_and_respect_masks(epsilon):
    rng = np.random.default_rng(8)
    masks = rng.random((2_000, 19)) < 0.3
    masks[:, 0] = True
    scores = rng.normal(size=masks.shape)
    probs = greedy_probabilities(scores, masks)
    out = epsilon_mix(probs, masks, epsilon)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    assert np.all(out[~masks] == 0.0)
    k = masks.sum(axis=1)
    chosen = probs.argmax(axis=1)
    rows = np.arange(masks.shape[0])
    np.testing.assert_allclose(out[rows, chosen], (1 - epsilon) + epsilon / k, atol=1e-12)
    others = masks.copy()
    others[rows, chosen] = False
    np.testing.assert_allclose(out[others], np.repeat(epsilon / k, others.sum(axis=1)))


def test_epsilon_one_is_uniform_over_allowed():
    masks = np.array([[True, False, True], [True, True, True]])
    out = epsilon_mix(np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]), masks, 1.0)
    np.testing.assert_allclose(out, uniform_probabilities(masks), atol=1e-15)


@pytest.mark.parametrize(
    ("epsilon", "err", "match"),
    [
        (1.5, ValueError, r"`epsilon` must be <= 1.0, got 1.5"),
        (-0.1, ValueError, r"`epsilon` must be >= 0.0, got -0.1"),
        (float("nan"), ValueError, r"`epsilon` must be finite, got nan"),
        (float("inf"), ValueError, r"`epsilon` must be finite, got inf"),
        ("0.1", TypeError, r"`epsilon` must be of type .*got str '0.1'"),
        (None, TypeError, r"`epsilon` must be of type .*got NoneType None"),
        (True, TypeError, r"`epsilon` must be of type .*got bool True"),
    ],
)
def test_epsilon_mix_refuses_bad_epsilon(epsilon, err, match):
    probs = np.array([[1.0, 0.0]])
    with pytest.raises(err, match=match):
        epsilon_mix(probs, np.ones((1, 2), bool), epsilon)
