"""Thompson policies: quadrature against closed forms, QUADPACK and Monte Carlo; the kind."""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Callable

import numpy as np
import pytest
from policy_helpers import numbered_names, reseal
from scipy import integrate, special

from campaignrl.policies import (
    BetaThompsonPolicy,
    Exploration,
    GaussianThompsonPolicy,
    PolicyArtifactError,
    ThompsonPolicy,
    beta_argmax_probabilities,
    gaussian_argmax_probabilities,
    load_policy,
    save_policy,
    thompson,
)
from campaignrl.policies import gaussian_argmax as gaussian_module
from campaignrl.policies.gaussian_argmax import PRUNE_Z, candidate_probabilities

QUADRATURE_TOL = 1e-7
"""the documented accuracy against adaptive quadrature (measured: 6.4e-8 at most)"""
GAUSSIAN_TOL = 5e-10
"""Gaussian quadrature against QUADPACK: the limits' bound (c + 5) 1e-10 is at most 1.3e-9
for these rows but far from reached; measured 1.1e-10 at most"""
MC_DRAWS = 1_000_000


def _one_state_beta(a, b, epsilon: float = 0.0) -> BetaThompsonPolicy:
    """A Beta policy with a single state (no state features): the posteriors ``a, b``."""
    a = np.asarray(a, dtype=float)
    return BetaThompsonPolicy(
        ["f"],
        numbered_names("a", a.size),
        [],
        [],
        a[None, :],
        np.asarray(b, dtype=float)[None, :],
        Exploration(epsilon=epsilon),
    )


def _gaussian_features(means, sds, epsilon: float = 0.0) -> GaussianThompsonPolicy:
    """A Gaussian policy whose score for the feature row ``[1]`` is ``N(means, sds^2)``."""
    means, sds = np.asarray(means, dtype=float), np.asarray(sds, dtype=float)
    return GaussianThompsonPolicy(
        ["one"],
        numbered_names("a", means.size),
        means[:, None],
        (sds**2)[:, None, None],
        1.0,
        exploration=Exploration(epsilon=epsilon),
    )


def _monte_carlo(draws: np.ndarray, mask: np.ndarray) -> np.ndarray:
    winners = np.where(mask, draws, -np.inf).argmax(axis=1)
    return np.bincount(winners, minlength=draws.shape[1]) / draws.shape[0]


def _phi(z: float) -> float:
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


# ---------------------------------------------------------------------- known answers
def test_two_betas_by_hand():
    # X ~ Beta(1, 1), Y ~ Beta(2, 1): P(Y > X) = int_0^1 2y * y dy = 2/3.
    probs = _one_state_beta([1.0, 2.0], [1.0, 1.0]).probabilities(np.zeros((1, 1)))
    np.testing.assert_allclose(probs, [[1 / 3, 2 / 3]], rtol=0, atol=QUADRATURE_TOL)


@pytest.mark.parametrize(
    "mask", [[True] * 5, [True, False, True, True, False], [False, True, False, False, True]]
)
def test_betas_with_b_one_by_hand(mask):
    # Beta(a_i, 1) has F(t) = t^{a_i}: P(i is the argmax) = a_i / sum of the allowed a_j,
    # including a below 1 (exponential tails on the logit scale) and masked actions.
    a = np.array([0.5, 1.0, 2.0, 3.5, 40.0])
    m = np.array([mask])
    expected = np.where(m, a, 0.0) / a[m[0]].sum()
    probs = _one_state_beta(a, np.ones(5)).probabilities(np.zeros((1, 1)), m)
    np.testing.assert_allclose(probs, expected, rtol=0, atol=QUADRATURE_TOL)


def test_two_gaussians_by_hand():
    mu, s = np.array([0.3, -0.2]), np.array([0.5, 1.2])
    expected = _phi((mu[0] - mu[1]) / math.hypot(s[0], s[1]))
    probs = _gaussian_features(mu, s).probabilities(np.ones((1, 1)))
    np.testing.assert_allclose(probs, [[expected, 1 - expected]], rtol=0, atol=1e-12)


