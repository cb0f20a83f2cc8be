r"""Sequential off-policy estimators for trajectory logs: PDIS, WPDIS, sequential DR and FQE.

A trajectory log holds episodes (``episode_id``: one customer's campaign) of decisions ordered
by ``step``. Episodes may have DIFFERENT LENGTHS: nothing here assumes a fixed horizon (SCOPE-RL,
the reference implementation, does). Notation: episode ``i`` has ``T_i`` decisions
``(s_{i,t}, a_{i,t}, r_{i,t})``, ``t = 0 .. T_i - 1`` (``t`` is the decision's rank in its
episode by ``step``: gaps in ``step`` are not discounted); per-decision weights
``w_{i,t} = pi_e(a_{i,t} | s_{i,t}) / pi_b(a_{i,t} | s_{i,t})``; cumulative weights
``rho_{i,t} = prod_{t' <= t} w_{i,t'}`` (``rho_{i,-1} = 1``); a discount ``gamma``. The value
is the expected discounted return of an episode under ``pi_e``,
``V = E[ sum_{t < T} gamma^t r_t ]``: an episode that has ended earns nothing more.

Every estimate is a mean over EPISODES, and the bootstrap resamples episodes (whole
trajectories), never rows: decisions within an episode are dependent.

References: Precup, Sutton & Singh, "Eligibility Traces for Off-Policy Policy Evaluation",
ICML 2000 (PDIS, WPDIS); Jiang & Li, "Doubly Robust Off-policy Value Evaluation for
Reinforcement Learning", ICML 2016 and Thomas & Brunskill, "Data-Efficient Off-Policy Policy
Evaluation for Reinforcement Learning", ICML 2016 (sequential DR); Le, Voloshin & Yue, "Batch
Policy Learning under Constraints", ICML 2019 (FQE); SCOPE-RL (Kiyohara et al., 2023),
``scope_rl/ope/discrete/basic_estimators.py``, for the fixed-horizon forms.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, ClassVar

import numpy as np
from scipy import sparse

from campaignrl._checks import check_choice, check_scalar
from campaignrl.logs.io import LoggedData
from campaignrl.ope.diagnostics import MAX_WEIGHT, importance_weights, require_support
from campaignrl.ope.intervals import MIN_BOOTSTRAP
from campaignrl.ope.records import Estimate
from campaignrl.ope.target import TargetPolicy, as_target

__all__ = [
    "FQE",
    "PDIS",
    "SEQUENTIAL_ESTIMATORS",
    "WPDIS",
    "BaseSequentialEstimator",
    "EpisodeTerms",
    "FittedQEvaluation",
    "QEstimates",
    "SequentialDR",
    "Trajectories",
    "cumulative_weights",
    "diagnose_trajectories",
    "episode_bootstrap_values",
    "trajectories",
]

_CHUNK_ELEMENTS = 1 << 22
"""resample counts held at once in the bootstrap (4M episodes x resamples)"""


# --------------------------------------------------------------------------------------------
# Trajectory structure
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Trajectories:
    """Where every logged row sits in its episode (all arrays indexed by log row)."""

    episode: np.ndarray
    """(n,) episode index in ``[0, n_episodes)`` of each row"""
    t: np.ndarray
    """(n,) rank of the row in its episode by ``step`` (0 = first decision)"""
    next_row: np.ndarray
    """(n,) the row of the episode's next decision, -1 for its last one"""
    last_row: np.ndarray
    """(N,) the row of each episode's last decision"""
    lengths: np.ndarray
    """(N,) number of decisions ``T_i`` of each episode"""

    @property
    def n_episodes(self) -> int:
        """Number of episodes ``N``."""
        return int(self.lengths.shape[0])

    @property
    def horizon(self) -> int:
        """Length of the longest episode."""
        return int(self.lengths.max()) if self.lengths.size else 0

    def by_step(self) -> list[np.ndarray]:
        """Rows grouped by ``t``: element ``t`` holds the rows that are ``t``-th decisions."""
        order = np.argsort(self.t, kind="stable")
        bounds = np.searchsorted(self.t[order], np.arange(self.horizon + 1))
        return [order[bounds[k] : bounds[k + 1]] for k in range(self.horizon)]

    def matrix(self, values: np.ndarray) -> sparse.csr_array:
        """``(N, horizon)`` sparse matrix with ``values[row]`` at ``(episode, t)``."""
        shape = (self.n_episodes, self.horizon)
        return sparse.csr_array((values, (self.episode, self.t)), shape=shape)


