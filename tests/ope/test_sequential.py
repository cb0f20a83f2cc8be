"""Sequential estimators: hand-computed values on a tiny log of unequal episodes, known truth."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression, Ridge

from campaignrl.logs.io import LoggedData
from campaignrl.ope.sequential import (
    FQE,
    PDIS,
    SEQUENTIAL_ESTIMATORS,
    WPDIS,
    EpisodeTerms,
    FittedQEvaluation,
    QEstimates,
    SequentialDR,
    diagnose_trajectories,
    episode_bootstrap_values,
    trajectories,
)

GAMMA = 0.9

# Three episodes of lengths 3 (id 5), 1 (id 9) and 2 (id 2), rows shuffled. Episode 9's only
# step is 3: ranks, not step values, set the discount.
EPISODES = np.array([5, 9, 5, 2, 5, 2])
STEPS = np.array([0, 3, 1, 0, 2, 1])
ACTIONS = np.array([0, 1, 1, 1, 0, 0])
REWARDS = np.array([1.0, 2.0, 0.0, 4.0, 3.0, 1.0])
PROPENSITIES = np.array([0.5, 0.25, 0.5, 0.8, 0.4, 0.2])
TARGET = np.array([[0.5, 0.5], [0.5, 0.5], [0.25, 0.75], [0.5, 0.5], [0.8, 0.2], [0.4, 0.6]])
# weights w = pi_e / pi_b:   1,  2,  1.5,  0.625,  2,  2
# cumulative rho: episode 5: 1, 1.5, 3;  episode 9: 2;  episode 2: 0.625, 1.25
Q = np.array([[2.0, 1.0], [1.0, 3.0], [0.5, 1.0], [3.0, 2.0], [2.5, 0.0], [1.0, 1.5]])
# V_hat = sum_a pi_e q:  1.5, 2, 0.875, 2.5, 2, 1.3;  Q_hat at the logged action: 2, 3, 1, 2, 2.5, 1


@pytest.fixture(scope="module")
def tiny_log() -> LoggedData:
    return LoggedData(
        actions=ACTIONS,
        rewards=REWARDS,
        propensities=PROPENSITIES,
        action_names=("a", "b"),
        features=np.arange(12.0).reshape(6, 2),
        feature_names=("x0", "x1"),
        episode_ids=EPISODES,
        steps=STEPS,
    )


def test_trajectory_index(tiny_log):
    tr = trajectories(tiny_log)
    assert tr.lengths.tolist() == [2, 3, 1]  # episodes sorted by id: 2, 5, 9
    assert tr.t.tolist() == [0, 0, 1, 0, 2, 1]
    assert tr.next_row.tolist() == [2, -1, 4, 5, -1, -1]
    assert tr.horizon == 3


def test_pdis_by_hand(tiny_log):
    ep5 = 1 * 1.0 + GAMMA * 1.5 * 0.0 + GAMMA**2 * 3 * 3.0
    ep9 = 2 * 2.0
    ep2 = 0.625 * 4.0 + GAMMA * 1.25 * 1.0
    value = PDIS(gamma=GAMMA).estimate_policy_value(tiny_log, TARGET)
    assert value == pytest.approx((ep5 + ep9 + ep2) / 3, rel=1e-12)


def test_wpdis_reached_by_hand(tiny_log):
    # Step 0: all three episodes; step 1: episodes 5 and 2; step 2: episode 5 only.
    r0 = (1 * 1.0 + 2 * 2.0 + 0.625 * 4.0) / (1 + 2 + 0.625)
    r1 = (1.5 * 0.0 + 1.25 * 1.0) / (1.5 + 1.25)
    r2 = (3 * 3.0) / 3
    expected = r0 + GAMMA * (2 / 3) * r1 + GAMMA**2 * (1 / 3) * r2
    value = WPDIS(gamma=GAMMA).estimate_policy_value(tiny_log, TARGET)
    assert value == pytest.approx(expected, rel=1e-12)


def test_wpdis_absorbing_by_hand(tiny_log):
    # Ended episodes keep their final weight in later denominators: 9 ends with 2, 2 with 1.25.
    r0 = (1 * 1.0 + 2 * 2.0 + 0.625 * 4.0) / (1 + 2 + 0.625)
    r1 = (1.5 * 0.0 + 1.25 * 1.0) / (1.5 + 1.25 + 2)
    r2 = (3 * 3.0) / (3 + 2 + 1.25)
    expected = r0 + GAMMA * r1 + GAMMA**2 * r2
    est = WPDIS(gamma=GAMMA, normalization="absorbing")
    assert est.estimate_policy_value(tiny_log, TARGET) == pytest.approx(expected, rel=1e-12)


def test_sequential_dr_by_hand(tiny_log):
    # sum_t gamma^t [rho_t (r_t - Q(s_t, a_t)) + rho_{t-1} V(s_t)]
    ep5 = (
        (1 * (1.0 - 2.0) + 1 * 1.5)
        + GAMMA * (1.5 * (0.0 - 1.0) + 1 * 0.875)
        + GAMMA**2 * (3 * (3.0 - 2.5) + 1.5 * 2.0)
    )
    ep9 = 2 * (2.0 - 3.0) + 1 * 2.0
    ep2 = (0.625 * (4.0 - 2.0) + 1 * 2.5) + GAMMA * (1.25 * (1.0 - 1.0) + 0.625 * 1.3)
    value = SequentialDR(gamma=GAMMA).estimate_policy_value(tiny_log, TARGET, estimated_q=Q)
    assert value == pytest.approx((ep5 + ep9 + ep2) / 3, rel=1e-12)


def test_fqe_value_by_hand(tiny_log):
    value = FQE(gamma=GAMMA).estimate_policy_value(tiny_log, TARGET, estimated_q=Q)
    assert value == pytest.approx((1.5 + 2.0 + 2.5) / 3, rel=1e-12)


def test_on_policy_weights_reduce_to_the_mean_return(tiny_log):
    on_policy = LoggedData(
        ACTIONS, REWARDS, np.ones(6), ("a", "b"), episode_ids=EPISODES, steps=STEPS
    )
    target = np.eye(2)[ACTIONS]  # the logged action with probability 1
    mean_return = (1.0 + GAMMA * 0.0 + GAMMA**2 * 3.0 + 2.0 + 4.0 + GAMMA * 1.0) / 3
    for est in (
        PDIS(gamma=GAMMA),
        WPDIS(gamma=GAMMA),
        WPDIS(gamma=GAMMA, normalization="absorbing"),
    ):
        assert est.estimate_policy_value(on_policy, target) == pytest.approx(mean_return)
    # DR with any Q telescopes to the return when every weight is 1.
    value = SequentialDR(gamma=GAMMA).estimate_policy_value(on_policy, target, estimated_q=Q)
    assert value == pytest.approx(mean_return)


def test_fqe_is_exact_on_a_deterministic_log():
    # Two actions, one feature; reward = action, every episode of 2 steps: target always 1.
    n_ep = 6
    actions = np.array([[0, 1], [1, 0]] * (n_ep // 2)).ravel()  # both actions at every step
    data = LoggedData(
        actions=actions,
        rewards=actions.astype(float),
        propensities=np.full(2 * n_ep, 0.5),
        action_names=("a", "b"),
        features=np.ones((2 * n_ep, 1)),
        feature_names=("one",),
        episode_ids=np.repeat(np.arange(n_ep), 2),
        steps=np.tile([0, 1], n_ep),
    )
    q = FittedQEvaluation(LinearRegression(), gamma=0.5).fit_predict(
        data, np.array([0.0, 1.0]), rng=0
    )
    assert np.allclose(q.values[0::2], [[0.5, 1.5]])  # step 0: r(a) + 0.5 * 1
    assert np.allclose(q.values[1::2], [[0.0, 1.0]])  # step 1: r(a)
    assert FQE(gamma=0.5).estimate_policy_value(data, np.array([0.0, 1.0]), estimated_q=q) == (
        pytest.approx(1.5)
    )


def test_bootstrap_resamples_whole_episodes(tiny_log):
    # The bootstrap values equal the estimator re-run on logs rebuilt from resampled episodes.
    est = WPDIS(gamma=GAMMA)
    terms = est.episode_terms(tiny_log, TARGET)
    values = episode_bootstrap_values(terms, n_bootstrap=4, rng=np.random.default_rng(3))
    draws = np.random.default_rng(3).integers(0, 3, size=(4, 3))
    tr = trajectories(tiny_log)
    for b in range(4):
        rows, ids = [], []
        for k, ep in enumerate(draws[b]):
            members = np.flatnonzero(tr.episode == ep)
            rows.extend(members.tolist())
            ids.extend([k] * members.shape[0])
        rows_a = np.array(rows)
        again = LoggedData(
            ACTIONS[rows_a],
            REWARDS[rows_a],
            PROPENSITIES[rows_a],
            ("a", "b"),
            episode_ids=np.array(ids),
            steps=STEPS[rows_a],
        )
        assert values[b] == pytest.approx(est.estimate_policy_value(again, TARGET[rows_a]))


def test_normal_interval_matches_bootstrap_roughly():
    rng = np.random.default_rng(0)
    terms = EpisodeTerms(400, rng.normal(size=400))
    boot = episode_bootstrap_values(terms, n_bootstrap=2000, rng=rng)
    psi = terms.influence()
    assert boot.std() == pytest.approx(psi.std() / np.sqrt(400), rel=0.1)


def _mdp_log(n_episodes: int, seed: int) -> tuple[LoggedData, np.ndarray, float]:
    """A 2-state MDP whose episodes end early with a chance that depends on the action.

    Returns the log (logging policy b), the target's per-row probabilities and its exact value.
    """
    horizon, gamma = 4, 0.9
    mean_r = np.array([[1.0, 0.2], [0.3, 2.0]])  # (state, action)
    end = np.array([0.1, 0.35])  # chance the episode ends after action a
    stay = 0.8  # next state = action with this chance
    behavior = np.array([[0.6, 0.4], [0.3, 0.7]])
    target = np.array([[0.2, 0.8], [0.7, 0.3]])
    # Exact value by backward induction.
    v_next = np.zeros(2)
    for _ in range(horizon):
        trans = np.array([[stay, 1 - stay], [1 - stay, stay]])  # (action, next state)
        q = mean_r + gamma * (1 - end)[None, :] * (trans @ v_next)[None, :]
        v_next = (target * q).sum(axis=1)
    truth = float(0.5 * v_next[0] + 0.5 * v_next[1])

    rng = np.random.default_rng(seed)
    state = rng.integers(0, 2, n_episodes)
    alive = np.ones(n_episodes, dtype=bool)
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("ep", "t", "s", "a", "r", "p")}
    for t in range(horizon):
        ep = np.flatnonzero(alive)
        s = state[ep]
        a = (rng.random(ep.shape[0]) < behavior[s, 1]).astype(int)
        r = mean_r[s, a] + rng.normal(0.0, 0.5, ep.shape[0])
        for key, val in zip(
            cols, (ep, np.full(ep.shape[0], t), s, a, r, behavior[s, a]), strict=True
        ):
            cols[key].append(val)
        alive[ep[rng.random(ep.shape[0]) < end[a]]] = False
        state[ep] = np.where(rng.random(ep.shape[0]) < stay, a, 1 - a)
    c = {k: np.concatenate(v) for k, v in cols.items()}
    data = LoggedData(
        actions=c["a"],
        rewards=c["r"],
        propensities=c["p"],
        action_names=("a", "b"),
        features=np.eye(2)[c["s"]],
        feature_names=("s0", "s1"),
        episode_ids=c["ep"],
        steps=c["t"],
    )
    return data, target[c["s"]], truth


def test_known_truth_with_action_dependent_episode_ends():
    data, target, truth = _mdp_log(20_000, seed=1)
    assert np.unique(trajectories(data).lengths).tolist() == [1, 2, 3, 4]
    q = FittedQEvaluation(Ridge(alpha=1e-6), gamma=0.9).fit_predict(data, target, rng=0)
    for est in (
        PDIS(gamma=0.9),
        WPDIS(gamma=0.9, normalization="absorbing"),
        SequentialDR(gamma=0.9),
        FQE(gamma=0.9),
    ):
        result = est.estimate_interval(data, target, estimated_q=q, n_bootstrap=300, rng=0)
        assert result.value == pytest.approx(truth, rel=0.03), est
        if not isinstance(est, FQE):  # FQE's interval ignores the regression's own error
            assert result.ci_low <= truth <= result.ci_high, (est, result, truth)


@pytest.mark.parametrize(
    ("make", "kwargs", "err", "match"),
    [
        (lambda: PDIS(gamma=1.5), {}, ValueError, "`gamma` must be <= 1"),
        (lambda: WPDIS(normalization="all"), {}, ValueError, "`normalization` must be one of"),
        (lambda: SequentialDR(), {}, ValueError, "`estimated_q` is required by sdr"),
        (
            lambda: FQE(gamma=0.5),
            {"estimated_q": QEstimates(Q, 0.9)},
            ValueError,
            "fitted with gamma=0.9",
        ),
        (lambda: FQE(), {"estimated_q": Q[:, :1]}, ValueError, r"`estimated_q` must have shape"),
    ],
)
def test_bad_input_table(tiny_log, make, kwargs, err, match):
    with pytest.raises(err, match=match):
        make().estimate_policy_value(tiny_log, TARGET, **kwargs)


def test_log_without_episodes_or_with_repeated_steps_is_refused():
    flat = LoggedData(ACTIONS, REWARDS, PROPENSITIES, ("a", "b"))
    with pytest.raises(ValueError, match="need the `episode_id` and `step` columns"):
        PDIS().estimate_policy_value(flat, TARGET)
    repeated = LoggedData(
        ACTIONS,
        REWARDS,
        PROPENSITIES,
        ("a", "b"),
        episode_ids=EPISODES,
        steps=np.array([0, 3, 1, 0, 1, 1]),
    )
    with pytest.raises(ValueError, match=r"column `step` must not repeat .* row 4 repeats step 1"):
        PDIS().estimate_policy_value(repeated, TARGET)


@pytest.mark.parametrize("name", sorted(SEQUENTIAL_ESTIMATORS))
@pytest.mark.parametrize("method", ["bootstrap", "normal"])
def test_contract_interval_brackets_value(tiny_log, name, method):
    est = SEQUENTIAL_ESTIMATORS[name](gamma=GAMMA)
    result = est.estimate_interval(
        tiny_log, TARGET, estimated_q=Q, method=method, n_bootstrap=200, rng=0
    )
    assert result.estimator == name
    assert result.ci_low <= result.value <= result.ci_high or method == "bootstrap"
    assert result.n_rounds == 6


def test_trajectory_diagnostics(tiny_log):
    diag = diagnose_trajectories(tiny_log, TARGET)
    assert diag["n_episodes"] == 3
    assert diag["longest_episode"] == 3
    assert diag["max_cumulative_weight"] == pytest.approx(3.0)
    final = np.array([3.0, 2.0, 1.25])
    assert diag["episode_effective_sample_size"] == pytest.approx(
        final.sum() ** 2 / (final @ final)
    )


@pytest.mark.parametrize("normalization", ["reached", "absorbing"])
def test_wpdis_normal_interval_width_matches_the_episode_bootstrap(normalization):
    rng = np.random.default_rng(5)
    n_ep, horizon = 600, 5
    lengths = rng.integers(1, horizon + 1, n_ep)
    ep = np.repeat(np.arange(n_ep), lengths)
    steps = np.concatenate([np.arange(k) for k in lengths])
    n = ep.shape[0]
    actions = rng.integers(0, 2, n)
    data = LoggedData(
        actions,
        rng.normal(1.0, 1.0, n) + actions,
        np.full(n, 0.5),
        ("a", "b"),
        episode_ids=ep,
        steps=steps,
    )
    target = np.array([0.3, 0.7])
    terms = WPDIS(gamma=0.95, normalization=normalization).episode_terms(data, target)
    boot = episode_bootstrap_values(terms, n_bootstrap=2000, rng=rng)
    se = terms.influence().std(ddof=1) / np.sqrt(n_ep)
    assert boot.std() == pytest.approx(se, rel=0.12)
    assert boot.mean() == pytest.approx(terms.value(), abs=3 * se)


# --------------------------------------------------------------------------------------------
# No confident numbers without evidence
# --------------------------------------------------------------------------------------------


def _episodes(propensities: np.ndarray, actions: np.ndarray | None = None) -> LoggedData:
    """Two episodes of ``len(propensities) // 2`` steps each."""
    n = propensities.shape[0]
    return LoggedData(
        actions=np.zeros(n, dtype=int) if actions is None else actions,
        rewards=np.ones(n),
        propensities=propensities,
        action_names=("a", "b"),
        episode_ids=np.repeat([0, 1], n // 2),
        steps=np.tile(np.arange(n // 2), 2),
    )


@pytest.mark.parametrize("name", sorted(SEQUENTIAL_ESTIMATORS))
def test_an_unsupported_target_gets_no_estimate(name):
    data = _episodes(np.full(6, 0.5))  # the log only ever took action "a"
    est = SEQUENTIAL_ESTIMATORS[name](gamma=GAMMA)
    with pytest.raises(ValueError, match="no logged decision supports the target"):
        est.estimate_interval(data, np.array([0.0, 1.0]), estimated_q=np.ones((6, 2)))


def test_overflowing_weights_are_refused_by_row():
    tiny = _episodes(np.array([0.5, 0.5, 1e-320, 0.5, 0.5, 0.5]))
    with pytest.raises(ValueError, match=r"`propensity` at row 2 is 1e-320"):
        PDIS().estimate_policy_value(tiny, np.array([0.5, 0.5]))
    with pytest.raises(ValueError, match=r"`propensity` at row 2 is 1e-320"):
        diagnose_trajectories(tiny, np.array([0.5, 0.5]))
    # each weight 1e60 is fine, the product of two (1e120) is not
    small = _episodes(np.full(8, 1e-60))
    match = (
        r"the cumulative importance weight reaches 1e\+120 at row 1 \(decision 1 of its "
        r"episode\): products of per-decision weights must stay below 1e\+100"
    )
    with pytest.raises(ValueError, match=match):
        PDIS().estimate_policy_value(small, np.array([1.0, 0.0]))
    with pytest.raises(ValueError, match=match):
        diagnose_trajectories(small, np.array([1.0, 0.0]))


@pytest.mark.parametrize("n_bootstrap", [1, 99])
def test_too_few_resamples_are_refused(tiny_log, n_bootstrap):
    with pytest.raises(ValueError, match=rf"`n_bootstrap` must be >= 100 .*got {n_bootstrap}"):
        PDIS().estimate_interval(tiny_log, TARGET, n_bootstrap=n_bootstrap, rng=0)
    PDIS().estimate_interval(tiny_log, TARGET, method="normal", n_bootstrap=1)


def test_fitted_q_reports_progress_per_fold_and_step(tiny_log):
    calls: list[int] = []
    FittedQEvaluation(Ridge(), gamma=GAMMA, n_folds=2).fit_predict(
        tiny_log, TARGET, rng=0, progress=calls.append
    )
    assert calls == [1] * (2 * trajectories(tiny_log).horizon)
