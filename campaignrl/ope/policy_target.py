"""Target policies from exported policy directories, evaluated on a log's feature columns."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from campaignrl.logs.io import LoggedData
from campaignrl.ope.target import TargetPolicy, takes_masks

__all__ = ["load_policy_target", "policy_target"]


def policy_target(policy: Any, data: LoggedData) -> TargetPolicy:
    """Per-row target probabilities of a :class:`campaignrl.policies.Policy` on a log.

    The policy's ``feature_names`` are looked up among the log's feature columns (in the
    policy's order, whatever the log's order); its ``action_names`` must be the log's.
    When the log records the actions allowed at each decision (``allowed=<action>`` columns,
    which ``campaignrl simulate`` writes), the policy is evaluated under those masks, as it
    would have decided. Without them it is evaluated unmasked: mass it puts on an action that
    was not allowed at logging time has no logged support and biases IPS downwards; the
    target is then marked ``masks_ignored`` and the diagnostics warn.

    Raises:
        ValueError: Naming the feature columns missing from the log, or if the actions differ.
    """
    names = tuple(getattr(policy, "feature_names", ()))
    missing = [f for f in names if f not in data.feature_names]
    if missing:
        raise ValueError(
            f"the log lacks the policy's feature column(s) {missing} "
            f"(the log has {len(data.feature_names)} feature columns)"
        )
    actions = tuple(getattr(policy, "action_names", data.action_names))
    if actions != data.action_names:
        raise ValueError(
            f"the policy's actions {list(actions)[:6]}... ({len(actions)}) are not the log's "
            f"{list(data.action_names)[:6]}... ({len(data.action_names)})"
        )
    if data.features is None:  # pragma: no cover - names were found, so features exist
        raise ValueError("the log has no feature columns")
    index = [data.feature_names.index(f) for f in names]
    features = np.ascontiguousarray(data.features[:, index])
    if data.masks is None:  # any object with probabilities(features) will do
        probs = policy.probabilities(features)
    else:
        probs = policy.probabilities(features, data.masks)
    # A policy that decides under masks, on a log without them: say so in the diagnostics.
    ignored = data.masks is None and takes_masks(policy)
    return TargetPolicy(np.asarray(probs), per_row=True, masks_ignored=ignored)


def load_policy_target(directory: str | os.PathLike[str], data: LoggedData) -> TargetPolicy:
    """Load an exported policy directory and evaluate it on ``data`` (see :func:`policy_target`).

    Raises:
        ValueError: If the artifact cannot be loaded (``PolicyArtifactError``), or as
            :func:`policy_target`.
    """
    from campaignrl.policies import load_policy

    return policy_target(load_policy(directory), data)