def trajectories(data: LoggedData) -> Trajectories:
    """Index the episodes of a trajectory log.

    Raises:
        ValueError: If the log has no ``episode_id`` or ``step`` column, or repeats a step
            within an episode (naming the column and the row).

    Examples:
        >>> data = LoggedData(
        ...     actions=np.zeros(5, dtype=int), rewards=np.ones(5), propensities=np.ones(5),
        ...     action_names=("a",), episode_ids=np.array([7, 7, 3, 7, 3]),
        ...     steps=np.array([2, 0, 5, 1, 4]),
        ... )
        >>> tr = trajectories(data)
        >>> tr.episode.tolist(), tr.t.tolist(), tr.next_row.tolist(), tr.lengths.tolist()
        ([1, 1, 0, 1, 0], [2, 0, 1, 1, 0], [-1, 3, -1, 0, 2], [2, 3])
    """
    if data.episode_ids is None or data.steps is None:
        missing = [
            c for c, v in (("episode_id", data.episode_ids), ("step", data.steps)) if v is None
        ]
        raise ValueError(
            f"sequential estimators need the `episode_id` and `step` columns; the log has no "
            f"{', '.join(f'`{c}`' for c in missing)}"
        )
    n = data.n_rounds
    _, episode = np.unique(data.episode_ids, return_inverse=True)
    episode = episode.astype(np.int64).reshape(-1)
    order = np.lexsort((data.steps, episode))
    ep_sorted, step_sorted = episode[order], data.steps[order]
    new_episode = np.ones(n, dtype=bool)
    new_episode[1:] = ep_sorted[1:] != ep_sorted[:-1]
    repeated = ~new_episode & np.r_[False, step_sorted[1:] == step_sorted[:-1]]
    if repeated.any():
        row = int(order[int(np.argmax(repeated))])
        raise ValueError(
            f"column `step` must not repeat within an episode: row {row} repeats step "
            f"{int(data.steps[row])} of its episode (one decision per step)"
        )
    starts = np.flatnonzero(new_episode)
    lengths = np.diff(np.r_[starts, n])
    t_sorted = np.arange(n) - np.repeat(starts, lengths)
    t = np.empty(n, dtype=np.int64)
    t[order] = t_sorted
    next_sorted = np.r_[order[1:], -1]
    next_sorted[np.r_[starts[1:] - 1, n - 1]] = -1  # last row of every episode
    next_row = np.empty(n, dtype=np.int64)
    next_row[order] = next_sorted
    last_row = order[np.r_[starts[1:] - 1, n - 1]] if n else np.zeros(0, dtype=np.int64)
    return Trajectories(episode, t, next_row, last_row, lengths.astype(np.int64))


# --------------------------------------------------------------------------------------------
# Per-episode terms, the value and its intervals
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class EpisodeTerms:
    r"""Per-episode pieces of a sequential estimate, so that intervals can resample episodes.

    The estimate is

    .. math::
        V = \frac{1}{N} \sum_i d_i + \sum_t m_t \frac{\sum_i u_{i,t}}{\sum_i v_{i,t}}

    with ``direct`` terms ``d_i`` (PDIS, DR, FQE), and for weighted estimators per-step
    numerators ``u``, denominators ``v`` and share ``m_t``: the share of episodes that reach
    step ``t`` (``reach``), or 1 without ``reach``. ``carried`` adds, to the denominators of
    every step after an episode's end, its final cumulative weight (the absorbing-state
    normalization of :class:`WPDIS`). A ratio with a zero denominator counts as zero.
    """

    n_episodes: int
    """number of episodes ``N``"""
    direct: np.ndarray | None
    """(N,) terms averaged over episodes, or ``None``"""
    numerator: sparse.csr_array | None = None
    """(N, T) per-step numerators ``u_{i,t}``, or ``None``"""
    denominator: sparse.csr_array | None = None
    """(N, T) per-step denominators ``v_{i,t}`` (with ``numerator``)"""
    reach: sparse.csr_array | None = None
    """(N, T) 1 where episode ``i`` has a decision at step ``t``; ``None``: every ``m_t = 1``"""
    carried: sparse.csr_array | None = None
    """(N, T) final weight at an episode's last step, counted in all later denominators"""

    def values(self, counts: np.ndarray) -> np.ndarray:
        """The estimate on resamples given by episode ``counts`` ``(B, N)``, shape ``(B,)``."""
        total = counts.sum(axis=1)
        out = np.zeros(counts.shape[0])
        if self.direct is not None:
            out += counts @ self.direct / total
        if self.numerator is not None and self.denominator is not None:
            num = np.asarray(self.numerator.T @ counts.T)  # (T, B)
            den = np.asarray(self.denominator.T @ counts.T)
            if self.carried is not None:
                carried = np.asarray(self.carried.T @ counts.T)
                den = den + np.cumsum(carried, axis=0) - carried  # ended strictly before t
            ratio = np.zeros_like(num)
            np.divide(num, den, out=ratio, where=den != 0.0)
            if self.reach is not None:
                ratio *= np.asarray(self.reach.T @ counts.T) / total
            out += ratio.sum(axis=0)
        return out

    def value(self) -> float:
        """The estimate on the log itself."""
        return float(self.values(np.ones((1, self.n_episodes)))[0])

    def influence(self) -> np.ndarray:
        """Per-episode influence terms ``psi_i`` (mean zero): the linearization of ``value``.

        For the ratio part ``sum_t m_t U_t / V_t`` (means over episodes, ``R_t = U_t / V_t``):
        ``psi_i = sum_t [R_t reach_{i,t} + (m_t / V_t)(u_{i,t} - R_t v_{i,t})]`` (delta
        method), centred; ``Var(V) ~ Var(psi) / N``.
        """
        n = self.n_episodes
        psi = np.zeros(n) if self.direct is None else np.asarray(self.direct, dtype=np.float64)
        if self.numerator is not None and self.denominator is not None:
            u = np.asarray(self.numerator.sum(axis=0)).ravel() / n
            v = np.asarray(self.denominator.sum(axis=0)).ravel() / n
            if self.carried is not None:
                c = np.asarray(self.carried.sum(axis=0)).ravel() / n
                v = v + np.cumsum(c) - c
            ratio = np.zeros_like(u)
            np.divide(u, v, out=ratio, where=v != 0.0)
            if self.reach is not None:
                m = np.asarray(self.reach.sum(axis=0)).ravel() / n
                psi = psi + self.reach @ ratio
            else:
                m = np.ones_like(u)
            g = np.zeros_like(u)
            np.divide(m, v, out=g, where=v != 0.0)
            psi = psi + self.numerator @ g - self.denominator @ (g * ratio)
            if self.carried is not None:
                # sum_t g_t R_t * (carried weight of steps before t) = carried @ G,
                # G_{t'} = sum_{t > t'} g_t R_t.
                gr = g * ratio
                after = np.cumsum(gr[::-1])[::-1] - gr
                psi = psi - self.carried @ after
        return psi - psi.mean()


