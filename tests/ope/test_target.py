"""Target policies: layouts, shapes, expectations, and memory for context-free tables."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from campaignrl.logs.io import LoggedData
from campaignrl.ope import DR, IPS, SNIPS, TargetPolicy, as_target, diagnose


def _log(n: int, n_actions: int, n_positions: int | None, seed: int = 0) -> LoggedData:
    rng = np.random.default_rng(seed)
    return LoggedData(
        actions=rng.integers(0, n_actions, n),
        rewards=rng.normal(size=n),
        propensities=np.full(n, 1.0 / n_actions),
        action_names=tuple(f"a{i}" for i in range(n_actions)),
        positions=None if n_positions is None else rng.integers(0, n_positions, n),
    )


def _dense(policy: TargetPolicy, data: LoggedData) -> np.ndarray:
    """The target as a dense (n, A, L) array (for checking only)."""
    n, n_l = data.n_rounds, data.n_positions
    table = policy.probs
    if not policy.per_row:
        table = np.broadcast_to(table, (n, *table.shape))
    if table.ndim == 2:
        table = np.repeat(table[:, :, None], n_l, axis=2)
    return np.asarray(table)


LAYOUTS = [
    ("(A,)", lambda rng, n, a, n_l: rng.dirichlet(np.ones(a)), False),
    ("(A, L)", lambda rng, n, a, n_l: rng.dirichlet(np.ones(a), size=n_l).T, False),
    ("(n, A)", lambda rng, n, a, n_l: rng.dirichlet(np.ones(a), size=n), True),
    (
        "(n, A, L)",
        lambda rng, n, a, n_l: rng.dirichlet(np.ones(a), size=(n, n_l)).transpose(0, 2, 1),
        True,
    ),
]


@pytest.mark.parametrize("label, make, per_row", LAYOUTS, ids=[x[0] for x in LAYOUTS])
@pytest.mark.parametrize("q_ndim", [2, 3])
def test_factual_expected_and_unlogged_mass_match_dense_loops(label, make, per_row, q_ndim):
    rng = np.random.default_rng(1)
    n, n_a, n_l = 40, 4, 3
    data = _log(n, n_a, n_l)
    policy = as_target(make(rng, n, n_a, n_l), data)
    assert policy.per_row is per_row
    q = rng.normal(size=(n, n_a, n_l)) if q_ndim == 3 else rng.normal(size=(n, n_a))
    dense = _dense(policy, data)
    seen = {(int(a), int(p)) for a, p in zip(data.actions, data.positions, strict=True)}
    factual, expected, mass = [], [], []
    for i in range(n):
        p = data.positions[i]
        factual.append(dense[i, data.actions[i], p])
        qi = q[i, :, p] if q_ndim == 3 else q[i]
        expected.append(sum(dense[i, a, p] * qi[a] for a in range(n_a)))
        mass.append(sum(dense[i, a, p] for a in range(n_a) if (a, p) not in seen))
    np.testing.assert_allclose(policy.factual(data), factual, rtol=1e-12)
    np.testing.assert_allclose(policy.expected(q, data), expected, rtol=1e-12, atol=1e-12)
    assert policy.unlogged_mass(data) == pytest.approx(np.mean(mass), abs=1e-12)


@pytest.mark.parametrize("label, make, per_row", LAYOUTS, ids=[x[0] for x in LAYOUTS])
def test_unlogged_mass_under_masks_matches_a_dense_loop(label, make, per_row):
    # With allowed-action masks, a row's unsupported mass also holds its disallowed actions.
    rng = np.random.default_rng(4)
    n, n_a, n_l = 50, 5, 3
    logged = _log(n, n_a, n_l, seed=2)
    plain = LoggedData(  # action 4 is never allowed, so never logged
        logged.actions % 4,
        logged.rewards,
        logged.propensities,
        logged.action_names,
        positions=logged.positions,
    )
    masks = rng.random((n, n_a)) < 0.6
    masks[np.arange(n), plain.actions] = True
    masks[:, 4] = False
    data = LoggedData(
        plain.actions,
        plain.rewards,
        plain.propensities,
        plain.action_names,
        positions=plain.positions,
        masks=masks,
    )
    policy = as_target(make(rng, n, n_a, n_l), data)
    dense = _dense(policy, data)
    seen = {(int(a), int(p)) for a, p in zip(data.actions, data.positions, strict=True)}
    mass = [
        sum(
            dense[i, a, data.positions[i]]
            for a in range(n_a)
            if not masks[i, a] or (a, int(data.positions[i])) not in seen
        )
        for i in range(n)
    ]
    assert policy.unlogged_mass(data) == pytest.approx(np.mean(mass), abs=1e-12)
    assert policy.unlogged_mass(data) > policy.unlogged_mass(plain)  # the masks add mass


def test_unlogged_mass_counts_actions_the_log_never_shows():
    data = LoggedData(
        actions=np.array([0, 0, 1, 1]),
        rewards=np.zeros(4),
        propensities=np.full(4, 0.5),
        action_names=("a", "b", "c", "d"),
    )
    assert as_target(np.array([0.1, 0.2, 0.3, 0.4]), data).unlogged_mass(data) == pytest.approx(0.7)
    per_row = np.array([[1.0, 0, 0, 0], [0, 0, 1.0, 0], [0, 0, 0.5, 0.5], [0.5, 0.5, 0, 0]])
    assert as_target(TargetPolicy(per_row, per_row=True), data).unlogged_mass(
        data
    ) == pytest.approx(0.5)


@pytest.mark.parametrize(
    "probs, per_row, match",
    [
        (np.array([0.5, 0.6]), False, r"`target` probabilities must sum to 1 over actions"),
        (np.array([1.5, -0.5]), False, r"`target` probabilities must be finite and >= 0"),
        (np.array([np.nan, 1.0]), False, r"must be finite and >= 0, got nan at index \(0,\)"),
        (np.array([[[1.0]]]), False, r"`target` must have shape \(A,\) or \(A, L\)"),
        (np.array([1.0, 0.0]), True, r"`target` must have shape \(n, A\) or \(n, A, L\)"),
        (np.array([[0.2, 0.2]]), True, r"sum to 1 over actions \(axis 1\), got 0.4 at \(0,\)"),
    ],
)
def test_bad_tables_are_refused(probs, per_row, match):
    with pytest.raises(ValueError, match=match):
        TargetPolicy(probs, per_row=per_row)


def test_a_2d_table_that_reads_both_ways_must_be_wrapped():
    data = _log(3, 3, 3)  # n = A = L = 3
    table = np.full((3, 3), 1.0 / 3.0)
    with pytest.raises(ValueError, match=r"reads as both \(n, A\) and \(A, L\)"):
        as_target(table, data)
    assert as_target(TargetPolicy(table, per_row=True), data).per_row
    with pytest.raises(ValueError, match=r"`policy` must have shape"):
        as_target(TargetPolicy(np.full(4, 0.25)), data, name="policy")


def test_a_position_axis_must_cover_the_logged_positions():
    data = _log(10, 3, 3)
    with pytest.raises(ValueError, match=r"`target` must have shape .*got \(3, 2\)"):
        as_target(np.full((3, 2), 1.0 / 3.0), data)


def test_a_policy_object_is_evaluated_on_the_features():
    class Uniform:
        def probabilities(self, features: np.ndarray) -> np.ndarray:
            return np.full((features.shape[0], 3), 1.0 / 3.0)

    data = LoggedData(
        actions=np.array([0, 2]),
        rewards=np.array([1.0, 3.0]),
        propensities=np.array([0.5, 0.25]),
        action_names=("a", "b", "c"),
        features=np.zeros((2, 1)),
        feature_names=("x",),
    )
    # weights 2/3 and 4/3: (2/3 * 1 + 4/3 * 3) / 2
    assert IPS().estimate_policy_value(data, Uniform()) == pytest.approx(7.0 / 3.0)


def test_context_free_targets_do_not_allocate_n_by_a_arrays():
    n, n_a = 1_000_000, 25
    rng = np.random.default_rng(0)
    data = LoggedData(
        actions=rng.integers(0, n_a, n),
        rewards=rng.random(n),
        propensities=np.full(n, 1.0 / n_a),
        action_names=tuple(f"a{i}" for i in range(n_a)),
    )
    target = rng.dirichlet(np.ones(n_a))
    dense_bytes = n * n_a * 8
    tracemalloc.start()
    try:
        IPS().estimate_policy_value(data, target)
        SNIPS().estimate_interval(data, target, method="normal")
        diagnose(data, target)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < dense_bytes / 3, f"peak {peak / 1e6:.0f} MB vs dense {dense_bytes / 1e6:.0f} MB"


def test_dr_with_context_free_target_allocates_nothing_beyond_the_reward_matrix():
    n, n_a = 200_000, 25
    rng = np.random.default_rng(0)
    data = LoggedData(
        actions=rng.integers(0, n_a, n),
        rewards=rng.random(n),
        propensities=np.full(n, 1.0 / n_a),
        action_names=tuple(f"a{i}" for i in range(n_a)),
    )
    q = rng.random((n, n_a))
    target = rng.dirichlet(np.ones(n_a))
    tracemalloc.start()
    try:
        DR().estimate_policy_value(data, target, estimated_rewards=q)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # check_array's finiteness mask is (n, A) booleans: one byte per entry, an eighth of q.
    assert peak < q.nbytes / 4


def test_tables_load_from_npy_and_parquet(tmp_path):
    import pandas as pd

    from campaignrl.ope.target import load_target_table

    table = np.array([[0.2, 0.5], [0.8, 0.5]])
    np.save(tmp_path / "t.npy", table)
    np.testing.assert_array_equal(load_target_table(tmp_path / "t.npy"), table)
    pd.DataFrame(table, columns=["p0", "p1"]).to_parquet(tmp_path / "t.parquet")
    np.testing.assert_array_equal(load_target_table(tmp_path / "t.parquet"), table)
    pd.DataFrame({"p": [0.3, 0.7]}).to_parquet(tmp_path / "one.parquet")
    assert load_target_table(tmp_path / "one.parquet").shape == (2,)
    pd.DataFrame({"p": ["a", "b"]}).to_parquet(tmp_path / "text.parquet")
    with pytest.raises(ValueError, match=r"column `p` of .* must be numeric"):
        load_target_table(tmp_path / "text.parquet")
    with pytest.raises(ValueError, match=r"`path` must end in .npy or .parquet"):
        load_target_table(tmp_path / "t.csv")


def test_position_axes_longer_than_the_log_needs_are_cut_to_the_logged_positions():
    rng = np.random.default_rng(2)
    data = _log(30, 3, 2)
    table = rng.dirichlet(np.ones(3), size=4).T  # (A, 4) for a log with 2 positions
    q = rng.normal(size=(30, 3, 5))
    policy = as_target(table, data)
    expected = [table[:, p] @ q[i, :, p] for i, p in enumerate(data.positions)]
    np.testing.assert_allclose(policy.expected(q, data), expected, rtol=1e-12)
    assert DR().estimate_policy_value(data, table, estimated_rewards=q) == pytest.approx(
        DR().estimate_policy_value(data, table[:, :2], estimated_rewards=q[:, :, :2])
    )
