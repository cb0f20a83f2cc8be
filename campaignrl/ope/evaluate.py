"""Run several estimators on one log: the estimates, their intervals and the diagnostics."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from campaignrl.logs.io import LoggedData
from campaignrl.ope.base import BaseOffPolicyEstimator
from campaignrl.ope.records import Diagnostics, Estimate

__all__ = ["Evaluation", "evaluate"]


@dataclass(frozen=True)
class Evaluation:
    """The estimates of several estimators on one log, and the log's diagnostics."""

    estimates: tuple[Estimate, ...]
    """one estimate per estimator, in the order given"""
    diagnostics: Diagnostics
    """importance-weight diagnostics (the same for every estimator)"""

    @property
    def warnings(self) -> tuple[str, ...]:
        """What makes the estimates less trustworthy than their intervals say.

        The rules are :func:`~campaignrl.ope.diagnostics.weight_warnings`; empty when none
        applies.
        """
        return self.diagnostics.warnings

    def to_dict(self) -> dict[str, Any]:
        """``{"estimates": [...], "diagnostics": {...}, "warnings": [...]}`` as JSON types."""
        diagnostics = self.diagnostics.to_dict()
        return {
            "estimates": [e.to_dict() for e in self.estimates],
            "diagnostics": {k: v for k, v in diagnostics.items() if k != "warnings"},
            "warnings": list(self.warnings),
        }


def evaluate(
    data: LoggedData,
    target: Any,
    estimators: Sequence[BaseOffPolicyEstimator],
    *,
    estimated_rewards: np.ndarray | None = None,
    alpha: float = 0.05,
    method: str = "studentized",
    n_bootstrap: int = 1000,
    rng: np.random.Generator | int | None = None,
    cluster: str = "auto",
    progress: Callable[[int], None] | None = None,
) -> Evaluation:
    """Estimate ``target``'s value with every estimator, with intervals and diagnostics.

    ``method``, ``alpha``, ``n_bootstrap``, ``cluster`` are as in
    :meth:`~campaignrl.ope.base.BaseOffPolicyEstimator.estimate_interval`. Every estimator's
    bootstrap draws the same resamples (common random numbers), so their intervals differ by
    the estimators, not by the draws. ``progress``, if given, is called with 1 after each
    estimator (e.g. to advance a progress bar).

    The diagnostics come first: a target that no logged decision supports, or a weight that
    overflows, is refused before any interval is computed. Read ``warnings`` before the
    numbers.

    Raises:
        ValueError: On bad arguments, as
            :meth:`~campaignrl.ope.base.BaseOffPolicyEstimator.estimate_interval`.

    Examples:
        >>> from campaignrl.ope.estimators import IPS, SNIPS
        >>> data = LoggedData(
        ...     np.array([0, 1, 1, 0]), np.array([1.0, 2.0, 0.0, 4.0]),
        ...     np.array([0.5, 0.25, 0.5, 0.8]), ("x", "y"),
        ... )
        >>> result = evaluate(data, np.array([0.3, 0.7]), [IPS(), SNIPS()], rng=0)
        >>> [(e.estimator, round(e.value, 4)) for e in result.estimates]
        [('ipw', 1.925), ('snipw', 1.4879)]
    """
    if not estimators:
        raise ValueError("`estimators` must hold at least one estimator, got none")
    for i, est in enumerate(estimators):
        if not isinstance(est, BaseOffPolicyEstimator):
            raise TypeError(
                f"`estimators[{i}]` must be an off-policy estimator, got {type(est).__name__}"
            )
    diagnostics = estimators[0].diagnose(data, target)
    # One seed for every estimator: the same resamples behind every interval.
    generator = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    seed = int(generator.integers(2**63))
    estimates = []
    for est in estimators:
        estimates.append(
            est.estimate_interval(
                data,
                target,
                estimated_rewards=estimated_rewards,
                alpha=alpha,
                method=method,
                n_bootstrap=n_bootstrap,
                rng=np.random.default_rng(seed),
                cluster=cluster,
            )
        )
        if progress is not None:
            progress(1)
    return Evaluation(tuple(estimates), diagnostics)
