"""The estimator contract: one validation path, value, interval and diagnostics."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np

from campaignrl._checks import check_array, check_choice, check_scalar
from campaignrl.logs.io import LoggedData
from campaignrl.ope.diagnostics import diagnose, importance_weights, require_support
from campaignrl.ope.intervals import (
    MIN_BOOTSTRAP,
    RoundTerms,
    bootstrap_interval,
    normal_interval,
    studentized_interval,
)
from campaignrl.ope.records import Diagnostics, Estimate
from campaignrl.ope.target import TargetPolicy, as_target

__all__ = [
    "CLUSTER_CHOICES",
    "BaseOffPolicyEstimator",
    "OPEInputs",
    "ope_inputs",
    "resolve_cluster",
]

INTERVAL_METHODS = ("studentized", "bootstrap", "normal")
"""interval constructions of the bandit estimators (the first is the default)"""
CLUSTER_CHOICES = ("auto", "episode", "row")
"""independent units of the bandit intervals: ``auto`` is ``episode`` when the log has
episodes (``episode_id``), ``row`` otherwise"""


def resolve_cluster(cluster: str, data: LoggedData) -> str:
    """The interval's independent unit, ``episode`` or ``row``, for ``cluster`` on ``data``.

    Raises:
        ValueError: If ``cluster`` is not one of :data:`CLUSTER_CHOICES`, or is ``episode``
            on a log without an ``episode_id`` column.
    """
    check_choice(cluster, "cluster", CLUSTER_CHOICES)
    if cluster == "auto":
        return "episode" if data.episode_ids is not None else "row"
    if cluster == "episode" and data.episode_ids is None:
        raise ValueError(
            "`cluster` is 'episode' but the log has no episode_id column: "
            "use 'row' (or 'auto') for independent decisions"
        )
    return cluster


@dataclass(frozen=True, eq=False)
class OPEInputs:
    """What every bandit estimator works from, validated once (all arrays ``(n,)``)."""

    rewards: np.ndarray
    """observed rewards ``r_i``"""
    weights: np.ndarray
    """importance weights ``w_i = pi_e(a_i | x_i) / pi_b(a_i | x_i)``"""
    q_factual: np.ndarray | None
    """``q_hat(x_i, a_i)`` at the logged action (and position), if a reward model is given"""
    q_expected: np.ndarray | None
    """``sum_a pi_e(a | x_i) q_hat(x_i, a)``, if a reward model is given"""


@dataclass(frozen=True)
class BaseOffPolicyEstimator(ABC):
    """An off-policy estimator of a target policy's mean reward per decision.

    Subclasses are frozen dataclasses whose fields are their hyperparameters (checked in
    ``__post_init__``); they implement :meth:`_round_terms` only. Inputs are validated here,
    once, for every estimator.
    """

    estimator_name: ClassVar[str]
    """short name used in tables, JSON and the CLI (obp's names: ``ipw``, ``dr``, ...)"""
    needs_reward_model: ClassVar[bool] = False
    """whether ``estimated_rewards`` is required"""

    @abstractmethod
    def _round_terms(self, inputs: OPEInputs) -> RoundTerms:
        """The per-row terms of the estimate (see :class:`RoundTerms`)."""

    def round_terms(
        self, data: LoggedData, target: Any, *, estimated_rewards: np.ndarray | None = None
    ) -> RoundTerms:
        """Validate the inputs and return the per-row terms of the estimate.

        Args:
            data: The logged decisions.
            target: The evaluated policy: a :class:`~campaignrl.ope.target.TargetPolicy`, a
                probability table ``(A,)``, ``(A, L)``, ``(n, A)`` or ``(n, A, L)``, or an
                object with ``probabilities(features)``.
            estimated_rewards: Reward model predictions ``q_hat(x_i, a)``, ``(n, A)`` or
                ``(n, A, L)`` (obp's ``estimated_rewards_by_reg_model``); required by DM and
                the DR family, ignored by the others.

        Raises:
            TypeError: If ``data`` is not :class:`LoggedData`.
            ValueError: On an empty log, a target or reward matrix of the wrong shape (naming
                the argument), missing ``estimated_rewards`` where they are needed, a target
                that no logged decision supports, or an importance weight that overflows.
        """
        return self._round_terms(self._inputs(data, target, estimated_rewards))

    def estimate_policy_value(
        self, data: LoggedData, target: Any, *, estimated_rewards: np.ndarray | None = None
    ) -> float:
        """Estimate the target policy's value (see :meth:`round_terms` for the arguments)."""
        return self.round_terms(data, target, estimated_rewards=estimated_rewards).value()

    def estimate_interval(
        self,
        data: LoggedData,
        target: Any,
        *,
        estimated_rewards: np.ndarray | None = None,
        alpha: float = 0.05,
        method: str = "studentized",
        n_bootstrap: int = 1000,
        rng: np.random.Generator | int | None = None,
        cluster: str = "auto",
    ) -> Estimate:
        """Estimate the value with a ``1 - alpha`` confidence interval.

        Args:
            data: The logged decisions.
            target: The evaluated policy (see :meth:`round_terms`).
            estimated_rewards: Reward model predictions (see :meth:`round_terms`).
            alpha: One minus the coverage, in (0, 1).
            method: ``studentized`` (bootstrap-t, the default: asymmetric where the terms are
                skewed, as heavy importance weights make them; see
                :func:`~campaignrl.ope.intervals.studentized_interval`), ``bootstrap``
                (percentile bootstrap) or ``normal`` (the delta-method interval from per-row
                influence terms). Both bootstraps resample rows (or episodes, see
                ``cluster``), re-apply self-normalization in every resample and keep the
                reward model fixed.
            n_bootstrap: Number of resamples (bootstrap methods only; at least
                :data:`~campaignrl.ope.intervals.MIN_BOOTSTRAP`; the studentized interval
                reads its 2.5% tails from them: keep it near 1000).
            rng: Generator or seed for the bootstrap; ``None`` draws fresh entropy (not
                reproducible).
            cluster: The independent unit. ``episode``: the decisions of one episode (one
                customer, in a campaign log) are correlated, so the standard error is
                cluster-robust and the bootstraps resample whole episodes; ``row``: every
                decision is independent (as in a log of one decision per visitor);
                ``auto`` (default): ``episode`` when the log has an ``episode_id`` column.

        Returns:
            The :class:`~campaignrl.ope.records.Estimate`.

        Raises:
            ValueError: On a bad argument (naming it), a target that no logged decision
                supports (see :func:`~campaignrl.ope.diagnostics.require_support`) or an
                importance weight that overflows (naming the row's ``propensity``).
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
        check_choice(method, "method", INTERVAL_METHODS)
        check_scalar(n_bootstrap, "n_bootstrap", int, min_val=1)
        if method != "normal" and n_bootstrap < MIN_BOOTSTRAP:
            raise ValueError(
                f"`n_bootstrap` must be >= {MIN_BOOTSTRAP} for a bootstrap interval, got "
                f"{n_bootstrap} (method='normal' needs no resamples)"
            )
        if isinstance(rng, bool) or not isinstance(rng, (np.random.Generator, int, type(None))):
            raise TypeError(
                f"`rng` must be a numpy Generator, an int seed or None, got {type(rng).__name__}"
            )
        unit = resolve_cluster(cluster, data)
        terms = self.round_terms(data, target, estimated_rewards=estimated_rewards)
        if unit == "episode":
            terms = replace(terms, clusters=data.episode_ids)
        if method == "normal":
            lo, hi = normal_interval(terms, alpha=alpha)
        else:
            generator = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
            interval = studentized_interval if method == "studentized" else bootstrap_interval
            lo, hi = interval(terms, alpha=alpha, n_bootstrap=n_bootstrap, rng=generator)
        return Estimate(
            estimator=self.estimator_name,
            value=terms.value(),
            ci_low=lo,
            ci_high=hi,
            method=method,
            alpha=alpha,
            n_rounds=data.n_rounds,
            cluster=unit,
        )

    def diagnose(self, data: LoggedData, target: Any) -> Diagnostics:
        """Importance-weight diagnostics of ``target`` on ``data`` (the same for every estimator).

        See :func:`campaignrl.ope.diagnostics.diagnose`.
        """
        return diagnose(data, self._target(data, target))

    @staticmethod
    def _target(data: LoggedData, target: Any) -> TargetPolicy:
        if not isinstance(data, LoggedData):
            raise TypeError(
                f"`data` must be LoggedData (see campaignrl.logs.read_logs), "
                f"got {type(data).__name__}"
            )
        if data.n_rounds == 0:
            raise ValueError("`data` must hold at least one logged decision, got 0")
        return as_target(target, data, "target")

    def terms(self, inputs: OPEInputs) -> RoundTerms:
        """The per-row terms from inputs validated once by :func:`ope_inputs`.

        For callers that run several estimators on the same rows (the streamed evaluation of
        :mod:`campaignrl.ope.stream`): the weights and model terms are computed once.

        Raises:
            ValueError: If the estimator needs a reward model and ``inputs`` has none.
        """
        if self.needs_reward_model and (inputs.q_factual is None or inputs.q_expected is None):
            raise ValueError(
                f"`estimated_rewards` is required by {self.estimator_name}: pass the "
                "reward model's (n, A) or (n, A, L) predictions"
            )
        return self._round_terms(inputs)

    def _inputs(
        self, data: LoggedData, target: Any, estimated_rewards: np.ndarray | None
    ) -> OPEInputs:
        self._target(data, target)  # the type and emptiness checks come first
        inputs = ope_inputs(data, target, estimated_rewards if self.needs_reward_model else None)
        if self.needs_reward_model and estimated_rewards is None:
            raise ValueError(
                f"`estimated_rewards` is required by {self.estimator_name}: pass the "
                "reward model's (n, A) or (n, A, L) predictions"
            )
        return inputs


def ope_inputs(
    data: LoggedData, target: Any, estimated_rewards: np.ndarray | None = None
) -> OPEInputs:
    """Validated estimator inputs: importance weights and, with a reward model, its terms.

    Args:
        data: The logged decisions.
        target: The evaluated policy (see :meth:`BaseOffPolicyEstimator.round_terms`).
        estimated_rewards: Reward model predictions ``(n, A)`` or ``(n, A, L)``, or ``None``
            (then ``q_factual`` and ``q_expected`` are ``None``).

    Raises:
        ValueError: As :meth:`BaseOffPolicyEstimator.round_terms`.
    """
    policy = BaseOffPolicyEstimator._target(data, target)
    weights = importance_weights(policy, data)
    require_support(weights)
    q_factual = q_expected = None
    if estimated_rewards is not None:
        q = _check_rewards(estimated_rewards, data)
        rows = np.arange(data.n_rounds)
        if q.ndim == 2:
            q_factual = q[rows, data.actions]
        else:
            positions = data.positions if data.positions is not None else 0
            q_factual = q[rows, data.actions, positions]
        q_expected = policy.expected(q, data)
    return OPEInputs(data.rewards, weights, q_factual, q_expected)


def _check_rewards(estimated_rewards: Any, data: LoggedData) -> np.ndarray:
    n, n_a, n_l = data.n_rounds, data.n_actions, data.n_positions
    arr = np.asarray(estimated_rewards)
    fits = arr.shape == (n, n_a) or (
        arr.ndim == 3 and arr.shape[:2] == (n, n_a) and arr.shape[2] >= n_l
    )
    if not fits:
        raise ValueError(
            f"`estimated_rewards` must have shape (n, A)=({n}, {n_a}) or "
            f"(n, A, L)=({n}, {n_a}, {n_l}), got {arr.shape}"
        )
    return check_array(arr, "estimated_rewards")