def test_identical_posteriors_share_equally():
    np.testing.assert_allclose(
        _gaussian_features([0.5] * 6, [2.0] * 6).probabilities(np.ones((1, 1))), 1 / 6, atol=1e-9
    )
    np.testing.assert_allclose(
        beta_argmax_probabilities(np.full(7, 30.0), np.full(7, 70.0)), 1 / 7, atol=1e-9
    )


def test_point_mass_against_a_gaussian_by_hand():
    # A zero standard deviation is a point mass at its mean: P(N(0, 1) > 0.7) = Phi(-0.7).
    probs = gaussian_argmax_probabilities(np.array([[0.0, 0.7]]), np.array([[1.0, 0.0]]))
    np.testing.assert_allclose(probs, [[_phi(-0.7), _phi(0.7)]], rtol=0, atol=1e-12)
    # Point masses only: the larger mean, ties to the lowest index (as argmax).
    greedy = gaussian_argmax_probabilities(np.array([[1.0, 2.0, 2.0]]), np.zeros((1, 3)))
    np.testing.assert_array_equal(greedy, [[0.0, 1.0, 0.0]])


# ---------------------------------------------------------------------- against QUADPACK
def _quadpack_gaussian(mu: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """Reference: each p_k by adaptive quadrature in arm k's own standardized variable.

    Piecewise between the points where some arm is 0, 1, 2, 4 or 8 standard deviations from
    its mean, to relative accuracy 1e-12: good to 1e-15 against a 16-point rule on half-sd
    panels, also with standard deviations 10^4 apart.
    """
    out = []
    for k in range(mu.size):

        def integrand(z, k=k):
            t = mu[k] + sd[k] * z
            others = [special.ndtr((t - mu[j]) / sd[j]) for j in range(mu.size) if j != k]
            return math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi) * np.prod(others)

        steps = (-8, -4, -2, -1, 0, 1, 2, 4, 8)
        breaks = {(mu[j] + q * sd[j] - mu[k]) / sd[k] for j in range(mu.size) for q in steps}
        points = [-12.0, *sorted(p for p in breaks if -12 < p < 12), 12.0]
        out.append(
            sum(
                integrate.quad(integrand, p0, p1, limit=200, epsabs=1e-15, epsrel=1e-12)[0]
                for p0, p1 in itertools.pairwise(points)
            )
        )
    return np.array(out)


