"""LinearPolicy: known answers (plain loops, hand feature maps, MABWiser) and the grouped path."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from mabwiser.mab import MAB, LearningPolicy
from policy_helpers import numbered_names, random_masks, random_spd_inverse

from campaignrl.policies import Exploration, LinearPolicy, linear


def test_linear_alpha_zero_equals_matmul():
    rng = np.random.default_rng(1)
    d, a = 7, 6
    beta = rng.normal(size=(a, d))
    pol = LinearPolicy(numbered_names("f", d), numbered_names("a", a), beta)
    x = rng.normal(size=(50, d))
    np.testing.assert_allclose(pol.scores(x), x @ beta.T, rtol=1e-13, atol=1e-13)
    # a_inv given but alpha = 0: no bonus
    pol2 = LinearPolicy(
        numbered_names("f", d),
        numbered_names("a", a),
        beta,
        a_inv=random_spd_inverse(rng, a, d),
        alpha=0.0,
    )
    np.testing.assert_allclose(pol2.scores(x), x @ beta.T, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("alpha", [0.25, 1.0, 3.0])
def test_linear_ucb_equals_plain_loop(alpha):
    rng = np.random.default_rng(2)
    d, a = 5, 4
    beta = rng.normal(size=(a, d))
    a_inv = random_spd_inverse(rng, a, d)
    pol = LinearPolicy(
        numbered_names("f", d), numbered_names("a", a), beta, a_inv=a_inv, alpha=alpha
    )
    x = rng.normal(size=(30, d))
    expected = np.empty((30, a))
    for i in range(30):
        for k in range(a):
            mean = sum(x[i, j] * beta[k, j] for j in range(d))
            quad = sum(x[i, p] * a_inv[k, p, q] * x[i, q] for p in range(d) for q in range(d))
            expected[i, k] = mean + alpha * math.sqrt(quad)
    np.testing.assert_allclose(pol.scores(x), expected, rtol=1e-12, atol=1e-12)


def test_linear_ucb_bonus_scales_with_alpha():
    rng = np.random.default_rng(3)
    d, a = 4, 3
    beta = rng.normal(size=(a, d))
    a_inv = random_spd_inverse(rng, a, d)
    x = rng.normal(size=(10, d))
    base = LinearPolicy(numbered_names("f", d), numbered_names("a", a), beta).scores(x)
    s1 = LinearPolicy(
        numbered_names("f", d), numbered_names("a", a), beta, a_inv=a_inv, alpha=1.0
    ).scores(x)
    s2 = LinearPolicy(
        numbered_names("f", d), numbered_names("a", a), beta, a_inv=a_inv, alpha=2.0
    ).scores(x)
    assert (s1 > base).all()
    np.testing.assert_allclose(s2 - base, 2.0 * (s1 - base), rtol=1e-12)


def test_linear_interact_feature_map_is_hand_outer_product():
    names = ["recency", "spend", "seg_a", "seg_b"]
    beta = np.zeros((2, 8))
    pol = LinearPolicy(names, ["a0", "a1"], beta, interact_with=["seg_a", "seg_b"])
    x = np.array([[2.0, 3.0, 1.0, 0.0], [5.0, -1.0, 0.0, 1.0], [0.5, 0.25, 0.0, 0.0]])
    # phi = [seg_a * x, seg_b * x], group-major
    expected = np.array(
        [
            [2.0, 3.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 0.0, 5.0, -1.0, 0.0, 1.0],
            [0.0] * 8,
        ]
    )
    np.testing.assert_array_equal(pol.feature_map(x), expected)
    # without interactions the map is the identity
    plain = LinearPolicy(names, ["a0", "a1"], np.zeros((2, 4)))
    np.testing.assert_array_equal(plain.feature_map(x), x)


def test_linear_interact_scores_equal_per_group_linear_models():
    rng = np.random.default_rng(4)
    d, a, groups = 6, 5, ["f2", "f4", "f5"]
    names = numbered_names("f", d)
    g = len(groups)
    # one (a, d) model per group, stored as beta[:, gi*d:(gi+1)*d]
    per_group = rng.normal(size=(g, a, d))
    a_inv_group = np.stack([random_spd_inverse(rng, a, d) for _ in range(g)])  # (g, a, d, d)
    beta = np.concatenate([per_group[gi] for gi in range(g)], axis=1)
    a_inv = np.zeros((a, g * d, g * d))
    for gi in range(g):
        a_inv[:, gi * d : (gi + 1) * d, gi * d : (gi + 1) * d] = a_inv_group[gi]
    alpha = 0.7
    pol = LinearPolicy(
        names, numbered_names("a", a), beta, a_inv=a_inv, alpha=alpha, interact_with=groups
    )
    n = 40
    x = rng.normal(size=(n, d))
    member = rng.integers(0, g, n)
    for gi, col in enumerate(groups):
        x[:, names.index(col)] = (member == gi).astype(float)
    expected = np.empty((n, a))
    for i in range(n):
        gi = member[i]
        for k in range(a):
            mean = sum(x[i, j] * per_group[gi, k, j] for j in range(d))
            quad = sum(
                x[i, p] * a_inv_group[gi, k, p, q] * x[i, q] for p in range(d) for q in range(d)
            )
            expected[i, k] = mean + alpha * math.sqrt(quad)
    np.testing.assert_allclose(pol.scores(x), expected, rtol=1e-12, atol=1e-12)


def _mab_data(seed: int, n: int, d: int, n_arms: int):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    decisions = rng.integers(0, n_arms, n)
    true = rng.normal(size=(n_arms, d))
    rewards = (x * true[decisions]).sum(axis=1) + 0.3 * rng.normal(size=n)
    return x, decisions, rewards, rng.normal(size=(200, d))


def _expectations_table(mab: MAB, contexts: np.ndarray, arms: list[int]) -> np.ndarray:
    exp = mab.predict_expectations(contexts)
    return np.array([[row[arm] for arm in arms] for row in exp])


def test_linear_interact_group_path_equals_full_quadratic_form():
    # rows with a one-hot weight other than 1, and rows in no group (phi(x) = 0), against the
    # dense z^T A^{-1} z on the full feature map
    rng = np.random.default_rng(9)
    d, a, groups = 5, 3, ["f0", "f1"]
    names = numbered_names("f", d)
    g = len(groups)
    beta = rng.normal(size=(a, g * d))
    a_inv = np.zeros((a, g * d, g * d))
    for gi in range(g):
        a_inv[:, gi * d : (gi + 1) * d, gi * d : (gi + 1) * d] = random_spd_inverse(rng, a, d)
    pol = LinearPolicy(
        names, numbered_names("a", a), beta, a_inv=a_inv, alpha=1.3, interact_with=groups
    )
    x = rng.normal(size=(12, d))
    x[:, :2] = 0.0
    x[:4, 0] = [1.0, 0.5, -2.0, 1.0]
    x[4:8, 1] = [1.0, 3.0, 0.25, 1.0]  # rows 8-11: no group
    z = pol.feature_map(x)
    quad = np.einsum("np,apq,nq->na", z, a_inv, z)
    expected = z @ beta.T + 1.3 * np.sqrt(quad)
    np.testing.assert_allclose(pol.scores(x), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(pol._bonus_by_group(x), quad, rtol=1e-12, atol=1e-12)
    # a row in two groups at once: the dense path, same formula
    x[0, 1] = 1.0
    z = pol.feature_map(x)
    quad = np.einsum("np,apq,nq->na", z, a_inv, z)
    assert pol._bonus_by_group(x) is None
    np.testing.assert_allclose(
        pol.scores(x), z @ beta.T + 1.3 * np.sqrt(quad), rtol=1e-12, atol=1e-12
    )


def _grouped_linear(
    rng: np.random.Generator, d: int, a: int, groups: int, alpha: float, epsilon: float = 0.05
) -> LinearPolicy:
    """A per-group LinUCB (block-diagonal ``A^{-1}``) or LinGreedy (``alpha = 0``) policy."""
    names = numbered_names("f", d)
    beta = rng.normal(size=(a, groups * d))
    a_inv = np.zeros((a, groups * d, groups * d))
    for gi in range(groups):
        a_inv[:, gi * d : (gi + 1) * d, gi * d : (gi + 1) * d] = random_spd_inverse(rng, a, d)
    return LinearPolicy(
        names,
        numbered_names("a", a),
        beta,
        a_inv=a_inv if alpha > 0 else None,
        alpha=alpha,
        interact_with=names[:groups],
        exploration=Exploration(epsilon=epsilon),
    )


def _with_parameters(
    pol: LinearPolicy, beta: np.ndarray, a_inv: np.ndarray | None, alpha: float
) -> LinearPolicy:
    """``pol`` with other coefficients (and ``A^{-1}``, ``alpha``), everything else kept."""
    return LinearPolicy(
        pol.feature_names,
        pol.action_names,
        beta,
        a_inv=a_inv,
        alpha=alpha,
        interact_with=pol.interact_with,
        exploration=pol.exploration,
    )


def _grouped_rows(
    rng: np.random.Generator, n: int, d: int, groups: int, weights=(1.0,)
) -> np.ndarray:
    x = rng.normal(size=(n, d))
    x[:, :groups] = 0.0
    member = rng.integers(-1, groups, n)  # -1: in no group
    rows = np.flatnonzero(member >= 0)
    x[rows, member[rows]] = rng.choice(weights, rows.size)
    return x


def _float64_greedy(pol: LinearPolicy, x: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """The reference: the float64 scores through the generic greedy exploration."""
    return pol.exploration.probabilities(pol.scores(x), masks)


@pytest.mark.parametrize("alpha", [1.5, 0.0])
def test_linear_grouped_greedy_near_tie_goes_to_the_float64_answer(alpha, monkeypatch):
    # Greedy grouped policies rank actions on float32 scores; a row whose two best are too close
    # for float32 to tell apart must be decided in float64. Actions 2 and 3 differ by 1e-10
    # relative: float32 rounds them to the same scores (a tie it would give to action 2),
    # float64 ranks action 3 first.
    rng = np.random.default_rng(31)
    d, a, groups = 6, 5, 2
    pol = _grouped_linear(rng, d, a, groups, alpha, epsilon=0.1)
    beta = pol.beta.copy()
    beta[2] = beta[3] = 3.0 * np.abs(beta[3])  # both well above the others
    beta[3] *= 1.0 + 1e-10
    a_inv = None if pol.a_inv is None else pol.a_inv.copy()
    if a_inv is not None:
        a_inv[2] = a_inv[3]
    pol = _with_parameters(pol, beta, a_inv, alpha)
    n = 400
    x = np.abs(_grouped_rows(rng, n, d, groups))
    x[:, 0] = 1.0  # every row in group 0
    x[:, 1] = 0.0
    masks = np.ones((n, a), dtype=bool)
    scores = pol.scores(x)
    assert (scores.argmax(axis=1) == 3).all()
    gap = scores[:, 3] - scores[:, 2]
    assert (gap > 0).all() and (gap < 1e-7 * np.abs(scores[:, 3])).all()  # below float32's
    assert (scores.astype(np.float32)[:, 2] == scores.astype(np.float32)[:, 3]).any()

    rescored = []
    original = pol._scores64
    monkeypatch.setattr(pol, "_scores64", lambda *args: rescored.append(1) or original(*args))
    probs = pol.probabilities(x, masks)
    assert rescored, "the near-tie rows must be re-scored in float64"
    assert pol._greedy_best(pol._check_features(x), pol._check_masks(masks, n)) is not None
    np.testing.assert_array_equal(probs.argmax(axis=1), 3)
    np.testing.assert_array_equal(probs, _float64_greedy(pol, x, masks))


def test_linear_grouped_greedy_exact_ties_go_to_the_lowest_index():
    rng = np.random.default_rng(32)
    d, a, groups = 5, 6, 3
    pol = _grouped_linear(rng, d, a, groups, alpha=0.8)
    beta, a_inv = pol.beta.copy(), np.array(pol.a_inv)
    beta[[1, 4]] = beta[5] = 5.0 * np.abs(beta[5])  # three identical, dominant actions
    a_inv[[1, 4]] = a_inv[5]
    pol = _with_parameters(pol, beta, a_inv, 0.8)
    x = np.abs(_grouped_rows(rng, 300, d, groups))
    masks = random_masks(rng, 300, a, p_allowed=0.7)
    expected = _float64_greedy(pol, x, masks)
    np.testing.assert_array_equal(pol.probabilities(x, masks), expected)
    # where the three tie for the best, the lowest index wins, as in float64
    grouped = x[:, :groups].any(axis=1)
    chosen = expected.argmax(axis=1)[grouped & masks[:, 1] & masks[:, 4] & masks[:, 5]]
    assert (chosen == 1).sum() > 10
    assert not np.isin(chosen, [4, 5]).any()


@pytest.mark.parametrize("seed", range(12))
def test_linear_grouped_greedy_equals_float64_scores_argmax(seed):
    # Random grouped policies, one-hot weights other than 1, rows in no group, duplicated and
    # near-duplicated actions, float32 and float64 input: the same probabilities as the
    # float64 scores give, to the last bit.
    rng = np.random.default_rng(100 + seed)
    d, a, groups = int(rng.integers(3, 9)), int(rng.integers(2, 20)), int(rng.integers(1, 4))
    groups = min(groups, d - 1)
    alpha = [0.0, 0.3, 4.0][seed % 3]
    pol = _grouped_linear(rng, d, a, groups, alpha, epsilon=[0.0, 0.1][seed % 2])
    beta = pol.beta.copy()
    a_inv = None if pol.a_inv is None else pol.a_inv.copy()
    if a > 3:
        beta[1] = beta[0]
        beta[3] = beta[2] * (1.0 + 1e-12)
        if a_inv is not None:
            a_inv[1], a_inv[3] = a_inv[0], a_inv[2]
    pol = _with_parameters(pol, beta, a_inv, alpha)
    n = 2_000
    x = _grouped_rows(rng, n, d, groups, weights=(1.0, 1.0, 0.5, -2.0, 1e-3))
    if seed % 2:
        x = np.asfortranarray(x.astype(np.float32))
    masks = random_masks(rng, n, a, p_allowed=0.6)
    assert pol._greedy_best(pol._check_features(x), pol._check_masks(masks, n)) is not None
    np.testing.assert_array_equal(pol.probabilities(x, masks), _float64_greedy(pol, x, masks))


def test_linear_grouped_greedy_tiny_and_subnormal_weights_equal_float64():
    # One-hot values so small that float32 products underflow: still the float64 answer.
    rng = np.random.default_rng(34)
    d, a, groups = 5, 4, 2
    pol = _grouped_linear(rng, d, a, groups, alpha=1.0)
    x = _grouped_rows(rng, 400, d, groups, weights=(1e-20, 1e-30, 1e-40, 1e-300, 1.0))
    masks = random_masks(rng, 400, a)
    assert pol._greedy_best(pol._check_features(x), pol._check_masks(masks, 400)) is not None
    np.testing.assert_array_equal(pol.probabilities(x, masks), _float64_greedy(pol, x, masks))


@pytest.mark.parametrize("alpha", [0.0, 0.5])
def test_linear_grouped_greedy_tiny_rows_of_large_coefficients_equal_float64(alpha):
    # float32 squares of |z| ~ 1e-23 underflow, so |z| came out 0 and the rescoring bound
    # fell to its 2^-50 floor, while coefficients ~2^55 (the float32 path takes up to 2^60)
    # score these rows ~1e-6 with float32 errors ~1e-13: 3% of these near-tie rows took a
    # float32 argmax float64 does not give, until the bound added what underflow can lose.
    rng = np.random.default_rng(35)
    d, a, groups = 8, 3, 1
    pol = _grouped_linear(rng, d, a, groups, alpha)
    beta = pol.beta * 2.0**55
    beta[1] = beta[0] * (1.0 + 1e-7 * rng.normal(size=beta.shape[1]))  # near-ties
    a_inv = None if pol.a_inv is None else pol.a_inv * 2.0**100
    if a_inv is not None:
        a_inv[1] = a_inv[0]
    pol = _with_parameters(pol, beta, a_inv, alpha)
    n = 2_000
    x = rng.normal(size=(n, d))
    x[:, 0] = 1e-23  # every row in the group, with a tiny one-hot value
    masks = np.ones((n, a), dtype=bool)
    assert pol._greedy_best(pol._check_features(x), pol._check_masks(masks, n)) is not None
    np.testing.assert_array_equal(pol.probabilities(x, masks), _float64_greedy(pol, x, masks))


@pytest.mark.parametrize("case", ["two-groups", "huge", "beyond-float32"])
def test_linear_grouped_greedy_falls_back_to_float64(case):
    # Inputs float32 cannot take (or rows in two groups) go the float64 way, same answer.
    rng = np.random.default_rng(33)
    d, a, groups = 5, 4, 2
    pol = _grouped_linear(rng, d, a, groups, alpha=1.0)
    x = _grouped_rows(rng, 50, d, groups)
    if case == "two-groups":
        x[3, :groups] = 1.0
    elif case == "huge":
        x[7, -1] = 1e30
    else:
        x[7, -1] = -1e50
    masks = random_masks(rng, 50, a)
    assert pol._greedy_best(pol._check_features(x), pol._check_masks(masks, 50)) is None
    np.testing.assert_array_equal(pol.probabilities(x, masks), _float64_greedy(pol, x, masks))


@pytest.mark.parametrize("seed", range(6))
def test_linear_grouped_greedy_few_rows_equal_the_batch_answer(seed):
    # A single decision or a small batch (up to _FEW_ROWS rows) skips the float32 pass: each
    # row gets the probabilities it gets inside a large batch (the float64 scores' answer); rows
    # with near-tied and tied actions, in no group, of several weights, masked.
    rng = np.random.default_rng(200 + seed)
    d, a, groups = int(rng.integers(3, 9)), int(rng.integers(2, 20)), int(rng.integers(1, 4))
    groups = min(groups, d - 1)
    alpha = [0.0, 0.3, 4.0][seed % 3]
    pol = _grouped_linear(rng, d, a, groups, alpha, epsilon=[0.0, 0.1][seed % 2])
    beta = pol.beta.copy()
    a_inv = None if pol.a_inv is None else pol.a_inv.copy()
    if a > 3:
        beta[1] = beta[0]
        beta[3] = beta[2] * (1.0 + 1e-12)
        if a_inv is not None:
            a_inv[1], a_inv[3] = a_inv[0], a_inv[2]
    pol = _with_parameters(pol, beta, a_inv, alpha)
    n = 300
    x = _grouped_rows(rng, n, d, groups, weights=(1.0, 1.0, 0.5, -2.0, 1e-3, 1e-30))
    masks = random_masks(rng, n, a, p_allowed=0.6)
    whole = pol.probabilities(x, masks)
    np.testing.assert_array_equal(whole, _float64_greedy(pol, x, masks))
    # Chunks of every size up to the policy's limit of the float64 path, the limit itself;
    # the whole batch (300 rows) is above both limits: it takes the float32 pass.
    limit = linear._FEW_ROWS_BONUS if alpha > 0 else linear._FEW_ROWS
    assert n > max(linear._FEW_ROWS, linear._FEW_ROWS_BONUS)
    start, sizes = 0, [1, 2, 3, 4, limit // 3, limit]
    for i in itertools.count():
        if start >= n:
            break
        k = min(sizes[i % len(sizes)], n - start)
        rows = slice(start, start + k)
        few = pol._greedy_best_few(pol._check_features(x[rows]), pol._check_masks(masks[rows], k))
        assert few is not None
        np.testing.assert_array_equal(pol.probabilities(x[rows], masks[rows]), whole[rows])
        start += k


@pytest.mark.parametrize("seed", range(4))
def test_linear_grouped_greedy_one_row_equals_the_few_rows_answer(seed):
    # One row without a bonus is decided mostly in plain Python: the best action of the
    # numpy few-rows path for every row (tied, near-tied, in no group, masked, tiny weights).
    rng = np.random.default_rng(300 + seed)
    d, a, groups = int(rng.integers(3, 9)), int(rng.integers(2, 20)), int(rng.integers(1, 4))
    groups = min(groups, d - 1)
    pol = _grouped_linear(rng, d, a, groups, 0.0, epsilon=[0.0, 0.1][seed % 2])
    beta = pol.beta.copy()
    if a > 3:
        beta[1] = beta[0]
        beta[3] = beta[2] * (1.0 + 1e-15)
    pol = _with_parameters(pol, beta, None, 0.0)
    assert pol._one is not None
    n = 500
    x = _grouped_rows(rng, n, d, groups, weights=(1.0, 1.0, 0.5, -2.0, 1e-3, 1e-30, 1e-310))
    x[::7] *= 1e-200
    masks = np.asfortranarray(random_masks(rng, n, a, p_allowed=0.6))
    for i in range(n):
        xi, mi = x[i : i + 1], masks[i : i + 1]
        one = pol._greedy_best_one(xi, mi, pol._one)
        few = pol._greedy_best_few(xi, mi)
        assert one is not None and few is not None
        assert one.tolist() == few.tolist()
        with_few = pol.exploration.greedy_probabilities(few, mi)
        assert pol.probabilities(xi, mi).tobytes() == with_few.tobytes()


def test_linear_grouped_greedy_one_row_leaves_the_float32_bound_to_numpy():
    # Near the few-rows path's bound on |z| (1e16) the Python estimate steps aside: the
    # numpy path decides, on both sides of it.
    rng = np.random.default_rng(37)
    pol = _grouped_linear(rng, 4, 3, 2, 0.0)
    masks = np.ones((1, 3), dtype=bool, order="F")
    x = np.array([[1.0, 0.0, 3.0, 4.0]])
    form = pol._greedy32
    assert form is not None
    per_unit = (5.0 * 1.0 + float(form.size_floor)) * float(form.scale[0])
    huge = x.copy()
    huge[0, 2:] = [1e154, 1.2e154]  # finite squares whose sum overflows, a tiny weight
    huge[0, 0] = 1e-160
    for value in (huge, x * 1e101, -x * 1e120):
        assert pol._greedy_best_one(value, masks, pol._one) is None
        np.testing.assert_array_equal(
            pol.probabilities(value, masks), _float64_greedy(pol, value, masks)
        )
    for factor in (0.5, 1.0 - 1e-12, 1.0 + 1e-12, 2.0):
        xi = x * np.array([[1.0, 1.0, 1.0, 1.0]])
        xi[0, 2:] *= factor * 1e16 / per_unit
        one = pol._greedy_best_one(xi, masks, pol._one)
        assert (one is None) == (factor > 0.9)
        np.testing.assert_array_equal(pol.probabilities(xi, masks), _float64_greedy(pol, xi, masks))


def test_linear_grouped_greedy_few_rows_measure_rows_only_when_the_batch_bound_fails():
    # A batch of small features passes the float32-range check at once; one of large
    # features (each row in range by itself) has its rows measured: the same answers.
    rng = np.random.default_rng(38)
    pol = _grouped_linear(rng, 6, 5, 2, 0.0)
    form = pol._greedy32
    assert form is not None
    x = _grouped_rows(rng, 40, 6, 2, weights=(1.0, 1e-12))
    masks = random_masks(rng, 40, 5)
    assert pol._surely_in_range(x, form)
    big = x.copy()
    big[0, 2:] = 1e10
    big[0, :2] = [1e-12, 0.0]  # |z| about 2e-2: in range, but the batch bound is not
    assert not pol._surely_in_range(big, form)
    assert not pol._surely_in_range(np.full((1, 6), np.nan), form)
    assert not pol._surely_in_range(np.empty((0, 6)), form)
    for rows in (x, big):
        assert pol._greedy_best_few(rows, np.asfortranarray(masks)) is not None
        np.testing.assert_array_equal(
            pol.probabilities(rows, masks), _float64_greedy(pol, rows, masks)
        )


@pytest.mark.parametrize("case", ["two-groups", "huge", "beyond-float32"])
def test_linear_grouped_greedy_few_rows_fall_back_to_float64(case):
    rng = np.random.default_rng(36)
    d, a, groups = 5, 4, 2
    pol = _grouped_linear(rng, d, a, groups, alpha=1.0)
    x = _grouped_rows(rng, 1, d, groups)
    x[0, :groups] = [1.0, 0.0]
    if case == "two-groups":
        x[0, :groups] = 1.0
    elif case == "huge":
        x[0, -1] = 1e30
    else:
        x[0, -1] = -1e50
    masks = np.ones((1, a), dtype=bool)
    assert pol._greedy_best_few(pol._check_features(x), pol._check_masks(masks, 1)) is None
    np.testing.assert_array_equal(pol.probabilities(x, masks), _float64_greedy(pol, x, masks))


@pytest.mark.parametrize(("alpha", "l2_lambda"), [(0.5, 1.0), (1.7, 0.3)])
def test_linear_matches_mabwiser_linucb(alpha, l2_lambda):
    d, arms = 5, [0, 1, 2, 3]
    x, decisions, rewards, contexts = _mab_data(7, 400, d, len(arms))
    mab = MAB(arms, LearningPolicy.LinUCB(alpha=alpha, l2_lambda=l2_lambda), seed=0)
    mab.fit(decisions, rewards, x)
    models = [mab._imp.arm_to_model[arm] for arm in arms]
    pol = LinearPolicy(
        numbered_names("f", d),
        [f"arm{a}" for a in arms],
        np.stack([m.beta for m in models]),
        a_inv=np.stack([m.A_inv for m in models]),
        alpha=alpha,
    )
    expected = _expectations_table(mab, contexts, arms)
    np.testing.assert_allclose(pol.scores(contexts), expected, rtol=0, atol=1e-9)
    # and greedy picks MABWiser's arm
    assert pol.probabilities(contexts).argmax(axis=1).tolist() == mab.predict(contexts)


@pytest.mark.parametrize("l2_lambda", [1.0, 5.0])
def test_linear_matches_mabwiser_lingreedy(l2_lambda):
    d, arms = 6, [0, 1, 2]
    x, decisions, rewards, contexts = _mab_data(8, 300, d, len(arms))
    mab = MAB(arms, LearningPolicy.LinGreedy(epsilon=0.0, l2_lambda=l2_lambda), seed=0)
    mab.fit(decisions, rewards, x)
    beta = np.stack([mab._imp.arm_to_model[arm].beta for arm in arms])
    pol = LinearPolicy(numbered_names("f", d), [f"arm{a}" for a in arms], beta)
    expected = _expectations_table(mab, contexts, arms)
    np.testing.assert_allclose(pol.scores(contexts), expected, rtol=0, atol=1e-9)
