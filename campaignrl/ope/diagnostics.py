"""Importance weights and their diagnostics, and the rules that turn them into warnings.

Every warning OPE gives comes from this module (:func:`weight_warnings`,
:func:`episode_warnings`), so the Python API (:attr:`Diagnostics.warnings
<campaignrl.ope.records.Diagnostics.warnings>`, :attr:`Evaluation.warnings
<campaignrl.ope.evaluate.Evaluation.warnings>`), the table and the JSON of ``campaignrl ope``
say the same thing.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from campaignrl.logs.io import LoggedData
from campaignrl.ope.intervals import RoundTerms
from campaignrl.ope.records import Diagnostics
from campaignrl.ope.target import TargetPolicy, as_target

__all__ = [
    "MAX_WEIGHT",
    "MEAN_WEIGHT_SES",
    "MEAN_WEIGHT_TOLERANCE",
    "MIN_EFFECTIVE_SAMPLE",
    "MIN_EFFECTIVE_SHARE",
    "UNSUPPORTED_MASS",
    "diagnose",
    "effective_sample_size",
    "weight_diagnostics",
    "episode_warnings",
    "importance_weights",
    "require_support",
    "weight_warnings",
]

MAX_WEIGHT = 1e100
"""largest importance weight computed with. Weights beyond it come from propensities that
cannot be right (1e-320 for an action the target takes half the time), and the squares of
weighted rewards (up to 1e12, see ``campaignrl.logs.io.MAX_ABS_VALUE``), summed over up to
1e12 rows by the intervals and the effective sample size, stay finite below about 1e136"""
MIN_EFFECTIVE_SAMPLE = 100
"""warn when the effective sample size is below this many rows..."""
MIN_EFFECTIVE_SHARE = 0.01
"""...or below this share of the rows"""
MEAN_WEIGHT_SES = 3.0
"""warn when the mean weight is more than this many standard errors from 1..."""
MEAN_WEIGHT_TOLERANCE = 0.1
"""...and more than this far from 1 (a large log makes tiny, harmless gaps significant)"""
UNSUPPORTED_MASS = 1e-3
"""warn when the target puts more than this share of its probability on actions the log
never took or did not allow"""


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


def importance_weights(policy: TargetPolicy, data: LoggedData) -> np.ndarray:
    """``w_i = pi_e(a_i | x_i) / pi_b(a_i | x_i)`` for every logged row, shape ``(n,)``.

    Raises:
        ValueError: If a weight exceeds :data:`MAX_WEIGHT` (a propensity such as 1e-320),
            naming ``propensity``, the row and the value.

    Examples:
        >>> data = LoggedData(np.array([0, 1]), np.zeros(2), np.array([0.5, 1e-320]), ("a", "b"))
        >>> importance_weights(TargetPolicy(np.array([1.0, 0.0])), data)
        array([2., 0.])
        >>> importance_weights(TargetPolicy(np.array([0.5, 0.5])), data)
        Traceback (most recent call last):
        ...
        ValueError: `propensity` at row 1 is 1e-320: the importance weight 0.5 / 1e-320 ...
    """
    target = policy.factual(data)
    with np.errstate(over="ignore", divide="ignore"):
        weights = target / data.propensities
    bad = ~(weights <= MAX_WEIGHT)
    if bad.any():
        row = int(np.argmax(bad))
        p, t = float(data.propensities[row]), float(target[row])
        raise ValueError(
            f"`propensity` at row {row} is {p!r}: the importance weight {t:.6g} / {p!r} "
            f"overflows (weights must stay below {MAX_WEIGHT:g}); a logging probability "
            "this small cannot be right"
        )
    return weights


def require_support(weights: np.ndarray) -> None:
    """Refuse a target that no logged decision supports (every weight is zero).

    Such a target gives probability 0 to the logged action at every row: importance-weighted
    estimators would return ``0 [0, 0]`` and a reward model would extrapolate to actions it
    never saw. There is no estimate to give.

    Raises:
        ValueError: If every weight is zero.
    """
    if weights.size and not (weights > 0).any():
        raise ValueError(
            f"no logged decision supports the target: it gives probability 0 to the logged "
            f"action at all {weights.size} rows (it only takes actions the log never took "
            "or did not allow), so this log cannot value it"
        )


def diagnose(data: LoggedData, target: Any) -> Diagnostics:
    """Diagnostics of evaluating ``target`` on ``data``, with their warnings.

    Args:
        data: The log.
        target: A :class:`~campaignrl.ope.target.TargetPolicy`, a probability table
            (see :func:`~campaignrl.ope.target.as_target`) or a policy object.

    Raises:
        ValueError: As :func:`importance_weights`.

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
        >>> for warning in d.warnings:
        ...     print(warning.split(":")[0])
        the target puts 25.0% of its probability on actions the log never took or did not allow
        effective sample size 3.6 is under 100 rows
    """
    policy = as_target(target, data)
    weights = importance_weights(policy, data)
    n = data.n_rounds
    ess = effective_sample_size(weights)
    mean = float(weights.mean()) if n else 0.0
    se = _mean_weight_se(weights, data)
    mass = policy.unlogged_mass(data)
    return weight_diagnostics(
        n_rounds=n,
        effective_sample_size=ess,
        max_weight=float(weights.max()) if n else 0.0,
        mean_weight=mean,
        mean_weight_se=se,
        unlogged_target_mass=mass,
        supported=bool((weights > 0).any()),
        masks_ignored=policy.masks_ignored,
    )


def weight_diagnostics(
    *,
    n_rounds: int,
    effective_sample_size: float,
    max_weight: float,
    mean_weight: float,
    mean_weight_se: float,
    unlogged_target_mass: float,
    supported: bool = True,
    masks_ignored: bool = False,
) -> Diagnostics:
    """:class:`Diagnostics` from its figures, with their :func:`weight_warnings`.

    The one place the in-memory (:func:`diagnose`) and streamed
    (:func:`~campaignrl.ope.stream.evaluate_stream`) paths build diagnostics, so both warn by
    the same rules.

    Examples:
        >>> d = weight_diagnostics(
        ...     n_rounds=1000, effective_sample_size=900.0, max_weight=2.0, mean_weight=1.0,
        ...     mean_weight_se=0.01, unlogged_target_mass=0.0,
        ... )
        >>> d.warnings
        ()
    """
    return Diagnostics(
        n_rounds=n_rounds,
        effective_sample_size=effective_sample_size,
        max_weight=max_weight,
        mean_weight=mean_weight,
        unlogged_target_mass=unlogged_target_mass,
        mean_weight_se=mean_weight_se,
        warnings=weight_warnings(
            n_rounds=n_rounds,
            effective_sample_size=effective_sample_size,
            mean_weight=mean_weight,
            mean_weight_se=mean_weight_se,
            unlogged_target_mass=unlogged_target_mass,
            supported=supported,
            masks_ignored=masks_ignored,
        ),
    )


def _mean_weight_se(weights: np.ndarray, data: LoggedData) -> float:
    """Standard error of the mean weight, cluster-robust by episode when there are episodes."""
    clusters = data.episode_ids
    terms = RoundTerms(weights, clusters=clusters)
    if terms.n_clusters < 2:
        return float("inf")
    return terms.standard_error()


def weight_warnings(
    *,
    n_rounds: int,
    effective_sample_size: float,
    mean_weight: float,
    mean_weight_se: float,
    unlogged_target_mass: float,
    supported: bool = True,
    masks_ignored: bool = False,
) -> tuple[str, ...]:
    """The warnings of a set of importance-weight diagnostics, one sentence each.

    The rules:

    * ``supported`` is false (every weight is zero): no estimate can be made (the estimators
      refuse such a target, see :func:`require_support`).
    * the target puts more than :data:`UNSUPPORTED_MASS` of its probability on actions the
      log never took or did not allow: IPS and SNIPS value that part at zero, DM and DR lean
      on the reward model's extrapolation.
    * the effective sample size is under :data:`MIN_EFFECTIVE_SAMPLE` or under
      :data:`MIN_EFFECTIVE_SHARE` of the rows: a few heavy weights carry the estimate.
    * the mean weight is more than :data:`MEAN_WEIGHT_SES` standard errors and more than
      :data:`MEAN_WEIGHT_TOLERANCE` from 1. With the right logging propensities and a target
      on the logged support, ``E[w] = E_x[sum_a pi_e(a | x)] = 1``: the mean weight is the
      control variate of self-normalized IPS (Swaminathan & Joachims, "The Self-Normalized
      Estimator for Counterfactual Learning", NeurIPS 2015, section 4), and a mean far from 1
      means wrong propensities or a target off the logged support.
    * ``masks_ignored``: the target is a policy that decides under action masks, evaluated
      without them because the log has no ``allowed=<action>`` columns.

    Examples:
        >>> weight_warnings(n_rounds=10_000, effective_sample_size=5000.0, mean_weight=1.02,
        ...                 mean_weight_se=0.01, unlogged_target_mass=0.0)
        ()
        >>> len(weight_warnings(n_rounds=10_000, effective_sample_size=50.0, mean_weight=0.5,
        ...                     mean_weight_se=0.01, unlogged_target_mass=0.0))
        2
    """
    out: list[str] = []
    if not supported:
        out.append(
            "no logged decision supports the target: it gives probability 0 to the logged "
            "action at every row; no estimator can value it from this log"
        )
        return tuple(out)
    if unlogged_target_mass > UNSUPPORTED_MASS:
        out.append(
            f"the target puts {unlogged_target_mass:.1%} of its probability on actions the "
            "log never took or did not allow: ipw and snipw value that part at 0, dm and the "
            "dr family rely on the reward model's extrapolation there"
        )
    threshold = max(float(MIN_EFFECTIVE_SAMPLE), MIN_EFFECTIVE_SHARE * n_rounds)
    if effective_sample_size < threshold:
        what = (
            f"{MIN_EFFECTIVE_SAMPLE} rows"
            if threshold == MIN_EFFECTIVE_SAMPLE
            else f"{MIN_EFFECTIVE_SHARE:.0%} of the {n_rounds:,} rows"
        )
        out.append(
            f"effective sample size {effective_sample_size:.4g} is under {what}: a few "
            "heavily weighted decisions carry the estimate, and its interval may be too narrow"
        )
    gap = abs(mean_weight - 1.0)
    if gap > MEAN_WEIGHT_TOLERANCE and gap > MEAN_WEIGHT_SES * mean_weight_se:
        ses = gap / mean_weight_se if mean_weight_se > 0 else float("inf")
        out.append(
            f"mean importance weight {mean_weight:.4g} is far from 1 ({ses:.3g} standard "
            "errors): with the right logging propensities and a target on the logged support "
            "it estimates 1; check the propensities"
            + (" and the target's mass on unlogged actions" if unlogged_target_mass > 0 else "")
        )
    if masks_ignored:
        out.append(
            "the log has no allowed=<action> columns, but the target decides under action "
            "masks: it was evaluated with every action allowed, and where it would pick an "
            "action the world did not allow when the log was made, the log holds no evidence "
            "(campaignrl simulate logs the masks)"
        )
    return tuple(out)


def episode_warnings(n_episodes: int, episode_effective_sample_size: float) -> tuple[str, ...]:
    """Warnings of the sequential estimators' episode weights (the same ESS rule by episode).

    Examples:
        >>> episode_warnings(1000, 900.0)
        ()
        >>> episode_warnings(1000, 12.5)[0].split(":")[0]
        'effective number of episodes 12.5 is under 100 episodes'
    """
    threshold = max(float(MIN_EFFECTIVE_SAMPLE), MIN_EFFECTIVE_SHARE * n_episodes)
    if episode_effective_sample_size >= threshold:
        return ()
    what = (
        f"{MIN_EFFECTIVE_SAMPLE} episodes"
        if threshold == MIN_EFFECTIVE_SAMPLE
        else f"{MIN_EFFECTIVE_SHARE:.0%} of the {n_episodes:,} episodes"
    )
    return (
        f"effective number of episodes {episode_effective_sample_size:.4g} is under {what}: "
        "the products of per-decision weights put the estimate on a few episodes",
    )
