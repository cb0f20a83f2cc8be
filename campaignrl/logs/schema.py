"""The decision-log schema and its writer.

One row per decision. Required columns, in this order:

==================  ======================================================================
``decision_id``     unique string id of the decision
``timestamp``       when the decision was made (UTC)
``customer_id``     who it was for
``episode_id``      trajectory id (one customer's campaign)
``step``            period within the episode, from 0
``action``          action name (``no_contact`` or ``<offer>@<channel>``)
``propensity``      the logging policy's probability of that action, in (0, 1]
``reward``          profit observed for the decision
``policy_version``  which policy decided
==================  ======================================================================

Optional outcome columns (:data:`OUTCOME_COLUMNS`) record what the decision led to, beyond
the reward; ``campaignrl simulate`` writes them from what the simulator drew, and fitting a
simulator from logs (``campaignrl fit-sim``) uses them when present:

==================  ======================================================================
``opened``          bool: the contact was opened (read); False when the action is
                    ``no_contact``
``purchased``       bool: the customer bought this period (organic or prompted by the offer)
``basket_value``    float >= 0: value of that basket (after the offer's effect on it when the
                    offer was redeemed), 0.0 without a purchase
``unsubscribed``    bool: the customer opted out of the contacted channel this period
``churned``         bool: the customer left for good this period (True in that period only)
==================  ======================================================================

Booleans are written as booleans; :func:`~campaignrl.logs.read_logs` also accepts 1/0 and
refuses missing values. An offer counts as redeemed when the contact was ``opened`` and the
customer ``purchased``.

Optional ``allowed=<action>`` columns (one per action, booleans) record which actions the
rules of the world allowed for that decision (consent, opt-outs, contact caps). Off-policy
evaluation needs them to evaluate a target policy under the same masks as the logging
policy. Context feature columns follow (the observation's feature names). Parquet is the
native format; CSV is accepted.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from campaignrl._fs import write_table_atomic

__all__ = [
    "BOOL_OUTCOME_COLUMNS",
    "MASK_PREFIX",
    "OUTCOME_COLUMNS",
    "REQUIRED_COLUMNS",
    "mask_column",
    "write_logs",
]

MASK_PREFIX = "allowed="
"""prefix of the optional per-action mask columns"""


def mask_column(action: str) -> str:
    """Name of the mask column of ``action``.

    Examples:
        >>> mask_column("pct10@sms")
        'allowed=pct10@sms'
    """
    return MASK_PREFIX + action


REQUIRED_COLUMNS: tuple[str, ...] = (
    "decision_id",
    "timestamp",
    "customer_id",
    "episode_id",
    "step",
    "action",
    "propensity",
    "reward",
    "policy_version",
)


OUTCOME_COLUMNS: tuple[str, ...] = (
    "opened",
    "purchased",
    "basket_value",
    "unsubscribed",
    "churned",
)
"""the optional outcome columns, in the order ``campaignrl simulate`` writes them"""

BOOL_OUTCOME_COLUMNS: tuple[str, ...] = ("opened", "purchased", "unsubscribed", "churned")
"""the outcome columns that hold booleans (``basket_value`` holds money)"""


def write_logs(frame: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write a log as Parquet (``.parquet``) or CSV (``.csv``), atomically.

    The file is written beside the target and renamed into place, so a failure never leaves
    a half-written log.

    Raises:
        ValueError: If the suffix is neither ``.parquet`` nor ``.csv``, or a required column is
            missing.
    """
    out = Path(path)
    suffix = out.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise ValueError(f"`out` must end in .parquet or .csv, got {str(path)!r}")
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"log frame is missing required column(s) {missing}")
    return write_table_atomic(frame, out)
