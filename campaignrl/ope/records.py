"""Typed result records of off-policy evaluation: estimates, intervals, diagnostics."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Diagnostics", "Estimate"]


@dataclass(frozen=True)
class Estimate:
    """A policy value estimate with its confidence interval."""

    estimator: str
    """the estimator's ``estimator_name`` (``ipw``, ``snipw``, ``dr``, ...)"""
    value: float
    """the estimated policy value (mean reward per logged decision)"""
    ci_low: float
    """lower end of the confidence interval"""
    ci_high: float
    """upper end of the confidence interval"""
    method: str
    """how the interval was made: ``studentized``, ``bootstrap`` or ``normal``"""
    alpha: float
    """the interval covers with probability ``1 - alpha``"""
    n_rounds: int
    """number of logged decisions used"""
    cluster: str = "row"
    """the interval's independent unit: ``row`` (every decision) or ``episode`` (all the
    decisions of one episode or customer move together: a cluster-robust interval)"""

    def to_dict(self) -> dict[str, Any]:
        """The record as plain JSON types."""
        return asdict(self)


@dataclass(frozen=True)
class Diagnostics:
    """How much the log can say about the target policy (importance-weight health).

    Weights are ``w_i = pi_e(a_i | x_i) / pi_b(a_i | x_i)`` over the logged decisions.
    """

    n_rounds: int
    """number of logged decisions"""
    effective_sample_size: float
    """Kish's ``(sum_i w_i)^2 / sum_i w_i^2``: how many equally weighted rows the estimate
    is worth (``n`` when the target is the logging policy)"""
    max_weight: float
    """the largest importance weight"""
    mean_weight: float
    """mean importance weight (close to 1 when the propensities are right and the target
    stays on the logged support)"""
    unlogged_target_mass: float
    """mean target probability on actions the logger could not take: (action, position)
    pairs the log never shows and, where the log records them, actions its masks did not
    allow at that decision. Value the importance-weighted estimators cannot see"""
    mean_weight_se: float = float("inf")
    """standard error of ``mean_weight`` (cluster-robust by episode when the log has
    episodes; infinite with fewer than two rows or episodes)"""
    warnings: tuple[str, ...] = ()
    """what makes the estimates less trustworthy than their intervals say, one sentence each
    (see :func:`campaignrl.ope.diagnostics.weight_warnings` for the rules)"""

    def to_dict(self) -> dict[str, Any]:
        """The record as plain JSON types (a non-finite number as ``None``)."""
        out = asdict(self)
        out["warnings"] = list(self.warnings)
        for key, value in out.items():
            if isinstance(value, float) and not math.isfinite(value):
                out[key] = None
        return out
