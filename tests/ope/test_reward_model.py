"""Cross-fitted reward models: out-of-fold predictions, shapes, classifiers."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.linear_model import LinearRegression, LogisticRegression

from campaignrl.logs.io import LoggedData
from campaignrl.ope import DR, CrossFittedRewardModel


class _RowMemory(RegressorMixin, BaseEstimator):
    """Predicts 1 for rows it was trained on (column 0 of the features is a row id), else 0."""

    def fit(self, x: np.ndarray, y: np.ndarray) -> _RowMemory:
        self.seen_ = set(x[:, -1].tolist())
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.array([1.0 if row in self.seen_ else 0.0 for row in x[:, -1].tolist()])


def _log(n: int, n_actions: int = 3, positions: bool = False) -> LoggedData:
    rng = np.random.default_rng(0)
    return LoggedData(
        actions=rng.integers(0, n_actions, n),
        rewards=rng.integers(0, 2, n).astype(float),
        propensities=np.full(n, 1.0 / n_actions),
        action_names=tuple(f"a{i}" for i in range(n_actions)),
        features=np.arange(n, dtype=float)[:, None],
        feature_names=("row_id",),
        positions=rng.integers(0, 2, n) if positions else None,
    )


@pytest.mark.parametrize("n_folds", [2, 3, 5])
def test_no_row_is_predicted_by_a_model_that_saw_it(n_folds):
    data = _log(60)
    q = CrossFittedRewardModel(_RowMemory(), n_folds=n_folds).fit_predict(data, rng=0)
    assert q.shape == (60, 3)
    assert not q.any()  # an in-sample fit would predict 1 somewhere


def test_positions_give_a_three_dimensional_matrix_and_classifiers_give_probabilities():
    data = _log(90, positions=True)
    q = CrossFittedRewardModel(LogisticRegression(), n_folds=3).fit_predict(data, rng=0)
    assert q.shape == (90, 3, 2)
    assert ((q >= 0) & (q <= 1)).all()
    value = DR().estimate_policy_value(data, np.full((3, 2), 1 / 3), estimated_rewards=q)
    assert np.isfinite(value)


def test_fold_split_is_seeded():
    data = _log(30)
    model = CrossFittedRewardModel(LinearRegression())
    np.testing.assert_array_equal(model.fit_predict(data, rng=1), model.fit_predict(data, rng=1))


class _RandomState(RegressorMixin, BaseEstimator):
    """Predicts its own ``random_state`` (or -1 when it has none), to see which seed it got."""

    def __init__(self, random_state: int | None = None) -> None:
        self.random_state = random_state

    def fit(self, x: np.ndarray, y: np.ndarray) -> _RandomState:
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.full(len(x), -1.0 if self.random_state is None else float(self.random_state))


def test_a_model_s_own_randomness_comes_from_the_caller_s_seed():
    # Gradient boosting's early-stopping split (on by default past 10,000 rows) drew fresh
    # entropy: one seed gave a different DR estimate on each run.
    data = _log(30)
    model = CrossFittedRewardModel(_RandomState())
    first, again = model.fit_predict(data, rng=1), model.fit_predict(data, rng=1)
    np.testing.assert_array_equal(first, again)
    assert (first >= 0).all()  # every fold's model was given a seed
    assert len(np.unique(first)) == 3  # one per fold, drawn from the generator
    assert not np.array_equal(first, model.fit_predict(data, rng=2))
    # A random_state the user set is theirs.
    fixed = CrossFittedRewardModel(_RandomState(random_state=7)).fit_predict(data, rng=1)
    assert (fixed == 7).all()


def test_gradient_boosting_reward_models_repeat_with_the_seed():
    from sklearn.ensemble import HistGradientBoostingRegressor

    rng = np.random.default_rng(3)
    n = 18_000  # folds train on 12,000 rows: above 10,000 HistGradientBoosting splits at random
    data = LoggedData(
        actions=rng.integers(0, 3, n),
        rewards=rng.normal(size=n),
        propensities=np.full(n, 1 / 3),
        action_names=("a", "b", "c"),
        features=rng.normal(size=(n, 2)),
        feature_names=("x0", "x1"),
    )
    model = CrossFittedRewardModel(HistGradientBoostingRegressor(max_iter=20))
    np.testing.assert_array_equal(model.fit_predict(data, rng=5), model.fit_predict(data, rng=5))


def test_a_linear_model_recovers_additive_action_effects():
    rng = np.random.default_rng(0)
    n = 3000
    actions = rng.integers(0, 3, n)
    x = rng.normal(size=(n, 2))
    mean = np.array([0.0, 1.0, -0.5])[:, None] + (x @ np.array([0.3, -0.2]))[None, :]
    rewards = mean[actions, np.arange(n)] + rng.normal(0, 0.1, n)
    data = LoggedData(actions, rewards, np.full(n, 1 / 3), ("a", "b", "c"), x, ("x0", "x1"))
    q = CrossFittedRewardModel(LinearRegression()).fit_predict(data, rng=0)
    np.testing.assert_allclose(q, mean.T, atol=0.05)


@pytest.mark.parametrize(
    "kwargs, err, match",
    [
        ({"estimator": LinearRegression(), "n_folds": 1}, ValueError, "`n_folds` must be >= 2"),
        ({"estimator": LinearRegression(), "n_folds": 2.0}, TypeError, "`n_folds` must be of"),
        ({"estimator": object()}, TypeError, "`estimator` must be a scikit-learn estimator"),
    ],
)
def test_bad_arguments_are_refused(kwargs, err, match):
    with pytest.raises(err, match=match):
        CrossFittedRewardModel(**kwargs)


def test_classifier_needs_binary_rewards_and_enough_rows():
    data = _log(10)
    bad = LoggedData(data.actions, data.rewards + 0.5, data.propensities, data.action_names)
    with pytest.raises(ValueError, match=r"0/1 rewards, got 1.5 at row 0"):
        CrossFittedRewardModel(LogisticRegression()).fit_predict(bad, rng=0)
    with pytest.raises(ValueError, match="at least n_folds=3 rows, got 2"):
        small = LoggedData(
            data.actions[:2], data.rewards[:2], data.propensities[:2], ("a", "b", "c")
        )
        CrossFittedRewardModel(LinearRegression()).fit_predict(small, rng=0)


@pytest.mark.parametrize("positions", [False, True])
def test_progress_adds_up_to_the_announced_work(positions):
    data = _log(60, positions=positions)
    model = CrossFittedRewardModel(LinearRegression(), n_folds=3)
    calls: list[int] = []
    model.fit_predict(data, rng=0, progress=calls.append)
    assert sum(calls) == model.work(data) == 3 * (1 + 3 * data.n_positions)
    assert calls.count(1) >= 3  # one per fold fitted, then the predicted pairs