def _quadpack_beta(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Reference: each p_k by adaptive quadrature on the logit scale, exact Beta functions."""
    out = []
    modes, sds = np.log(a / b), np.sqrt(1 / a + 1 / b)
    lo = (modes - 40 * sds - 200 / np.minimum(a, 1)).min()
    hi = (modes + 40 * sds + 200 / np.minimum(b, 1)).max()
    inner = np.concatenate([modes + q * sds for q in (-8, -4, -2, -1, 0, 1, 2, 4, 8)])
    points = [lo, *sorted(p for p in set(inner.tolist()) if lo < p < hi), hi]

    def cdf(y: float, j: int) -> float:
        # the upper tail from the mirrored Beta: no cancellation near t = 1
        if y < 0:
            return special.betainc(a[j], b[j], special.expit(y))
        return 1.0 - special.betainc(b[j], a[j], special.expit(-y))

    for k in range(a.size):

        def integrand(y, k=k):
            log_f = -a[k] * np.logaddexp(0, -y) - b[k] * np.logaddexp(0, y)
            others = [cdf(y, j) for j in range(a.size) if j != k]
            return math.exp(log_f - special.betaln(a[k], b[k])) * np.prod(others)

        out.append(
            sum(
                integrate.quad(integrand, p0, p1, limit=200, epsabs=1e-17, epsrel=1e-12)[0]
                for p0, p1 in itertools.pairwise(points)
            )
        )
    return np.array(out)


GAUSSIAN_CASES = {
    "near-tie": ([1.0, 1.0001, 0.9999], [1e-4, 1e-4, 1e-3]),
    "peaked-among-wide": ([0.0, 0.5, 1.0, 0.2], [1.0, 0.001, 2.0, 0.5]),
    "scales-1e6-apart": ([0.0, 1e-3, 2e-3], [1.0, 1e-6, 1e-5]),
    "same-mean-spread": ([0.0] * 5, [1.0, 2.0, 3.0, 4.0, 5.0]),
    "many-similar": (list(np.linspace(0, 0.3, 9)), list(np.linspace(0.2, 0.4, 9))),
}

BETA_CASES = {
    "below-one": ([0.5, 2.0, 30.0], [0.5, 3.0, 40.0]),
    "heavy-tails": ([0.2, 0.3, 1.0], [0.2, 0.1, 1.0]),
    "peaked-near-tie": ([1000.0, 1010.0, 990.0, 5.0], [99000.0, 99000.0, 99100.0, 400.0]),
    "very-peaked": ([3e5, 3.005e5, 10.0], [7e6, 7e6, 300.0]),
    "rare-successes": ([1.0, 1.0, 1.0, 1.0], [1.0, 2.0, 5.0, 50.0]),
}


@pytest.mark.parametrize("case", sorted(GAUSSIAN_CASES))
def test_gaussian_quadrature_matches_quadpack(case):
    mu, sd = (np.array(v) for v in GAUSSIAN_CASES[case])
    probs = gaussian_argmax_probabilities(mu[None], sd[None])[0]
    np.testing.assert_allclose(probs, _quadpack_gaussian(mu, sd), rtol=0, atol=GAUSSIAN_TOL)


def _random_gaussian_rows(n: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Rows of 3 to 8 competing posteriors with standard deviations up to 10^4 apart."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        sd = 10.0 ** rng.uniform(-2.0, 2.0, rng.integers(3, 9))
        rows.append((rng.normal(size=sd.size) * 2.0 * np.median(sd), sd))
    return rows


def test_gaussian_quadrature_matches_quadpack_on_random_rows():
    # All rows in one batch: rows of different widths, peaked next to wide posteriors.
    rows = _random_gaussian_rows(40, seed=12)
    width = max(sd.size for _, sd in rows)
    mu, sd = np.zeros((len(rows), width)), np.ones((len(rows), width))
    valid = np.zeros((len(rows), width), dtype=bool)
    for i, (m, s) in enumerate(rows):
        mu[i, : m.size], sd[i, : m.size], valid[i, : m.size] = m, s, True
    probs = candidate_probabilities(mu, sd, valid)
    assert (probs[~valid] == 0.0).all()
    for i, (m, s) in enumerate(rows):
        np.testing.assert_allclose(
            probs[i, : m.size], _quadpack_gaussian(m, s), rtol=0, atol=GAUSSIAN_TOL
        )


@pytest.mark.filterwarnings("ignore::scipy.integrate.IntegrationWarning")  # QUADPACK's own
def test_gaussian_rows_with_one_two_and_many_candidates_in_one_batch():
    # Per row, the allowed actions against QUADPACK over all of them (no pruning): within
    # the pruning bound sum Phi(-z_b) over dropped actions, plus the quadrature's.
    mu = np.array(
        [
            [0.0, 0.1, -0.2, 0.05, -9.0, 0.3],  # five close, one dropped
            [1.0, 0.0, -7.0, 0.9, -8.0, -5.0],  # two (one masked among the close ones)
            [2.0, 0.0, -0.5, 0.1, 0.2, 0.0],  # one left after pruning
            [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],  # six identical but masked to four
            [0.3, 1e-3, 2.0, 0.31, 0.29, -1.0],  # peaked among wide
        ]
    )
    sd = np.array(
        [
            [1.0, 0.5, 2.0, 0.1, 1.0, 0.7],
            [0.1, 0.1, 0.2, 0.1, 0.1, 0.3],
            [0.01, 0.02, 0.05, 0.01, 0.01, 0.1],
            [1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
            [1e-3, 1e-3, 1.0, 0.01, 0.01, 0.5],
        ]
    )
    masks = np.ones(mu.shape, dtype=bool)
    masks[1, 1] = False
    masks[3, [1, 4]] = False
    probs = gaussian_argmax_probabilities(mu, sd, masks)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=0, atol=1e-14)
    assert (probs[~masks] == 0.0).all()
    rows = np.arange(len(mu))
    leader = np.where(masks, mu, -np.inf).argmax(axis=1)
    z = (mu[rows, leader][:, None] - mu) / np.hypot(sd[rows, leader][:, None], sd)
    dropped = masks & (z >= PRUNE_Z)
    counts = (masks & ~dropped).sum(axis=1)
    assert {1, 2}.issubset(set(counts.tolist())) and counts.max() >= 3  # every path
    for i in rows:
        allowed = np.flatnonzero(masks[i])
        bound = special.ndtr(-z[i, dropped[i]]).sum() + GAUSSIAN_TOL
        np.testing.assert_allclose(
            probs[i, allowed], _quadpack_gaussian(mu[i, allowed], sd[i, allowed]), atol=bound
        )
    assert probs[2, 0] == 1.0


def test_point_mass_among_many_by_hand():
    # A point mass at m wins when every other draw is below m: prod_j Phi((m - mu_j) / s_j).
    mu, sd = np.array([[0.3, 0.0, 0.5, 0.2]]), np.array([[0.0, 1.0, 0.5, 0.3]])
    probs = gaussian_argmax_probabilities(mu, sd)
    expected = _phi(0.3) * _phi((0.3 - 0.5) / 0.5) * _phi((0.3 - 0.2) / 0.3)
    np.testing.assert_allclose(probs[0, 0], expected, rtol=0, atol=GAUSSIAN_TOL)
    np.testing.assert_allclose(probs.sum(), 1.0, rtol=0, atol=1e-14)


def test_gaussian_quadrature_is_the_same_in_chunks_and_threads(monkeypatch):
    # Pairs are processed in chunks and each thread has its own scratch arrays: neither the
    # chunk size nor concurrent calls change a result.
    rng = np.random.default_rng(5)
    mu, sd = rng.normal(size=(300, 12)) * 0.2, rng.uniform(0.05, 0.5, (300, 12))
    valid = rng.random((300, 12)) < 0.7
    valid[:, :3] = True
    whole = candidate_probabilities(mu, sd, valid)
    monkeypatch.setattr(gaussian_module, "_PAIRS_PER_CHUNK", 50)
    np.testing.assert_allclose(candidate_probabilities(mu, sd, valid), whole, rtol=0, atol=1e-15)
    monkeypatch.undo()
    results: dict[int, np.ndarray] = {}

    def work(i: int) -> None:
        for _ in range(5):
            results[i] = candidate_probabilities(mu[i::4], sd[i::4], valid[i::4])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(4):
        np.testing.assert_array_equal(
            results[i], candidate_probabilities(mu[i::4], sd[i::4], valid[i::4])
        )


@pytest.mark.filterwarnings("ignore::scipy.integrate.IntegrationWarning")  # QUADPACK's own
@pytest.mark.parametrize("case", sorted(BETA_CASES))
def test_beta_quadrature_matches_quadpack(case):
    a, b = (np.array(v) for v in BETA_CASES[case])
    probs = beta_argmax_probabilities(a, b)[0]
    np.testing.assert_allclose(probs, _quadpack_beta(a, b), rtol=0, atol=QUADRATURE_TOL)


# ---------------------------------------------------------------------- against Monte Carlo
def _assert_within_monte_carlo(probs: np.ndarray, freq: np.ndarray) -> None:
    # 5 standard errors of a frequency from 10^6 draws (at most 2.5e-3), plus rounding.
    bound = 5 * np.sqrt(probs * (1 - probs) / MC_DRAWS) + 1e-6
    assert (np.abs(probs - freq) <= bound).all(), (probs, freq, bound)


MASKS = {
    "all": [True, True, True, True, True],
    "masked": [True, False, True, False, True],
    "leader-masked": [False, True, True, True, True],
}


@pytest.mark.parametrize("mask", sorted(MASKS))
def test_gaussian_probabilities_match_monte_carlo(mask):
    mu = np.array([1.0, 0.9, 1.02, 0.2, 0.95])  # a near-tie, a peaked, a far-behind arm
    sd = np.array([0.1, 0.3, 0.001, 0.2, 0.05])
    m = np.array([MASKS[mask]])
    probs = _gaussian_features(mu, sd).probabilities(np.ones((1, 1)), m)[0]
    draws = mu + sd * np.random.default_rng(7).standard_normal((MC_DRAWS, 5))
    _assert_within_monte_carlo(probs, _monte_carlo(draws, m[0]))


@pytest.mark.parametrize("mask", sorted(MASKS))
def test_beta_probabilities_match_monte_carlo(mask):
    a = np.array([30.0, 3.0, 500.0, 0.7, 12.0])  # peaked, wide, very peaked, U-shaped
    b = np.array([70.0, 6.0, 1100.0, 0.9, 30.0])
    m = np.array([MASKS[mask]])
    probs = _one_state_beta(a, b).probabilities(np.zeros((1, 1)), m)[0]
    draws = np.random.default_rng(8).beta(a, b, size=(MC_DRAWS, 5))
    _assert_within_monte_carlo(probs, _monte_carlo(draws, m[0]))


def test_monte_carlo_check_can_fail():
    # The tolerance is tight enough to see a 1% error in a probability.
    mu, sd = np.array([0.0, 0.1, 0.05]), np.array([1.0, 1.0, 1.0])
    probs = gaussian_argmax_probabilities(mu[None], sd[None])[0]
    draws = mu + sd * np.random.default_rng(7).standard_normal((MC_DRAWS, 3))
    wrong = probs + np.array([0.01, -0.01, 0.0])
    with pytest.raises(AssertionError):
        _assert_within_monte_carlo(wrong, _monte_carlo(draws, np.ones(3, bool)))


def test_pruned_actions_change_nothing_measurable():
    # An action 7 standard deviations behind the leader is left out (Phi(-7) ~ 1e-12);
    # the full quadrature over all five agrees.
    mu = np.array([[1.0, 0.98, 1.01, 1.0 - 7 * np.hypot(0.01, 0.02), 0.99]])
    sd = np.array([[0.02, 0.015, 0.01, 0.01, 0.03]])
    pruned = gaussian_argmax_probabilities(mu, sd)
    assert pruned[0, 3] == 0.0
    full = candidate_probabilities(mu, sd, np.ones(mu.shape, dtype=bool))
    np.testing.assert_allclose(pruned, full, rtol=0, atol=1e-9)


# ---------------------------------------------------------------------- the policy kind
def _random_beta_policy(seed: int = 0, epsilon: float = 0.1) -> BetaThompsonPolicy:
    rng = np.random.default_rng(seed)
    n_states, n_a = 3 * 2, 7
    return BetaThompsonPolicy(
        ["seg", "x", "y"],
        numbered_names("a", n_a),
        ["seg", "y"],
        [[0.5, 1.5], [0.0]],
        np.exp(rng.uniform(0, 6, (n_states, n_a))),
        np.exp(rng.uniform(0, 7, (n_states, n_a))),
        Exploration(epsilon=epsilon),
    )


def _random_gaussian_policy(seed: int = 0, epsilon: float = 0.1) -> GaussianThompsonPolicy:
    rng = np.random.default_rng(seed)
    names, groups, n_a = ["g0", "g1", "x1", "x2"], ["g0", "g1"], 6
    k = len(names) * len(groups)
    a_inv = np.zeros((n_a, k, k))
    for a in range(n_a):  # block-diagonal by group, as a per-group ridge fit gives
        for g in range(len(groups)):
            x = rng.normal(size=(rng.integers(5, 200), 4))
            a_inv[a, 4 * g : 4 * g + 4, 4 * g : 4 * g + 4] = np.linalg.inv(np.eye(4) + x.T @ x)
    return GaussianThompsonPolicy(
        names,
        numbered_names("a", n_a),
        rng.normal(size=(n_a, k)) * 0.3,
        a_inv,
        0.8,
        interact_with=groups,
        exploration=Exploration(epsilon=epsilon),
    )


def _features(pol, n: int, rng: np.random.Generator) -> np.ndarray:
    x = rng.normal(size=(n, len(pol.feature_names)))
    if isinstance(pol, GaussianThompsonPolicy):
        x[:, :2] = np.eye(2)[rng.integers(0, 2, n)]
    else:
        x[:, 0] = rng.integers(0, 3, n)
    return x


FACTORIES: dict[str, Callable[[], ThompsonPolicy]] = {
    "beta": _random_beta_policy,
    "gaussian": _random_gaussian_policy,
}


@pytest.mark.parametrize("family", sorted(FACTORIES))
def test_probabilities_are_distributions_zero_where_masked(family):
    pol = FACTORIES[family]()
    rng = np.random.default_rng(1)
    x = _features(pol, 3000, rng)
    masks = rng.random((3000, pol.n_actions)) < 0.5
    masks[np.arange(3000), rng.integers(0, pol.n_actions, 3000)] = True
    probs = pol.probabilities(x, masks)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    assert (probs[~masks] == 0.0).all()
    assert (probs[masks] >= 0.1 / pol.n_actions - 1e-15).all()  # epsilon's share at least
    # one row at a time gives the same as the batch (per pair / per row computation)
    for i in range(0, 3000, 397):
        np.testing.assert_allclose(
            pol.probabilities(x[i : i + 1], masks[i : i + 1]), probs[i : i + 1], atol=1e-12
        )
    actions, props = pol.sample(x, masks, np.random.default_rng(2))
    np.testing.assert_array_equal(props, probs[np.arange(3000), actions])
    assert pol.probabilities(x[:0], masks[:0]).shape == (0, pol.n_actions)


@pytest.mark.parametrize("family", sorted(FACTORIES))
def test_epsilon_mixes_uniform_over_allowed(family):
    greedy_ts, mixed = FACTORIES[family](epsilon=0.0), FACTORIES[family](epsilon=0.3)
    rng = np.random.default_rng(3)
    x = _features(greedy_ts, 200, rng)
    masks = rng.random((200, greedy_ts.n_actions)) < 0.6
    masks[:, 0] = True
    expected = 0.7 * greedy_ts.probabilities(x, masks) + 0.3 * masks / masks.sum(1)[:, None]
    np.testing.assert_allclose(mixed.probabilities(x, masks), expected, rtol=0, atol=1e-14)


def test_scores_are_posterior_means():
    beta = _random_beta_policy()
    x = np.array([[0.0, 0.0, -1.0], [2.0, 5.0, 1.0]])  # states (0, 0) and (2, 1)
    states = beta.states(x)
    np.testing.assert_array_equal(states, [0, 5])
    expected = beta.beta_a[states] / (beta.beta_a[states] + beta.beta_b[states])
    np.testing.assert_allclose(beta.scores(x), expected, rtol=1e-15)
    gauss = _random_gaussian_policy()
    x = _features(gauss, 5, np.random.default_rng(4))
    z = np.concatenate([x * x[:, [0]], x * x[:, [1]]], axis=1)  # phi(x), group-major
    np.testing.assert_allclose(gauss.scores(x), z @ gauss.beta.T, rtol=1e-12, atol=1e-12)
    means, sds = gauss.posterior(x)
    np.testing.assert_array_equal(means, gauss.scores(x))
    quad = np.einsum("nd,ade,ne->na", z, gauss.a_inv, z)
    np.testing.assert_allclose(sds, 0.8 * np.sqrt(quad), rtol=1e-9)


def test_gaussian_alpha_zero_is_greedy_on_the_means():
    pol = _random_gaussian_policy(epsilon=0.0)
    greedy = GaussianThompsonPolicy(
        pol.feature_names, pol.action_names, pol.beta, pol.a_inv, 0.0, interact_with=("g0", "g1")
    )
    x = _features(pol, 50, np.random.default_rng(5))
    best = pol.scores(x).argmax(axis=1)
    np.testing.assert_array_equal(greedy.probabilities(x), np.eye(pol.n_actions)[best])


@pytest.mark.parametrize("family", sorted(FACTORIES))
def test_save_load_round_trip(family, tmp_path):
    pol = FACTORIES[family]()
    loaded = load_policy(save_policy(pol, tmp_path / family))
    assert type(loaded) is type(pol) and loaded.kind == "thompson"
    assert loaded.config() == pol.config() and loaded.config()["family"] == family
    assert loaded.exploration == pol.exploration
    for k, v in pol.parameters().items():
        np.testing.assert_array_equal(loaded.parameters()[k], v)
    rng = np.random.default_rng(6)
    x = _features(pol, 2000, rng)
    masks = rng.random((2000, pol.n_actions)) < 0.4
    masks[:, -1] = True
    np.testing.assert_array_equal(loaded.probabilities(x, masks), pol.probabilities(x, masks))


def test_unknown_family_is_refused(tmp_path):
    path = save_policy(_random_beta_policy(), tmp_path / "p")
    # re-sealed (manifest_sha256 recomputed): the family check itself must refuse it
    reseal(path, lambda m: m["config"].update(family="poisson"))
    with pytest.raises(PolicyArtifactError, match=r"'config.family' must be one of .*'poisson'"):
        load_policy(path)


# ---------------------------------------------------------------------- bad parameters
def _beta_with(**changes) -> Callable[[], object]:
    def build():
        kwargs = {
            "feature_names": ["s"],
            "action_names": ["a", "b"],
            "state_features": ["s"],
            "edges": [[0.5]],
            "beta_a": np.ones((2, 2)),
            "beta_b": np.ones((2, 2)),
        }
        kwargs.update(changes)
        return BetaThompsonPolicy(**kwargs)

    return build


def _gaussian_with(**changes) -> Callable[[], object]:
    def build():
        kwargs = {
            "feature_names": ["x", "y"],
            "action_names": ["a", "b"],
            "beta": np.zeros((2, 2)),
            "a_inv": np.stack([np.eye(2)] * 2),
            "alpha": 1.0,
        }
        kwargs.update(changes)
        return GaussianThompsonPolicy(**kwargs)

    return build


_ASYMMETRIC = np.stack([np.eye(2), np.array([[1.0, 0.5], [0.0, 1.0]])])
_INDEFINITE = np.stack([np.eye(2), np.array([[1.0, 0.0], [0.0, -0.5]])])

BAD = [
    ("beta-a-zero", _beta_with(beta_a=np.array([[1.0, 1.0], [0.0, 2.0]])), ValueError,
     r"`beta_a` must be > 0, got 0.0 at index \(1, 0\)"),
    ("beta-b-negative", _beta_with(beta_b=np.array([[1.0, -3.0], [1.0, 2.0]])), ValueError,
     r"`beta_b` must be > 0, got -3.0 at index \(0, 1\)"),
    ("beta-a-nan", _beta_with(beta_a=np.array([[1.0, np.nan], [1.0, 2.0]])), ValueError,
     r"`beta_a` must be finite, got nan"),
    ("beta-a-shape", _beta_with(beta_a=np.ones((3, 2))), ValueError,
     r"`beta_a` must have shape \(2, 2\), got \(3, 2\)"),
    ("beta-softmax", _beta_with(exploration=Exploration("softmax")), ValueError,
     r"`exploration.kind` must be 'greedy' .* got 'softmax'"),
    ("beta-unknown-state", _beta_with(state_features=["z"]), ValueError,
     r"`state_features` \['z'\] are not among the feature names"),
    ("gauss-alpha-negative", _gaussian_with(alpha=-0.5), ValueError,
     r"`alpha` must be >= 0.0, got -0.5"),
    ("gauss-alpha-nan", _gaussian_with(alpha=float("nan")), ValueError,
     r"`alpha` must be finite, got nan"),
    ("gauss-alpha-string", _gaussian_with(alpha="1"), TypeError,
     r"`alpha` must be of type int or float, got str '1'"),
    ("gauss-beta-shape", _gaussian_with(beta=np.zeros((2, 3))), ValueError,
     r"`beta` must have shape \(2, 2\), got \(2, 3\)"),
    ("gauss-a-inv-shape", _gaussian_with(a_inv=np.zeros((2, 3, 3))), ValueError,
     r"`a_inv` must have shape \(2, 2, 2\)"),
    ("gauss-a-inv-asymmetric", _gaussian_with(a_inv=_ASYMMETRIC), ValueError,
     r"`a_inv` must be symmetric, got \|a_inv - a_inv\^T\| = 0.5 for action 1"),
    ("gauss-a-inv-indefinite", _gaussian_with(a_inv=_INDEFINITE), ValueError,
     r"`a_inv` must be positive semi-definite, got eigenvalue -0.5 for action 1"),
    ("fn-sds-negative",
     lambda: gaussian_argmax_probabilities(np.zeros((1, 2)), np.array([[1.0, -1.0]])),
     ValueError, r"`sds` must be >= 0.0, got -1.0 at index \(0, 1\)"),
    ("fn-masks-empty-row",
     lambda: gaussian_argmax_probabilities(np.zeros((2, 2)), np.ones((2, 2)), np.eye(2) > 2),
     ValueError, r"`masks` allows no action at row 0"),
    ("fn-masks-not-bool",
     lambda: beta_argmax_probabilities(np.ones(2), np.ones(2), np.ones((1, 2))),
     ValueError, r"`masks` must be booleans of shape \(1, 2\), got float64 \(1, 2\)"),
    ("fn-a-zero", lambda: beta_argmax_probabilities(np.array([1.0, 0.0]), np.ones(2)),
     ValueError, r"`a` must be > 0, got 0.0 at index \(1,\)"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("build", "error", "match"), [row[1:] for row in BAD], ids=[row[0] for row in BAD]
)
def test_bad_parameters_are_refused_by_name(build, error, match):
    with pytest.raises(error, match=match):
        build()


def test_bad_parameter_table_controls_build():
    # control: the unchanged factories build
    assert isinstance(_beta_with()(), BetaThompsonPolicy)
    assert isinstance(_gaussian_with()(), GaussianThompsonPolicy)


def test_beta_policy_cache_returns_what_a_fresh_policy_computes(monkeypatch):
    # The (state, mask) cache: a row is the same whether computed alone, in another batch or
    # looked up; a full cache keeps answering (computing without storing).
    rng = np.random.default_rng(3)
    features = np.column_stack(
        [rng.integers(0, 3, 400) * 1.0, rng.normal(size=400), rng.integers(0, 2, 400) * 1.0]
    )
    masks = rng.random((400, 7)) < 0.6
    masks[np.arange(400), rng.integers(0, 7, 400)] = True
    policy = _random_beta_policy(epsilon=0.1)
    first = policy.probabilities(features, masks)
    assert 0 < len(policy._pairs) <= 400
    again = policy.probabilities(features[::-1], masks[::-1])[::-1]  # every row from the cache
    np.testing.assert_array_equal(again, first)
    for i in (0, 17, 399):  # one row at a time, on fresh policies
        alone = _random_beta_policy(epsilon=0.1).probabilities(
            features[i : i + 1], masks[i : i + 1]
        )
        np.testing.assert_allclose(alone[0], first[i], rtol=0, atol=1e-15)
    monkeypatch.setattr(thompson, "_PAIR_CACHE_SIZE", 5)
    small = _random_beta_policy(epsilon=0.1)
    np.testing.assert_allclose(small.probabilities(features, masks), first, rtol=0, atol=1e-15)
    assert len(small._pairs) == 5
