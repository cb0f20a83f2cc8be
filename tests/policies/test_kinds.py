"""Policy kinds: one contract for all (incl. artifact parity), known answers, bad input."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import numpy as np
import pytest
from float_bounds import assert_within_bound, mlp_logit_bound, mlp_probability_bound
from policy_helpers import numbered_names, random_masks, random_spd_inverse

from campaignrl.policies import (
    POLICY_KINDS,
    BetaThompsonPolicy,
    ConstantPolicy,
    Exploration,
    GaussianThompsonPolicy,
    LinearPolicy,
    MLPPolicy,
    Policy,
    TabularPolicy,
    load_policy,
    save_policy,
)


# ---------------------------------------------------------------------- one of each kind
# (d, A) differ per kind so a kind that mixes up axes fails its shape checks.
def _constant() -> Policy:
    rng = np.random.default_rng(11)
    d, a = 6, 5
    return ConstantPolicy(numbered_names("f", d), numbered_names("a", a), rng.normal(size=a))


def _constant_softmax() -> Policy:
    rng = np.random.default_rng(12)
    d, a = 7, 9
    return ConstantPolicy(
        numbered_names("f", d),
        numbered_names("a", a),
        rng.normal(size=a),
        exploration=Exploration("softmax", epsilon=0.1, temperature=0.7),
    )


def _linear_greedy() -> Policy:
    rng = np.random.default_rng(13)
    d, a = 12, 7
    return LinearPolicy(
        numbered_names("f", d),
        numbered_names("a", a),
        rng.normal(size=(a, d)),
        exploration=Exploration(epsilon=0.2),
    )


def _linear_ucb() -> Policy:
    rng = np.random.default_rng(14)
    d, a = 9, 11
    return LinearPolicy(
        numbered_names("f", d),
        numbered_names("a", a),
        rng.normal(size=(a, d)),
        a_inv=random_spd_inverse(rng, a, d),
        alpha=1.3,
        exploration=Exploration("softmax", temperature=0.5),
    )


def _linear_interact() -> Policy:
    rng = np.random.default_rng(15)
    d, a, g = 8, 6, 3
    names = numbered_names("f", d)
    groups = names[-g:]
    return LinearPolicy(
        names,
        numbered_names("a", a),
        rng.normal(size=(a, d * g)),
        a_inv=random_spd_inverse(rng, a, d * g),
        alpha=0.4,
        interact_with=groups,
        exploration=Exploration(epsilon=0.05),
    )


def _tabular() -> Policy:
    rng = np.random.default_rng(16)
    d, a = 10, 13
    names = numbered_names("f", d)
    edges = [[-0.5, 0.0, 0.7], [0.0], [-1.0, -0.2, 0.3, 1.1]]
    n_states = 4 * 2 * 5
    return TabularPolicy(
        names,
        numbered_names("a", a),
        [names[3], names[0], names[7]],
        edges,
        rng.normal(size=(n_states, a)),
        exploration=Exploration(epsilon=0.15),
    )


def _tabular_argmax() -> Policy:
    rng = np.random.default_rng(17)
    names = numbered_names("f", 8)
    # state: f0 in 2 bins, then which of f4, f5, f6 is largest -> 6 states
    return TabularPolicy(
        names,
        numbered_names("a", 5),
        [names[0]],
        [[0.0]],
        rng.normal(size=(6, 5)),
        exploration=Exploration(epsilon=0.1),
        argmax_over=[[names[4], names[5], names[6]]],
    )


def _mlp_tanh() -> Policy:
    rng = np.random.default_rng(17)
    d, h1, h2, a = 20, 16, 8, 19
    ws = [rng.normal(size=s) / np.sqrt(s[0]) for s in [(d, h1), (h1, h2), (h2, a)]]
    bs = [rng.normal(size=s[1]) * 0.1 for s in [(d, h1), (h1, h2), (h2, a)]]
    return MLPPolicy(numbered_names("f", d), numbered_names("a", a), ws, bs, "tanh")


def _mlp_relu() -> Policy:
    rng = np.random.default_rng(18)
    d, h, a = 14, 32, 10
    ws = [rng.normal(size=(d, h)) / np.sqrt(d), rng.normal(size=(h, a)) / np.sqrt(h)]
    bs = [rng.normal(size=h) * 0.1, rng.normal(size=a) * 0.1]
    return MLPPolicy(
        numbered_names("f", d),
        numbered_names("a", a),
        ws,
        bs,
        "relu",
        Exploration("softmax", 0.05, 2.0),
    )


def _mlp_greedy_one_layer() -> Policy:
    rng = np.random.default_rng(19)
    d, a = 6, 5
    return MLPPolicy(
        numbered_names("f", d),
        numbered_names("a", a),
        [rng.normal(size=(d, a))],
        [rng.normal(size=a)],
        exploration=Exploration("greedy", epsilon=0.3),
    )


def _thompson_beta() -> Policy:
    rng = np.random.default_rng(20)
    d, a = 5, 8
    names = numbered_names("f", d)
    return BetaThompsonPolicy(
        names,
        numbered_names("a", a),
        [names[1], names[4]],
        [[-0.5, 0.5], [0.0]],
        np.exp(rng.uniform(0, 6, (3 * 2, a))),
        np.exp(rng.uniform(0, 7, (3 * 2, a))),
        Exploration(epsilon=0.1),
    )


def _thompson_gaussian() -> Policy:
    rng = np.random.default_rng(21)
    d, a = 6, 7
    return GaussianThompsonPolicy(
        numbered_names("f", d),
        numbered_names("a", a),
        rng.normal(size=(a, d)),
        random_spd_inverse(rng, a, d),
        0.6,
        exploration=Exploration(epsilon=0.05),
    )


FACTORIES: dict[str, Callable[[], Policy]] = {
    "constant": _constant,
    "constant-softmax": _constant_softmax,
    "linear-greedy": _linear_greedy,
    "linear-ucb": _linear_ucb,
    "linear-interact": _linear_interact,
    "tabular": _tabular,
    "tabular-argmax": _tabular_argmax,
    "mlp-tanh": _mlp_tanh,
    "mlp-relu": _mlp_relu,
    "mlp-1layer-greedy": _mlp_greedy_one_layer,
    "thompson-beta": _thompson_beta,
    "thompson-gaussian": _thompson_gaussian,
}


def test_factories_cover_every_registered_kind():
    kinds = {factory().kind for factory in FACTORIES.values()}
    assert kinds == set(POLICY_KINDS)


def _observations(pol: Policy, rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.normal(size=(n, len(pol.feature_names)))
    if isinstance(pol, LinearPolicy) and pol.interact_with:
        # group columns are one-hot, as the observation encoding gives them
        x[:, pol._group_cols] = 0.0
        x[np.arange(n), pol._group_cols[rng.integers(0, len(pol._group_cols), n)]] = 1.0
    if isinstance(pol, TabularPolicy):
        # put some values exactly on the edges
        for col, e in zip(pol._columns, pol.edges, strict=True):
            on_edge = rng.random(n) < 0.2
            x[on_edge, col] = rng.choice(e, on_edge.sum())
    return x


# ---------------------------------------------------------------------- the contract
@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_policy_contract(name, tmp_path):
    pol = FACTORIES[name]()
    a = pol.n_actions
    rng = np.random.default_rng(1000 + sorted(FACTORIES).index(name))
    n = 10_000
    x = _observations(pol, rng, n)
    masks = random_masks(rng, n, a)

    # shape, a distribution per row, zero on masked actions
    probs = pol.probabilities(x, masks)
    assert probs.shape == (n, a)
    assert probs.dtype == np.float64
    assert np.isfinite(probs).all()
    assert (probs >= 0.0).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    assert (probs[~masks] == 0.0).all()

    # masks=None means every action allowed
    np.testing.assert_array_equal(pol.probabilities(x), pol.probabilities(x, np.ones((n, a), bool)))
    assert np.isfinite(pol.probabilities(x)).all()

    # deterministic: again, a fresh identical instance, and row by row independent of the batch
    np.testing.assert_array_equal(pol.probabilities(x, masks), probs)
    np.testing.assert_array_equal(FACTORIES[name]().probabilities(x, masks), probs)
    # A row's probabilities do not depend on the rest of the batch, up to rounding: BLAS
    # blocks sums differently per batch size. float64 kinds: scores within gamma^{64}_d of
    # their magnitudes (~1e-14 here), probabilities within a few times that (the softmax's
    # condition is 2 / temperature); 1e-12 leaves room on any kernel. The MLP computes in
    # float32: each batch within float_bounds' bound of the exact probabilities, so within
    # twice it of each other.
    small = pol.probabilities(x[:7], masks[:7])
    if isinstance(pol, MLPPolicy):
        _, bound = mlp_probability_bound(pol, x[:7], masks[:7])
        assert_within_bound(small, probs[:7], 2.0 * bound)
    else:
        np.testing.assert_allclose(small, probs[:7], rtol=0, atol=1e-12)

    # sample: allowed actions, exact propensities, reproducible for a seed
    actions, prop = pol.sample(x, masks, np.random.default_rng(5))
    assert actions.shape == (n,) and prop.shape == (n,)
    assert masks[np.arange(n), actions].all()
    np.testing.assert_array_equal(prop, probs[np.arange(n), actions])
    assert (prop > 0.0).all()
    again, prop_again = pol.sample(x, masks, np.random.default_rng(5))
    np.testing.assert_array_equal(again, actions)
    np.testing.assert_array_equal(prop_again, prop)

    # artifact parity: save -> load gives the same probabilities on 10,000 masked rows
    out = save_policy(pol, tmp_path / "policy", training={"agent": name})
    loaded = load_policy(out)
    assert type(loaded) is type(pol)
    assert loaded.kind == pol.kind
    assert loaded.feature_names == pol.feature_names
    assert loaded.action_names == pol.action_names
    assert loaded.exploration == pol.exploration
    assert loaded.config() == pol.config()
    x2 = _observations(pol, rng, n)
    m2 = random_masks(rng, n, a, p_allowed=0.3)
    np.testing.assert_allclose(
        loaded.probabilities(x2, m2), pol.probabilities(x2, m2), rtol=0, atol=1e-12
    )
    np.testing.assert_allclose(loaded.probabilities(x2), pol.probabilities(x2), rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_policy_contract_single_row(name):
    pol = FACTORIES[name]()
    x = _observations(pol, np.random.default_rng(3), 1)
    probs = pol.probabilities(x)
    assert probs.shape == (1, pol.n_actions)
    np.testing.assert_allclose(probs.sum(), 1.0, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_policy_contract_empty_batch(name):
    # A batch of 0 rows (an empty slice of a log, an empty service request) is a valid (n, d).
    pol = FACTORIES[name]()
    x = np.zeros((0, len(pol.feature_names)))
    probs = pol.probabilities(x)
    assert probs.shape == (0, pol.n_actions)
    actions, prop = pol.sample(x, None, np.random.default_rng(0))
    assert actions.shape == (0,) and prop.shape == (0,)


# ---------------------------------------------------------------------- ConstantPolicy
def test_constant_greedy_puts_all_mass_on_best_allowed():
    pol = ConstantPolicy(["f0", "f1"], numbered_names("a", 5), np.array([0.1, 3.0, 2.0, 2.5, -1.0]))
    x = np.random.default_rng(0).normal(size=(4, 2))
    masks = np.array(
        [
            [True, True, True, True, True],  # best = 1
            [True, False, True, True, True],  # best allowed = 3 (2.5)
            [True, False, True, False, True],  # best allowed = 2
            [False, False, False, False, True],  # only 4
        ]
    )
    np.testing.assert_array_equal(pol.probabilities(x, masks), np.eye(5)[[1, 3, 2, 4]])


def test_constant_softmax_same_for_every_row():
    scores = np.array([0.0, 1.0, 2.0])
    pol = ConstantPolicy(["f"], ["a", "b", "c"], scores, Exploration("softmax"))
    probs = pol.probabilities(np.random.default_rng(0).normal(size=(3, 1)))
    e = np.exp(scores)
    np.testing.assert_allclose(probs, np.tile(e / e.sum(), (3, 1)), rtol=1e-14)


# ---------------------------------------------------------------------- TabularPolicy
def test_tabular_state_index_is_mixed_radix_with_digitize_edges():
    # np.digitize(v, edges) with increasing edges returns i such that edges[i-1] <= v < edges[i]:
    # a value EQUAL to an edge falls in the bin to its RIGHT (the upper bin).
    names = ["recency", "noise", "fatigue", "segment"]
    edges = [[1.0, 3.0], [0.0, 1.0, 2.0], [0.5]]  # radices 3, 4, 2 -> 24 states
    state_features = ["recency", "fatigue", "segment"]
    table = np.arange(24 * 2, dtype=float).reshape(24, 2)
    pol = TabularPolicy(names, ["a", "b"], state_features, edges, table)
    assert pol.n_states == 24
    rows = np.array(
        [
            # recency  noise  fatigue segment   bins (r, f, s)   index = r*8 + f*2 + s
            [0.0, 9.0, -5.0, 0.0],  # (0, 0, 0)                   0
            [1.0, 9.0, -5.0, 0.0],  # (1, 0, 0): 1.0 == edge -> 1  8
            [0.999, 9.0, 0.0, 0.0],  # (0, 1, 0): 0.0 == edge -> 1 2
            [3.0, -9.0, 2.0, 0.5],  # (2, 3, 1)                   16 + 6 + 1 = 23
            [2.0, 0.0, 1.5, 0.49],  # (1, 2, 0)                   8 + 4 = 12
            [100.0, 0.0, 0.999, 0.5],  # (2, 1, 1)                16 + 2 + 1 = 19
            [-100.0, 0.0, 1.0, 7.0],  # (0, 2, 1)                  4 + 1 = 5
        ]
    )
    expected = np.array([0, 8, 2, 23, 12, 19, 5])
    np.testing.assert_array_equal(pol.states(rows), expected)
    np.testing.assert_array_equal(pol.scores(rows), table[expected])
    # greedy on an increasing row picks the last action everywhere
    np.testing.assert_array_equal(pol.probabilities(rows)[:, 1], 1.0)


def test_tabular_argmax_group_is_the_least_significant_digit():
    names = ["recency", "aff=a", "aff=b", "aff=c"]
    table = np.arange(2 * 3 * 4, dtype=float).reshape(6, 4)
    pol = TabularPolicy(
        names, ["n", "x", "y", "z"], ["recency"], [[0.5]], table, argmax_over=[names[1:]]
    )
    assert pol.n_states == 6
    rows = np.array(
        [
            # recency  a     b     c        bins (r, best)  index = 3 r + best
            [0.0, 0.9, 0.1, 0.2],  # (0, a)  0
            [0.7, 0.1, 0.2, 0.9],  # (1, c)  5
            [0.2, -0.5, 0.3, 0.3],  # (0, b): a tie goes to the first  1
            [0.5, 0.0, 0.8, -1.0],  # (1, b): 0.5 == edge -> upper bin  4
        ]
    )
    np.testing.assert_array_equal(pol.states(rows), [0, 5, 1, 4])
    np.testing.assert_array_equal(pol.scores(rows), table[[0, 5, 1, 4]])


def test_tabular_ignores_non_state_features():
    pol = _tabular()
    assert isinstance(pol, TabularPolicy)
    rng = np.random.default_rng(5)
    x = rng.normal(size=(100, 10))
    y = x.copy()
    others = [i for i in range(10) if i not in pol._columns.tolist()]
    y[:, others] = rng.normal(size=(100, len(others))) * 100
    np.testing.assert_array_equal(pol.probabilities(x), pol.probabilities(y))


def test_tabular_without_state_features_is_one_state():
    table = np.array([[0.0, 2.0, 1.0]])
    pol = TabularPolicy(["f"], ["a", "b", "c"], [], [], table)
    assert pol.n_states == 1
    np.testing.assert_array_equal(pol.probabilities(np.zeros((3, 1))), np.eye(3)[[1, 1, 1]])


# ---------------------------------------------------------------------- MLPPolicy
def _mlp_loop(x: np.ndarray, ws, bs, act) -> np.ndarray:
    out = np.empty((x.shape[0], ws[-1].shape[1]))
    for i in range(x.shape[0]):
        h = [float(v) for v in x[i]]
        for layer, (w, b) in enumerate(zip(ws, bs, strict=True)):
            nxt = [
                sum(h[p] * float(w[p, q]) for p in range(w.shape[0])) + float(b[q])
                for q in range(w.shape[1])
            ]
            h = nxt if layer == len(ws) - 1 else [act(v) for v in nxt]
        out[i] = h
    return out


@pytest.mark.parametrize(
    ("activation", "act"), [("tanh", math.tanh), ("relu", lambda v: max(v, 0.0))]
)
def test_mlp_logits_equal_float64_loop(activation, act):
    rng = np.random.default_rng(6)
    d, h1, h2, a = 8, 12, 6, 5
    shapes = [(d, h1), (h1, h2), (h2, a)]
    ws = [rng.normal(size=s) / np.sqrt(s[0]) for s in shapes]
    bs = [rng.normal(size=s[1]) * 0.5 for s in shapes]
    pol = MLPPolicy(numbered_names("f", d), numbered_names("a", a), ws, bs, activation)
    x = rng.normal(size=(25, d)) * 2.0
    expected = _mlp_loop(x, ws, bs, act)
    got = pol.scores(x)
    assert got.dtype == np.float64
    # float32 forward pass: within the rounding-error bound derived in float_bounds (sums of
    # n + 1 terms, gamma_{n+2}, carried through tanh by its slope), on any CPU or BLAS kernel.
    _, bound = mlp_logit_bound(x, ws, bs, activation)
    assert_within_bound(got, expected, bound)
    # default exploration is softmax at temperature 1: the network's own distribution
    assert pol.exploration == Exploration("softmax")
    e = np.exp(expected - expected.max(axis=1, keepdims=True))
    probs, prob_bound = mlp_probability_bound(pol, x)
    np.testing.assert_allclose(probs, e / e.sum(axis=1, keepdims=True), rtol=1e-12)
    assert_within_bound(pol.probabilities(x), probs, prob_bound)
    # The bound is tight enough to catch a weight off by 1e-3 of itself, in any layer.
    for layer in range(len(ws)):
        wrong = [w.copy() for w in ws]
        wrong[layer][1, 1] *= 1.0 + 1e-3
        off = MLPPolicy(pol.feature_names, pol.action_names, wrong, bs, activation).scores(x)
        assert (np.abs(off - expected) > bound).any(), layer


def test_mlp_tanh_saturated_units_equal_float64_without_warnings():
    # Pre-activations often beyond +-44 (where the float32 exp of the folded tanh overflows):
    # saturated units come out as +-1, without overflow warnings or NaN.
    rng = np.random.default_rng(9)
    d, h, a = 5, 7, 4
    ws = [rng.normal(size=(d, h)) * 20.0, rng.normal(size=(h, h)) * 20.0, rng.normal(size=(h, a))]
    bs = [rng.normal(size=h), rng.normal(size=h), rng.normal(size=a)]
    pol = MLPPolicy(numbered_names("f", d), numbered_names("a", a), ws, bs, "tanh")
    x = rng.normal(size=(200, d))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = pol.scores(x)
        probs = pol.probabilities(x)
    # Not a fixed atol: the pre-activations reach hundreds, so float32's rounding of them is
    # ~1e-5 (1.1e-5 measured with AVX-512 kernels, under 1e-5 with AVX2 ones). The bound
    # (float_bounds.mlp_logit_bound) scales with the sums' magnitudes and passes almost
    # nothing through saturated units, whose tanh has slope ~0.
    expected = _mlp_loop(x, ws, bs, math.tanh)
    _, bound = mlp_logit_bound(x, ws, bs, "tanh")
    assert_within_bound(got, expected, bound)
    assert np.isfinite(probs).all()
    # ... and still catches one weight off by 1e-4 of itself, in any layer.
    for layer in range(len(ws)):
        wrong = [w.copy() for w in ws]
        wrong[layer][0, 0] *= 1.0 + 1e-4
        off = MLPPolicy(pol.feature_names, pol.action_names, wrong, bs, "tanh").scores(x)
        assert (np.abs(off - expected) > bound).any(), layer


def test_mlp_relu_and_tanh_differ():
    # guards against the activation argument being ignored
    rng = np.random.default_rng(7)
    ws = [rng.normal(size=(4, 8)), rng.normal(size=(8, 3))]
    bs = [rng.normal(size=8), rng.normal(size=3)]
    x = rng.normal(size=(10, 4))
    tanh = MLPPolicy(numbered_names("f", 4), numbered_names("a", 3), ws, bs, "tanh").scores(x)
    relu = MLPPolicy(numbered_names("f", 4), numbered_names("a", 3), ws, bs, "relu").scores(x)
    assert not np.allclose(tanh, relu)


def test_mlp_does_not_modify_inputs():
    rng = np.random.default_rng(8)
    ws = [rng.normal(size=(3, 4)), rng.normal(size=(4, 2))]
    bs = [rng.normal(size=4), rng.normal(size=2)]
    x = rng.normal(size=(5, 3)).astype(np.float32)
    x0 = x.copy()
    w0 = [w.copy() for w in ws]
    pol = MLPPolicy(numbered_names("f", 3), ["a", "b"], ws, bs, "relu")
    first = pol.scores(x)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(pol.scores(x), first)
    for w, w_orig in zip(ws, w0, strict=True):
        np.testing.assert_array_equal(w, w_orig)


def test_mlp_finite_features_never_give_nan_probabilities():
    # 1e39 is a finite float64 that the float32 cast turns into inf; the policy must either
    # refuse it (naming `features`) or still return a distribution, never silent NaN.
    pol = _mlp_relu()
    x = np.zeros((2, len(pol.feature_names)))
    x[0, 0] = 1e39
    with np.errstate(all="ignore"):
        try:
            probs = pol.probabilities(x)
        except ValueError as exc:
            assert "`features`" in str(exc)
            return
    assert np.isfinite(probs).all(), probs
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=0, atol=1e-12)


# ---------------------------------------------------------------------- constructor errors
F3, A2 = ["f0", "f1", "f2"], ["a0", "a1"]


def _mlp_ws():
    return [np.zeros((3, 4)), np.zeros((4, 2))], [np.zeros(4), np.zeros(2)]


CONSTRUCTOR_ERRORS = [
    # (id, builder, exception, match)
    (
        "constant-scores-shape",
        lambda: ConstantPolicy(F3, A2, np.zeros(3)),
        ValueError,
        r"`scores` must have shape \(2,\), got \(3,\)",
    ),
    (
        "constant-scores-nan",
        lambda: ConstantPolicy(F3, A2, np.array([0.0, np.nan])),
        ValueError,
        r"`scores` must be finite",
    ),
    (
        "linear-beta-shape",
        lambda: LinearPolicy(F3, A2, np.zeros((3, 2))),
        ValueError,
        r"`beta` must have shape \(2, 3\), got \(3, 2\)",
    ),
    (
        "linear-beta-1d",
        lambda: LinearPolicy(F3, A2, np.zeros(6)),
        ValueError,
        r"`beta` must have shape",
    ),
    (
        "linear-beta-nonfinite",
        lambda: LinearPolicy(F3, A2, np.full((2, 3), np.inf)),
        ValueError,
        r"`beta` must be finite",
    ),
    (
        "linear-beta-interact-width",
        lambda: LinearPolicy(F3, A2, np.zeros((2, 3)), interact_with=["f1", "f2"]),
        ValueError,
        r"`beta` must have shape \(2, 6\)",
    ),
    (
        "linear-alpha-negative",
        lambda: LinearPolicy(F3, A2, np.zeros((2, 3)), alpha=-0.5),
        ValueError,
        r"`alpha` must be a finite number >= 0, got -0\.5",
    ),
    (
        "linear-alpha-nan",
        lambda: LinearPolicy(F3, A2, np.zeros((2, 3)), alpha=float("nan")),
        ValueError,
        r"`alpha` must be a finite number",
    ),
    (
        "linear-alpha-without-a-inv",
        lambda: LinearPolicy(F3, A2, np.zeros((2, 3)), alpha=1.0),
        ValueError,
        r"`a_inv` is required when `alpha` > 0",
    ),
    (
        "linear-a-inv-shape",
        lambda: LinearPolicy(F3, A2, np.zeros((2, 3)), a_inv=np.zeros((2, 3, 2)), alpha=1.0),
        ValueError,
        r"`a_inv` must have shape \(2, 3, 3\)",
    ),
    (
        "linear-unknown-interact",
        lambda: LinearPolicy(F3, A2, np.zeros((2, 3)), interact_with=["segment"]),
        ValueError,
        r"`interact_with` \['segment'\] are not among the feature names",
    ),
    (
        "tabular-edges-not-increasing",
        lambda: TabularPolicy(F3, A2, ["f1"], [[0.0, 2.0, 1.0]], np.zeros((4, 2))),
        ValueError,
        r"edges of 'f1' must be finite and strictly increasing",
    ),
    (
        "tabular-edges-repeated",
        lambda: TabularPolicy(F3, A2, ["f1"], [[0.0, 1.0, 1.0]], np.zeros((4, 2))),
        ValueError,
        r"edges of 'f1' must be finite and strictly increasing",
    ),
    (
        "tabular-edges-nan",
        lambda: TabularPolicy(F3, A2, ["f0"], [[0.0, np.nan]], np.zeros((3, 2))),
        ValueError,
        r"edges of 'f0' must be finite",
    ),
    (
        "tabular-edges-2d",
        lambda: TabularPolicy(F3, A2, ["f0"], [[[0.0, 1.0]]], np.zeros((3, 2))),
        ValueError,
        r"edges of 'f0'",
    ),
    (
        "tabular-unknown-state-feature",
        lambda: TabularPolicy(F3, A2, ["recency"], [[0.0]], np.zeros((2, 2))),
        ValueError,
        r"`state_features` \['recency'\] are not among the feature names",
    ),
    (
        "tabular-edges-count",
        lambda: TabularPolicy(F3, A2, ["f0", "f1"], [[0.0]], np.zeros((2, 2))),
        ValueError,
        r"`state_features` and `edges` must have the same length, got 2 and 1",
    ),
    (
        "tabular-table-shape",
        lambda: TabularPolicy(F3, A2, ["f0", "f1"], [[0.0], [1.0, 2.0]], np.zeros((5, 2))),
        ValueError,
        r"`table` must have shape \(6, 2\), got \(5, 2\)",
    ),
    (
        "tabular-argmax-unknown",
        lambda: TabularPolicy(F3, A2, [], [], np.zeros((2, 2)), argmax_over=[["f0", "zz"]]),
        ValueError,
        r"each `argmax_over` group must name at least 2 features, got \['f0', 'zz'\] "
        r"\(\['zz'\] are not among the feature names\)",
    ),
    (
        "tabular-argmax-single",
        lambda: TabularPolicy(F3, A2, [], [], np.zeros((1, 2)), argmax_over=[["f0"]]),
        ValueError,
        r"each `argmax_over` group must name at least 2 features, got \['f0'\]",
    ),
    (
        "tabular-argmax-table-shape",
        lambda: TabularPolicy(F3, A2, [], [], np.zeros((2, 2)), argmax_over=[["f0", "f1", "f2"]]),
        ValueError,
        r"`table` must have shape \(3, 2\), got \(2, 2\)",
    ),
    (
        "mlp-weights-biases-count",
        lambda: MLPPolicy(F3, A2, _mlp_ws()[0], _mlp_ws()[1][:1]),
        ValueError,
        r"`weights` and `biases` must be non-empty and of equal length, got 2 and 1",
    ),
    (
        "mlp-empty",
        lambda: MLPPolicy(F3, A2, [], []),
        ValueError,
        r"`weights` and `biases` must be non-empty",
    ),
    (
        "mlp-first-layer-width",
        lambda: MLPPolicy(F3, A2, [np.zeros((4, 4)), np.zeros((4, 2))], _mlp_ws()[1]),
        ValueError,
        r"`w0` must have shape \(3, 4\), got \(4, 4\)",
    ),
    (
        "mlp-layers-do-not-chain",
        lambda: MLPPolicy(F3, A2, [np.zeros((3, 4)), np.zeros((5, 2))], _mlp_ws()[1]),
        ValueError,
        r"`w1` must have shape \(4, 2\), got \(5, 2\)",
    ),
    (
        "mlp-output-width",
        lambda: MLPPolicy(F3, A2, [np.zeros((3, 4)), np.zeros((4, 3))], _mlp_ws()[1]),
        ValueError,
        r"`w1` must have shape \(4, 2\), got \(4, 3\)",
    ),
    (
        "mlp-bias-shape",
        lambda: MLPPolicy(F3, A2, _mlp_ws()[0], [np.zeros(5), np.zeros(2)]),
        ValueError,
        r"`b0` must have shape \(4,\), got \(5,\)",
    ),
    (
        "mlp-unknown-activation",
        lambda: MLPPolicy(F3, A2, *_mlp_ws(), activation="sigmoid"),
        ValueError,
        r"`activation` must be one of \['relu', 'tanh'\], got 'sigmoid'",
    ),
    (
        "exploration-in-constructor",
        lambda: ConstantPolicy(F3, A2, np.zeros(2), Exploration("softmax", temperature=-1.0)),
        ValueError,
        r"`Exploration\.temperature`",
    ),
]


@pytest.mark.parametrize(
    ("builder", "err", "match"),
    [row[1:] for row in CONSTRUCTOR_ERRORS],
    ids=[row[0] for row in CONSTRUCTOR_ERRORS],
)
def test_constructor_refuses_bad_arguments(builder, err, match):
    with pytest.raises(err, match=match):
        builder()
