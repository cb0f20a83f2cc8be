"""Importance-weight diagnostics: effective sample size, largest weight, unlogged mass."""

from __future__ import annotations

from typing import Any

import numpy as np

from campaignrl.logs.io import LoggedData
from campaignrl.ope.records import Diagnostics
from campaignrl.ope.target import as_target

__all__ = ["diagnose", "effective_sample_size"]


def effective_sample_size(weights: np.ndarray) -> float:
    """Kish's effective sample size ``(sum_i w_i)^2 / sum_i w_i^2`` (0 if all weights are 0).

    Examples:
        >>> effective_sample_size(np.array([1.0, 1.0, 1.0, 1.0]))
        4.0
        >>> effective_sample_size(np.array([4.0, 0.0, 0.0, 0.0]))
        1.0
    """
    total = float(weights.sum())
    squares = float(np.dot(weights, weights))
    return total * total / squares if squares > 0 else 0.0


def diagnose(data: LoggedData, target: Any) -> Diagnostics:
    """Diagnostics of evaluating ``target`` on ``data``.

    Args:
        data: The log.
        target: A :class:`~campaignrl.ope.target.TargetPolicy`, a probability table
            (see :func:`~campaignrl.ope.target.as_target`) or a policy object.

    Examples:
        >>> data = LoggedData(
        ...     actions=np.array([0, 1, 0, 1]),
        ...     rewards=np.zeros(4),
        ...     propensities=np.full(4, 0.5),
        ...     action_names=("a", "b", "c"),
        ... )
        >>> d = diagnose(data, np.array([0.5, 0.25, 0.25]))
        >>> d.effective_sample_size, d.max_weight, d.unlogged_target_mass
        (3.6, 1.0, 0.25)
    """
    policy = as_target(target, data)
    weights = policy.factual(data) / data.propensities
    n = data.n_rounds
    return Diagnostics(
        n_rounds=n,
        effective_sample_size=effective_sample_size(weights),
        max_weight=float(weights.max()) if n else 0.0,
        mean_weight=float(weights.mean()) if n else 0.0,
        unlogged_target_mass=policy.unlogged_mass(data),
    )
