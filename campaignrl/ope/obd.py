"""Converting an Open Bandit Dataset (OBD) campaign folder to the decision-log schema.

The Open Bandit Dataset (Saito, Aihara, Matsutani & Narita, NeurIPS Datasets and Benchmarks
2021; ZOZO Research, CC BY 4.0) logs fashion recommendations: each row is an item shown at one
of three positions, with the logging policy's propensity and whether the user clicked. A
campaign folder holds one campaign CSV (``all.csv``, ``men.csv`` or ``women.csv``) and
``item_context.csv``.

Mapping to our schema (:mod:`campaignrl.logs.schema`):

==================  ======================================================================
``decision_id``     ``obd-<policy>-<campaign>-<row>`` (``row``: the CSV's index column)
``timestamp``       the CSV's timestamp, in UTC
``customer_id``     ``obd-user-<k>``: the combination of the four hashed user features
                    (OBD has no user id, so this is a user *group*, not a person)
``episode_id``      the ``decision_id``: every recommendation is a one-step episode
``step``            0
``action``          ``item_<item_id>``
``position``        the slot, 0-based (OBD's 1..3 minus one)
``propensity``      ``propensity_score``
``reward``          ``click`` (0/1)
``policy_version``  ``obd-<policy>-<campaign>``, ``<policy>`` being the folder's name
                    (``random``, ``bts``)
==================  ======================================================================

Feature columns: the user features one-hot encoded (``user_feature_<j>=<first 8 hex digits
of the hash>``) and the ``user-item_affinity_<k>`` columns as they are. Item features are not
context (they describe actions, not users), so they are written beside the log in
``<out stem>.items<suffix>`` (``action``, ``item_id``, ``item_feature_*``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["import_obd", "items_path", "obd_action_names"]

_CAMPAIGNS = ("all", "men", "women")


def obd_action_names(n_items: int) -> tuple[str, ...]:
    """Action names ``item_0 .. item_<n_items - 1>`` in index order.

    Examples:
        >>> obd_action_names(3)
        ('item_0', 'item_1', 'item_2')
    """
    return tuple(f"item_{k}" for k in range(n_items))


def items_path(out: str | os.PathLike[str]) -> Path:
    """Where the item features go beside a log: ``logs.parquet`` -> ``logs.items.parquet``.

    Examples:
        >>> items_path("out/logs.parquet").as_posix()
        'out/logs.items.parquet'
    """
    path = Path(out)
    return path.with_name(f"{path.stem}.items{path.suffix}")


def import_obd(
    directory: str | os.PathLike[str], *, campaign: str | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read an OBD campaign folder into a decision log and an item table.

    Args:
        directory: The folder (e.g. ``open_bandit_dataset/random/all`` or a folder holding
            ``all.csv`` and ``item_context.csv``).
        campaign: The campaign CSV's stem; default: the folder's only CSV besides
            ``item_context.csv``.

    Returns:
        ``(log, items)``: the log in our schema (see the module docstring) and the item
        features, one row per item.

    Raises:
        ValueError: If the folder, the campaign CSV, ``item_context.csv`` or an OBD column is
            missing, or the campaign is ambiguous.
    """
    root = Path(directory)
    if not root.is_dir():
        raise ValueError(f"argument DIR: {str(directory)!r} is not a directory")
    item_file = root / "item_context.csv"
    if not item_file.is_file():
        raise ValueError(f"argument DIR: {str(directory)!r} has no item_context.csv")
    if campaign is None:
        found = sorted(p.stem for p in root.glob("*.csv") if p.name != "item_context.csv")
        if len(found) != 1:
            raise ValueError(
                f"argument DIR: {str(directory)!r} must hold exactly one campaign CSV besides "
                f"item_context.csv, found {found}; pass --campaign"
            )
        campaign = found[0]
    path = root / f"{campaign}.csv"
    if not path.is_file():
        raise ValueError(f"argument --campaign: {str(path)!r} does not exist")
    raw = pd.read_csv(path, index_col=0)
    need = ["timestamp", "item_id", "position", "click", "propensity_score"]
    missing = [c for c in need if c not in raw.columns]
    if missing:
        raise ValueError(f"{str(path)!r} is not an OBD campaign file: missing column(s) {missing}")
    behavior = root.name if root.name not in _CAMPAIGNS else root.parent.name
    version = f"obd-{behavior}-{campaign}"
    user_cols = sorted(c for c in raw.columns if c.startswith("user_feature_"))
    affinity_cols = [c for c in raw.columns if c.startswith("user-item_affinity_")]
    row_ids = pd.Series(raw.index.astype(str), index=raw.index)
    decision = f"{version}-" + row_ids
    if user_cols:
        groups, _ = pd.factorize(pd.Series(list(zip(*(raw[c] for c in user_cols), strict=True))))
        customer = pd.Series(groups, index=raw.index).map(lambda k: f"obd-user-{k}")
    else:
        customer = pd.Series("obd-user-0", index=raw.index)
    log = pd.DataFrame(
        {
            "decision_id": decision.to_numpy(),
            "timestamp": pd.to_datetime(raw["timestamp"], utc=True).to_numpy(),
            "customer_id": customer.to_numpy(),
            "episode_id": decision.to_numpy(),
            "step": np.zeros(len(raw), dtype=np.int64),
            "action": ("item_" + raw["item_id"].astype(int).astype(str)).to_numpy(),
            "propensity": raw["propensity_score"].to_numpy(dtype=np.float64),
            "reward": raw["click"].to_numpy(dtype=np.float64),
            "policy_version": version,
            "position": raw["position"].to_numpy(dtype=np.int64) - 1,
        }
    )
    log["timestamp"] = pd.to_datetime(log["timestamp"], utc=True)
    onehots = []
    for col in user_cols:
        values = raw[col].astype(str)
        for value in sorted(values.unique()):
            onehots.append(
                pd.Series((values == value).to_numpy(dtype=np.float64), name=f"{col}={value[:8]}")
            )
    features = pd.concat(onehots, axis=1) if onehots else pd.DataFrame(index=range(len(raw)))
    affinities = raw[affinity_cols].reset_index(drop=True).astype(np.float64)
    log = pd.concat([log, features, affinities], axis=1)
    items = pd.read_csv(item_file, index_col=0)
    if "item_id" not in items.columns:
        raise ValueError(f"{str(item_file)!r} has no item_id column")
    items.insert(0, "action", "item_" + items["item_id"].astype(int).astype(str))
    return log, items.reset_index(drop=True)