def _episode_counts(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """``(size, n)`` multinomial resample counts: ``n`` episodes drawn with replacement."""
    draws = rng.integers(0, n, size=(size, n), dtype=np.int64)
    draws += np.arange(size, dtype=np.int64)[:, None] * n
    return np.bincount(draws.ravel(), minlength=size * n).reshape(size, n).astype(np.float64)


def episode_bootstrap_values(
    terms: EpisodeTerms, *, n_bootstrap: int, rng: np.random.Generator
) -> np.ndarray:
    """The estimate on ``n_bootstrap`` resamples of whole episodes, shape ``(B,)``.

    Every resample draws ``N`` episodes with replacement and re-applies the whole estimator,
    per-step self-normalization included. Counts are drawn for many resamples at once.
    """
    n = terms.n_episodes
    if n < 2:
        raise ValueError(f"an interval needs at least 2 episodes, got {n}")
    out = np.empty(n_bootstrap)
    per_chunk = max(1, _CHUNK_ELEMENTS // n)
    for start in range(0, n_bootstrap, per_chunk):
        stop = min(start + per_chunk, n_bootstrap)
        out[start:stop] = terms.values(_episode_counts(n, stop - start, rng))
    return out


# --------------------------------------------------------------------------------------------
# Q-function estimates (FQE), cross-fitted over episodes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class QEstimates:
    """``Q_hat(s_i, a)`` for every logged row and action, and the discount it was fitted with."""

    values: np.ndarray
    """(n, A) estimated discounted value-to-go of taking ``a`` at row ``i``, then ``pi_e``"""
    gamma: float
    """the discount the Q-function was fitted with"""


@dataclass(frozen=True, eq=False)
class FittedQEvaluation:
    r"""Fitted Q evaluation: a scikit-learn regressor iterated backwards over steps.

    For ``t = T_max - 1, ..., 0``, a fresh clone of ``estimator`` is fitted on the decisions
    that are ``t``-th in their episode, to the target
    ``y_{i,t} = r_{i,t} + gamma * sum_a pi_e(a | s_{i,t+1}) Q_hat_{t+1}(s_{i,t+1}, a)``
    (just ``r_{i,t}`` at an episode's last decision): one model per step, so episodes of any
    lengths are handled and no stationarity is assumed. Steps with fewer than ``min_rows``
    training rows predict the mean of their targets.

    Always cross-fitted over EPISODES (``n_folds``): each episode's ``Q_hat`` comes from models
    fitted on the other folds, so the doubly robust correction is not fitted to its own noise.

    The regression input is, with ``interactions`` (default), ``onehot(a) (x) [1, x]``: one
    linear model per action for a linear regressor (the classic linear FQE architecture); or
    ``[onehot(a), x]`` without. For linear regressors (a ``coef_`` attribute) the predictions
    for every action are made in one product.

    Reference: Le, Voloshin & Yue, "Batch Policy Learning under Constraints", ICML 2019.

    Examples:
        >>> from sklearn.linear_model import LinearRegression
        >>> data = LoggedData(
        ...     actions=np.array([0, 1, 0, 1, 1, 0]), rewards=np.array([1.0, 2, 1, 2, 2, 1]),
        ...     propensities=np.full(6, 0.5), action_names=("a", "b"),
        ...     episode_ids=np.array([0, 0, 1, 1, 2, 2]), steps=np.array([0, 1, 0, 1, 0, 1]),
        ... )
        >>> q = FittedQEvaluation(LinearRegression(), gamma=1.0, n_folds=3).fit_predict(
        ...     data, np.array([0.0, 1.0]), rng=0)
        >>> np.round(q.values[0], 6).tolist()  # step 0: reward of a, then b's 2
        [3.0, 4.0]
    """

    estimator: Any
    """an unfitted scikit-learn regressor (cloned for every step and fold)"""
    gamma: float = 1.0
    """discount factor in [0, 1]"""
    n_folds: int = 3
    """number of cross-fitting folds over episodes (>= 2)"""
    interactions: bool = True
    """regress on ``onehot(a) (x) [1, x]`` (per-action models) instead of ``[onehot(a), x]``"""
    min_rows: int = 2
    """fewest training rows at a step for fitting a model there (else the mean target)"""

    def __post_init__(self) -> None:
        check_scalar(self.gamma, "gamma", (int, float), min_val=0.0, max_val=1.0)
        check_scalar(self.n_folds, "n_folds", int, min_val=2)
        check_scalar(self.min_rows, "min_rows", int, min_val=1)
        for method in ("fit", "predict"):
            if not callable(getattr(self.estimator, method, None)):
                raise TypeError(
                    f"`estimator` must be a scikit-learn regressor with fit/predict, "
                    f"got {type(self.estimator).__name__}"
                )

    def fit_predict(
        self,
        data: LoggedData,
        target: Any,
        *,
        rng: np.random.Generator | int | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> QEstimates:
        """Cross-fitted ``Q_hat(s_i, a)`` for every logged row and action.

        Args:
            data: A trajectory log (``episode_id`` and ``step``).
            target: The evaluated policy (see :func:`~campaignrl.ope.target.as_target`).
            rng: Generator or seed of the episode fold split (``None``: fresh entropy).
            progress: Called with 1 after each step of each fold is fitted
                (``n_folds * horizon`` calls in all), e.g. to advance a progress bar.

        Raises:
            ValueError: With fewer episodes than folds, or a log without episodes.
        """
        traj = trajectories(data)
        policy = _target(data, target)
        n_ep = traj.n_episodes
        if n_ep < self.n_folds:
            raise ValueError(f"`data` needs at least n_folds={self.n_folds} episodes, got {n_ep}")
        generator = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        fold_of_episode = generator.permutation(n_ep) % self.n_folds
        fold = fold_of_episode[traj.episode]
        probs = _row_probabilities(policy, data)
        by_step = traj.by_step()
        out = np.zeros((data.n_rounds, data.n_actions))
        for k in range(self.n_folds):
            self._fit_fold(data, traj, probs, by_step, fold != k, fold == k, out, progress)
        return QEstimates(out, float(self.gamma))

    def _fit_fold(
        self,
        data: LoggedData,
        traj: Trajectories,
        probs: np.ndarray,
        by_step: list[np.ndarray],
        train: np.ndarray,
        test: np.ndarray,
        out: np.ndarray,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        from sklearn.base import clone  # imported here: OPE without models stays light

        # v_next[row]: sum_a pi_e(a | s) Q_hat_t(s, a) at training rows of the step just fitted.
        v_at = np.zeros(data.n_rounds)
        for t in range(traj.horizon - 1, -1, -1):
            rows = by_step[t]
            fit_rows, pred_rows = rows[train[rows]], rows[test[rows]]
            nxt = traj.next_row[fit_rows]
            y = data.rewards[fit_rows] + self.gamma * np.where(nxt >= 0, v_at[nxt], 0.0)
            both = np.r_[fit_rows, pred_rows]
            if fit_rows.shape[0] >= self.min_rows:
                model = clone(self.estimator).fit(self._design(data, fit_rows, None), y)
                q = self._predict_all(model, data, both)
            else:
                q = np.full((both.shape[0], data.n_actions), float(y.mean()) if y.size else 0.0)
            q_fit = q[: fit_rows.shape[0]]
            v_at[fit_rows] = np.einsum("ia,ia->i", q_fit, probs[fit_rows])
            out[pred_rows] = q[fit_rows.shape[0] :]
            if progress is not None:
                progress(1)

    def _design(self, data: LoggedData, rows: np.ndarray, action: int | None) -> np.ndarray:
        m, n_a = rows.shape[0], data.n_actions
        x = data.features[rows] if data.features is not None else np.zeros((m, 0))
        actions = data.actions[rows] if action is None else np.full(m, action)
        if not self.interactions:
            return np.hstack([np.eye(n_a)[actions], x])
        z = np.hstack([np.ones((m, 1)), x])
        k = z.shape[1]
        design = np.zeros((m, n_a * k))
        design[np.arange(m)[:, None], actions[:, None] * k + np.arange(k)] = z
        return design

    def _predict_all(self, model: Any, data: LoggedData, rows: np.ndarray) -> np.ndarray:
        n_a = data.n_actions
        coef = getattr(model, "coef_", None)
        if self.interactions and coef is not None and np.ndim(coef) == 1:
            # Linear model on onehot(a) (x) [1, x]: Q(x, a) = [1, x] . beta_a + intercept.
            x = data.features[rows] if data.features is not None else np.zeros((rows.shape[0], 0))
            z = np.hstack([np.ones((rows.shape[0], 1)), x])
            beta = np.asarray(coef, dtype=np.float64).reshape(n_a, z.shape[1])
            return z @ beta.T + float(np.asarray(getattr(model, "intercept_", 0.0)))
        return np.column_stack(
            [np.asarray(model.predict(self._design(data, rows, a))) for a in range(n_a)]
        ).reshape(rows.shape[0], n_a)


# --------------------------------------------------------------------------------------------
# Estimators
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class SequentialInputs:
    """What every sequential estimator works from (row arrays ``(n,)`` in log order)."""

    traj: Trajectories
    """where each row sits in its episode"""
    rewards: np.ndarray
    """``r_{i,t}``"""
    discount: np.ndarray
    """``gamma^t``"""
    rho: np.ndarray
    """cumulative weights ``rho_{i,t}``"""
    rho_prev: np.ndarray
    """``rho_{i,t-1}`` (1 at ``t = 0``)"""
    q_factual: np.ndarray | None
    """``Q_hat(s_{i,t}, a_{i,t})`` if a Q-function is given"""
    v_expected: np.ndarray | None
    """``V_hat(s_{i,t}) = sum_a pi_e(a | s_{i,t}) Q_hat(s_{i,t}, a)`` if a Q-function is given"""


def cumulative_weights(traj: Trajectories, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``rho_{i,t}`` and ``rho_{i,t-1}`` for every row, from per-decision weights.

    Examples:
        >>> data = LoggedData(
        ...     actions=np.zeros(3, dtype=int), rewards=np.ones(3), propensities=np.ones(3),
        ...     action_names=("a",), episode_ids=np.array([0, 0, 0]), steps=np.array([2, 0, 1]),
        ... )
        >>> rho, prev = cumulative_weights(trajectories(data), np.array([4.0, 2.0, 0.5]))
        >>> rho.tolist(), prev.tolist()
        ([4.0, 2.0, 1.0], [1.0, 1.0, 2.0])
    """
    rho = np.empty_like(weights)
    rho_prev = np.empty_like(weights)
    running = np.ones(traj.n_episodes)
    for rows in traj.by_step():
        ep = traj.episode[rows]
        rho_prev[rows] = running[ep]
        rho[rows] = running[ep] * weights[rows]
        running[ep] = rho[rows]
    return rho, rho_prev


@dataclass(frozen=True, kw_only=True)
class BaseSequentialEstimator(ABC):
    """An off-policy estimator of a target policy's expected discounted return per episode.

    Subclasses are frozen dataclasses whose fields are their hyperparameters (checked in
    ``__post_init__``); they implement :meth:`_episode_terms` only. Inputs are validated here,
    once. Intervals resample episodes.
    """

    estimator_name: ClassVar[str]
    """short name used in tables, JSON and the CLI (``pdis``, ``wpdis``, ``sdr``, ``fqe``)"""
    needs_q_model: ClassVar[bool] = False
    """whether ``estimated_q`` is required"""

    gamma: float = 1.0
    """discount factor in [0, 1] (1: the undiscounted campaign total)"""

    def __post_init__(self) -> None:
        check_scalar(self.gamma, "gamma", (int, float), min_val=0.0, max_val=1.0)

    @abstractmethod
    def _episode_terms(self, inputs: SequentialInputs) -> EpisodeTerms:
        """The per-episode terms of the estimate."""

    def episode_terms(
        self, data: LoggedData, target: Any, *, estimated_q: Any = None
    ) -> EpisodeTerms:
        """Validate the inputs and return the per-episode terms.

        Args:
            data: A trajectory log (``episode_id`` and ``step`` columns).
            target: The evaluated policy: a :class:`~campaignrl.ope.target.TargetPolicy`, a
                probability table (``(A,)`` or per row ``(n, A)``) or an object with
                ``probabilities(features)``.
            estimated_q: ``Q_hat(s_i, a)``: :class:`QEstimates` (from
                :class:`FittedQEvaluation`) or an ``(n, A)`` array; required by ``sdr`` and
                ``fqe``, ignored by the others.

        Raises:
            ValueError: On a log without episodes, a target or Q of the wrong shape, a Q fitted
                with another discount, or missing ``estimated_q`` where it is needed.
        """
        return self._episode_terms(self._inputs(data, target, estimated_q))

    def estimate_policy_value(
        self, data: LoggedData, target: Any, *, estimated_q: Any = None
    ) -> float:
        """Estimate the target's value (see :meth:`episode_terms` for the arguments)."""
        return self.episode_terms(data, target, estimated_q=estimated_q).value()

    def estimate_interval(
        self,
        data: LoggedData,
        target: Any,
        *,
        estimated_q: Any = None,
        alpha: float = 0.05,
        method: str = "bootstrap",
        n_bootstrap: int = 1000,
        rng: np.random.Generator | int | None = None,
    ) -> Estimate:
        """Estimate the value with a ``1 - alpha`` interval over episodes.

        Args:
            data: The trajectory log.
            target: The evaluated policy (see :meth:`episode_terms`).
            estimated_q: Q-function estimates (see :meth:`episode_terms`).
            alpha: One minus the coverage, in (0, 1).
            method: ``bootstrap`` (percentile bootstrap over EPISODES, re-normalizing inside
                each resample; the Q-function stays fixed) or ``normal`` (delta method over
                per-episode influence terms).
            n_bootstrap: Number of resamples (bootstrap only; at least
                :data:`~campaignrl.ope.intervals.MIN_BOOTSTRAP`).
            rng: Generator or seed of the bootstrap (``None``: fresh entropy).
        """
        check_scalar(
            alpha,
            "alpha",
            float,
            min_val=0.0,
            max_val=1.0,
            min_inclusive=False,
            max_inclusive=False,
        )
        check_choice(method, "method", ("bootstrap", "normal"))
        check_scalar(n_bootstrap, "n_bootstrap", int, min_val=1)
        if method == "bootstrap" and n_bootstrap < MIN_BOOTSTRAP:
            raise ValueError(
                f"`n_bootstrap` must be >= {MIN_BOOTSTRAP} for a bootstrap interval, got "
                f"{n_bootstrap} (method='normal' needs no resamples)"
            )
        if isinstance(rng, bool) or not isinstance(rng, (np.random.Generator, int, type(None))):
            raise TypeError(
                f"`rng` must be a numpy Generator, an int seed or None, got {type(rng).__name__}"
            )
        terms = self.episode_terms(data, target, estimated_q=estimated_q)
        value = terms.value()
        if method == "bootstrap":
            generator = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
            boot = episode_bootstrap_values(terms, n_bootstrap=n_bootstrap, rng=generator)
            lo, hi = (float(v) for v in np.quantile(boot, [alpha / 2.0, 1.0 - alpha / 2.0]))
        else:
            n = terms.n_episodes
            if n < 2:
                raise ValueError(f"an interval needs at least 2 episodes, got {n}")
            z = NormalDist().inv_cdf(1.0 - alpha / 2.0)
            half = z * float(terms.influence().std(ddof=1)) / float(np.sqrt(n))
            lo, hi = value - half, value + half
        return Estimate(
            estimator=self.estimator_name,
            value=value,
            ci_low=lo,
            ci_high=hi,
            method=method,
            alpha=alpha,
            n_rounds=data.n_rounds,
            cluster="episode",
        )

    def _inputs(self, data: LoggedData, target: Any, estimated_q: Any) -> SequentialInputs:
        policy = _target(data, target)
        traj = trajectories(data)
        weights = importance_weights(policy, data)
        require_support(weights)
        rho, rho_prev = cumulative_weights(traj, weights)
        _check_cumulative(rho, traj)
        discount = np.power(float(self.gamma), traj.t.astype(np.float64))
        q_factual = v_expected = None
        if self.needs_q_model:
            q = _check_q(estimated_q, data, self)
            q_factual = q[np.arange(data.n_rounds), data.actions]
            v_expected = np.einsum("ia,ia->i", q, _row_probabilities(policy, data))
        return SequentialInputs(traj, data.rewards, discount, rho, rho_prev, q_factual, v_expected)


def _target(data: LoggedData, target: Any) -> TargetPolicy:
    if not isinstance(data, LoggedData):
        raise TypeError(
            f"`data` must be LoggedData (see campaignrl.logs.read_logs), got {type(data).__name__}"
        )
    if data.n_rounds == 0:
        raise ValueError("`data` must hold at least one logged decision, got 0")
    return as_target(target, data, "target")


def _check_cumulative(rho: np.ndarray, traj: Trajectories) -> None:
    """Refuse cumulative weights beyond :data:`~campaignrl.ope.diagnostics.MAX_WEIGHT`."""
    with np.errstate(invalid="ignore"):
        bad = ~(rho <= MAX_WEIGHT)
    if bad.any():
        row = int(np.argmax(bad))
        raise ValueError(
            f"the cumulative importance weight reaches {float(rho[row]):.3g} at row {row} "
            f"(decision {int(traj.t[row])} of its episode): products of per-decision weights "
            f"must stay below {MAX_WEIGHT:g}; these episodes are too long for these "
            "propensities"
        )


def _row_probabilities(policy: TargetPolicy, data: LoggedData) -> np.ndarray:
    """``(n, A)`` target probabilities at each row (at the row's position, if any)."""
    table = policy.probs
    full = 3 if policy.per_row else 2
    if table.ndim == full:  # a position axis: take each row's position
        pos = data.positions if data.positions is not None else np.zeros(data.n_rounds, int)
        if policy.per_row:
            return table[np.arange(data.n_rounds), :, pos]
        return table[:, pos].T
    if policy.per_row:
        return np.asarray(table)
    return np.broadcast_to(table, (data.n_rounds, table.shape[0]))


def _check_q(estimated_q: Any, data: LoggedData, est: BaseSequentialEstimator) -> np.ndarray:
    if estimated_q is None:
        raise ValueError(
            f"`estimated_q` is required by {est.estimator_name}: pass FittedQEvaluation(...)"
            ".fit_predict(data, target) or an (n, A) array"
        )
    if isinstance(estimated_q, QEstimates):
        if abs(estimated_q.gamma - float(est.gamma)) > 1e-12:
            raise ValueError(
                f"`estimated_q` was fitted with gamma={estimated_q.gamma}, but the estimator "
                f"has gamma={est.gamma}"
            )
        estimated_q = estimated_q.values
    q = np.asarray(estimated_q, dtype=np.float64)
    want = (data.n_rounds, data.n_actions)
    if q.shape != want:
        raise ValueError(f"`estimated_q` must have shape (n, A)={want}, got {q.shape}")
    if not np.isfinite(q).all():
        idx = tuple(int(i) for i in np.argwhere(~np.isfinite(q))[0])
        raise ValueError(f"`estimated_q` must be finite, got {q[idx]} at index {idx}")
    return q


@dataclass(frozen=True, kw_only=True)
class PDIS(BaseSequentialEstimator):
    r"""Per-decision importance sampling.

    .. math::
        \hat{V}_{\mathrm{PDIS}} = \frac{1}{N} \sum_{i=1}^N \sum_{t=0}^{T_i - 1}
            \gamma^t \rho_{i,t} r_{i,t}

    Unbiased when the logging policy covers the target; each reward is weighted only by the
    decisions before it. An episode that ends early simply contributes no later terms.

    Reference: Precup, Sutton & Singh, ICML 2000; SCOPE-RL ``PerDecisionImportanceSampling``.

    Examples:
        >>> data = LoggedData(
        ...     actions=np.array([0, 1, 0]), rewards=np.array([1.0, 2.0, 3.0]),
        ...     propensities=np.full(3, 0.5), action_names=("a", "b"),
        ...     episode_ids=np.array([0, 0, 1]), steps=np.array([0, 1, 0]),
        ... )
        >>> PDIS(gamma=0.5).estimate_policy_value(data, np.array([0.75, 0.25]))
        3.375
    """

    estimator_name: ClassVar[str] = "pdis"

    def _episode_terms(self, inputs: SequentialInputs) -> EpisodeTerms:
        tr = inputs.traj
        terms = inputs.discount * inputs.rho * inputs.rewards
        return EpisodeTerms(tr.n_episodes, np.bincount(tr.episode, terms, tr.n_episodes))


@dataclass(frozen=True, kw_only=True)
class WPDIS(BaseSequentialEstimator):
    r"""Weighted (self-normalized) per-decision importance sampling, for unequal lengths.

    With ``R_t = \sum_{i: T_i > t} \rho_{i,t} r_{i,t} / \sum_{i: T_i > t} \rho_{i,t}`` the
    self-normalized mean reward at step ``t`` among the ``n_t`` episodes that REACH step ``t``:

    .. math::
        \hat{V}_{\mathrm{WPDIS}} = \sum_t \gamma^t \frac{n_t}{N} R_t
        \quad (\texttt{normalization="reached"})

    Late steps that few episodes reach are normalized among those few, and weighted by the
    share ``n_t / N`` that reach them, so an episode that has ended is neither counted as
    earning zero in the normalizer nor extrapolated. This is consistent when episode lengths do
    not depend on the actions (logs cut at different dates, customers who joined at different
    times); with equal lengths it is the usual fixed-horizon WPDIS.

    When the end of an episode depends on the actions (e.g. an unsubscribe ends it), use
    ``normalization="absorbing"``: an ended episode stays in an absorbing state with its final
    cumulative weight, so every step normalizes over all ``N`` episodes,

    .. math::
        \hat{V} = \sum_t \gamma^t \frac{\sum_{i: T_i > t} \rho_{i,t} r_{i,t}}
            {\sum_i \rho_{i, \min(t, T_i - 1)}}

    Biased (consistent), never outside the range of the per-step rewards, much lower variance
    than PDIS when cumulative weights are heavy.

    Reference: Precup, Sutton & Singh, ICML 2000; Thomas, "Safe Reinforcement Learning",
    PhD thesis, 2015; SCOPE-RL ``SelfNormalizedPDIS`` (fixed horizon).

    Examples:
        >>> data = LoggedData(
        ...     actions=np.array([0, 1, 0]), rewards=np.array([1.0, 2.0, 3.0]),
        ...     propensities=np.full(3, 0.5), action_names=("a", "b"),
        ...     episode_ids=np.array([0, 0, 1]), steps=np.array([0, 1, 0]),
        ... )
        >>> WPDIS(gamma=0.5).estimate_policy_value(data, np.array([0.75, 0.25]))
        2.5
    """

    estimator_name: ClassVar[str] = "wpdis"

    normalization: str = "reached"
    """``reached`` (per step among the episodes reaching it) or ``absorbing``"""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice(self.normalization, "normalization", ("reached", "absorbing"))

    def _episode_terms(self, inputs: SequentialInputs) -> EpisodeTerms:
        tr = inputs.traj
        numerator = tr.matrix(inputs.discount * inputs.rho * inputs.rewards)
        denominator = tr.matrix(inputs.rho)
        if self.normalization == "reached":
            reach = tr.matrix(np.ones(inputs.rho.shape[0]))
            return EpisodeTerms(tr.n_episodes, None, numerator, denominator, reach=reach)
        last = tr.last_row
        carried = sparse.csr_array(
            (inputs.rho[last], (tr.episode[last], tr.t[last])), shape=numerator.shape
        )
        return EpisodeTerms(tr.n_episodes, None, numerator, denominator, carried=carried)


@dataclass(frozen=True, kw_only=True)
class SequentialDR(BaseSequentialEstimator):
    r"""Sequential (per-decision) doubly robust.

    .. math::
        \hat{V}_{\mathrm{DR}} = \frac{1}{N} \sum_i \sum_{t=0}^{T_i - 1} \gamma^t \Big[
            \rho_{i,t} \big(r_{i,t} - \hat{Q}(s_{i,t}, a_{i,t})\big)
            + \rho_{i,t-1} \hat{V}(s_{i,t}) \Big],
        \quad \hat{V}(s) = \sum_a \pi_e(a \mid s) \hat{Q}(s, a)

    Unbiased if the propensities are right, whatever ``Q_hat``; low variance when ``Q_hat``
    is close to the true value-to-go. Use cross-fitted ``Q_hat`` from
    :class:`FittedQEvaluation`. Episodes of any length: the sum stops at each ``T_i``, where
    ``Q_hat`` (fitted per step) has no future value either.

    Reference: Jiang & Li, ICML 2016 (Eq. 5, written per decision); Thomas & Brunskill,
    ICML 2016; SCOPE-RL ``DoublyRobust``.

    Examples:
        >>> data = LoggedData(
        ...     actions=np.array([0, 1, 0]), rewards=np.array([1.0, 2.0, 3.0]),
        ...     propensities=np.full(3, 0.5), action_names=("a", "b"),
        ...     episode_ids=np.array([0, 0, 1]), steps=np.array([0, 1, 0]),
        ... )
        >>> q = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]])
        >>> SequentialDR(gamma=0.5).estimate_policy_value(
        ...     data, np.array([0.75, 0.25]), estimated_q=q)
        1.6875
    """

    estimator_name: ClassVar[str] = "sdr"
    needs_q_model: ClassVar[bool] = True

    def _episode_terms(self, inputs: SequentialInputs) -> EpisodeTerms:
        if inputs.q_factual is None or inputs.v_expected is None:  # pragma: no cover
            raise RuntimeError("Q-function estimates missing")
        tr = inputs.traj
        terms = inputs.discount * (
            inputs.rho * (inputs.rewards - inputs.q_factual) + inputs.rho_prev * inputs.v_expected
        )
        return EpisodeTerms(tr.n_episodes, np.bincount(tr.episode, terms, tr.n_episodes))


@dataclass(frozen=True, kw_only=True)
class FQE(BaseSequentialEstimator):
    r"""Fitted Q evaluation: the Q-function's value of the target at each episode's start.

    .. math::
        \hat{V}_{\mathrm{FQE}} = \frac{1}{N} \sum_i \sum_a \pi_e(a \mid s_{i,0})
            \hat{Q}_0(s_{i,0}, a)

    ``Q_hat`` comes from :class:`FittedQEvaluation` (backward regression over steps). No
    importance weights: low variance, biased as much as the regressor is. The interval treats
    ``Q_hat`` as fixed.

    Reference: Le, Voloshin & Yue, ICML 2019; SCOPE-RL ``DirectMethod`` with FQE.

    Examples:
        >>> data = LoggedData(
        ...     actions=np.array([0, 1, 0]), rewards=np.array([1.0, 2.0, 3.0]),
        ...     propensities=np.full(3, 0.5), action_names=("a", "b"),
        ...     episode_ids=np.array([0, 0, 1]), steps=np.array([0, 1, 0]),
        ... )
        >>> q = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]])
        >>> FQE().estimate_policy_value(data, np.array([0.75, 0.25]), estimated_q=q)
        1.5
    """

    estimator_name: ClassVar[str] = "fqe"
    needs_q_model: ClassVar[bool] = True

    def _episode_terms(self, inputs: SequentialInputs) -> EpisodeTerms:
        if inputs.v_expected is None:  # pragma: no cover
            raise RuntimeError("Q-function estimates missing")
        tr = inputs.traj
        first = np.where(tr.t == 0, inputs.v_expected, 0.0)
        return EpisodeTerms(tr.n_episodes, np.bincount(tr.episode, first, tr.n_episodes))


SEQUENTIAL_ESTIMATORS: dict[str, type[BaseSequentialEstimator]] = {
    cls.estimator_name: cls for cls in (PDIS, WPDIS, SequentialDR, FQE)
}
"""every sequential estimator by ``estimator_name``"""


def diagnose_trajectories(data: LoggedData, target: Any) -> dict[str, float | int]:
    """Episode-level weight diagnostics: the per-decision ones are in ``ope.diagnose``.

    Returns ``n_episodes``, ``mean_episode_length``, ``longest_episode``, Kish's effective
    number of episodes of the final cumulative weights ``rho_{i, T_i - 1}``
    (``episode_effective_sample_size``) and the largest of them (``max_cumulative_weight``).
    """
    policy = _target(data, target)
    traj = trajectories(data)
    rho, _ = cumulative_weights(traj, importance_weights(policy, data))
    _check_cumulative(rho, traj)
    final = rho[traj.last_row]
    squares = float(final @ final)
    return {
        "n_episodes": traj.n_episodes,
        "mean_episode_length": float(traj.lengths.mean()),
        "longest_episode": traj.horizon,
        "episode_effective_sample_size": float(final.sum()) ** 2 / squares if squares else 0.0,
        "max_cumulative_weight": float(final.max()),
    }
