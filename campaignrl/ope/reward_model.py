"""Cross-fitted reward models ``q_hat(x, a)`` for DM and the doubly robust estimators."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from campaignrl._checks import check_scalar
from campaignrl.logs.io import LoggedData

__all__ = ["CrossFittedRewardModel"]

_BATCH_ELEMENTS = 1 << 23
"""design-matrix entries predicted per call (8M: 64 MB of float64)"""


@dataclass(frozen=True, eq=False)
class CrossFittedRewardModel:
    """A scikit-learn model of the reward, cross-fitted so no row is scored by its own fit.

    The rows are split at random into ``n_folds`` folds; for each fold a fresh clone of
    ``estimator`` is fitted on the other folds and predicts the fold's rows, for every action
    (and position). Out-of-fold predictions keep DR's correction term honest: a model that had
    seen the row would have fitted its noise.

    The input of the model is deliberately simple: a one-hot action, a one-hot position
    (multi-slot logs) and the context features. A linear model therefore learns additive
    action effects only; use a model with interactions (trees, boosting) for rewards whose
    action effects depend on the context. A classifier (``is_classifier``) predicts the
    probability of reward 1 and needs 0/1 rewards.

    Examples:
        >>> from sklearn.linear_model import Ridge
        >>> from campaignrl.logs.io import LoggedData
        >>> rng = np.random.default_rng(0)
        >>> data = LoggedData(
        ...     actions=rng.integers(0, 3, 60),
        ...     rewards=rng.normal(size=60),
        ...     propensities=np.full(60, 1 / 3),
        ...     action_names=("a", "b", "c"),
        ...     features=rng.normal(size=(60, 2)),
        ...     feature_names=("x0", "x1"),
        ... )
        >>> CrossFittedRewardModel(Ridge()).fit_predict(data, rng=np.random.default_rng(1)).shape
        (60, 3)
    """

    estimator: Any
    """an unfitted scikit-learn regressor or classifier (cloned for every fold)"""
    n_folds: int = 3
    """number of cross-fitting folds (>= 2)"""

    def __post_init__(self) -> None:
        check_scalar(self.n_folds, "n_folds", int, min_val=2)
        for method in ("fit", "predict"):
            if not callable(getattr(self.estimator, method, None)):
                raise TypeError(
                    f"`estimator` must be a scikit-learn estimator with fit/predict, "
                    f"got {type(self.estimator).__name__}"
                )

    def work(self, data: LoggedData) -> int:
        """How many units of work :meth:`fit_predict` reports to ``progress`` on ``data``.

        One per fold fitted, and one per (action, position) pair predicted in each fold.

        Examples:
            >>> from sklearn.linear_model import Ridge
            >>> data = LoggedData(np.zeros(3, int), np.zeros(3), np.ones(3), ("a", "b"))
            >>> CrossFittedRewardModel(Ridge()).work(data)
            9
        """
        return self.n_folds * (1 + data.n_actions * data.n_positions)

    def fit_predict(
        self,
        data: LoggedData,
        *,
        rng: np.random.Generator | int | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Out-of-fold predictions ``q_hat(x_i, a)`` for every logged row and action.

        Args:
            data: The log; its rewards are the targets.
            rng: Generator or seed of the fold split and of each fold model's
                ``random_state`` when the estimator has one left at ``None`` (``None``: fresh
                entropy).
            progress: Called with the units of work done as they are done (``work(data)``
                in all: a fold fitted is 1, a batch of predicted pairs its size), e.g. to
                advance a progress bar.

        Returns:
            ``(n, A)`` predictions, or ``(n, A, L)`` for a log with positions.

        Raises:
            ValueError: With fewer rows than folds, or a classifier on non-binary rewards.
        """
        from sklearn.base import clone, is_classifier  # imported here: OPE without models is light

        n, n_a = data.n_rounds, data.n_actions
        if n < self.n_folds:
            raise ValueError(f"`data` needs at least n_folds={self.n_folds} rows, got {n}")
        classify = is_classifier(self.estimator)
        if classify and not np.isin(data.rewards, (0.0, 1.0)).all():
            bad = int(np.argmax(~np.isin(data.rewards, (0.0, 1.0))))
            raise ValueError(
                f"a classifier reward model needs 0/1 rewards, got {float(data.rewards[bad])!r} "
                f"at row {bad}"
            )
        generator = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        folds = generator.permutation(n) % self.n_folds
        positioned = data.positions is not None
        n_l = data.n_positions if positioned else 1
        out = np.empty((n, n_a, n_l))
        design = _design(data, data.actions, data.positions, np.arange(n))
        for k in range(self.n_folds):
            test = np.flatnonzero(folds == k)
            train = np.flatnonzero(folds != k)
            model = clone(self.estimator)
            # A model that draws randomness of its own (gradient boosting's early-stopping
            # split, forests' bootstrap) gets it from the caller's generator, so one seed gives
            # one estimate; a random_state the user set is kept.
            if "random_state" in (params := model.get_params()) and params["random_state"] is None:
                model.set_params(random_state=int(generator.integers(2**31 - 1)))
            model.fit(design[train], data.rewards[train])
            if progress is not None:
                progress(1)
            # Predict many (action, position) pairs per call: models such as gradient boosting
            # pay a large fixed cost per predict call. Batches stay near _BATCH_ELEMENTS.
            pairs = [(a, pos) for a in range(n_a) for pos in range(n_l)]
            per_batch = max(1, _BATCH_ELEMENTS // max(1, test.shape[0] * design.shape[1]))
            for start in range(0, len(pairs), per_batch):
                batch = pairs[start : start + per_batch]
                actions = np.concatenate([np.full(test.shape[0], a) for a, _ in batch])
                positions = (
                    np.concatenate([np.full(test.shape[0], pos) for _, pos in batch])
                    if positioned
                    else None
                )
                x = _design(data, actions, positions, np.tile(test, len(batch)))
                pred = _predict(model, x, classify).reshape(len(batch), test.shape[0])
                for j, (a, pos) in enumerate(batch):
                    out[test, a, pos] = pred[j]
                if progress is not None:
                    progress(len(batch))
        return out if positioned else out[:, :, 0]


def _design(
    data: LoggedData, actions: np.ndarray, positions: np.ndarray | None, rows: np.ndarray
) -> np.ndarray:
    """``[one-hot action | one-hot position | features]`` for ``rows``."""
    parts = [np.eye(data.n_actions)[actions]]
    if positions is not None:
        parts.append(np.eye(data.n_positions)[positions])
    if data.features is not None:
        parts.append(data.features[rows])
    return np.hstack(parts)


def _predict(model: Any, x: np.ndarray, classify: bool) -> np.ndarray:
    if not classify:
        return np.asarray(model.predict(x), dtype=np.float64)
    proba = model.predict_proba(x)
    classes = list(model.classes_)
    if 1.0 not in classes:  # the training folds never saw a reward: predict 0
        return np.zeros(x.shape[0])
    return np.asarray(proba[:, classes.index(1.0)], dtype=np.float64)
