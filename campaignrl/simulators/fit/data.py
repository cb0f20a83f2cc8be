"""Decision logs as trajectories for fitting: arrays sorted by episode and step, and refusals.

A log supports a fit when it has the schema columns, the ``allowed=<action>`` masks (consent,
opt-outs and the contact cap are read from them), the RFM context features of
:mod:`campaignrl.envs.observation` (``recency``, ``frequency``, ``monetary``), at least two
periods, exploration (propensities below 1) and enough rows of every contact action.
Anything less is refused with a ``ValueError`` that says what is missing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from campaignrl.catalog import Catalog
from campaignrl.logs.io import read_logs
from campaignrl.logs.schema import MASK_PREFIX, REQUIRED_COLUMNS, mask_column

__all__ = ["OUTCOMES", "RFM_FEATURES", "Trajectories", "load_frame", "prepare"]

OUTCOMES: tuple[str, ...] = ("opened", "purchased", "basket_value", "unsubscribed", "churned")
"""the optional outcome columns a fit uses when present (``campaignrl.logs.schema``)"""
RFM_FEATURES: tuple[str, ...] = ("recency", "frequency", "monetary")
"""context features a fit cannot do without (the encoding of ``campaignrl.envs.observation``)"""
_NOT_FEATURES = frozenset(REQUIRED_COLUMNS) | {"position"} | set(OUTCOMES)


@dataclass(frozen=True)
class Trajectories:
    """A decision log as arrays, rows sorted by (episode, step).

    Derived columns follow the simulator's order of events (:mod:`campaignrl.simulators.core`):
    ``alive`` is false from the period after a logged churn on.
    """

    catalog: Catalog
    episode: np.ndarray
    """(n,) episode code, 0..E-1, in order of first appearance"""
    step: np.ndarray
    """(n,) period within the episode"""
    action: np.ndarray
    """(n,) action index (logged actions are allowed, so also the executed one)"""
    propensity: np.ndarray
    """(n,) logging propensity"""
    reward: np.ndarray
    """(n,) logged profit"""
    masks: np.ndarray
    """(n, A) allowed actions"""
    features: dict[str, np.ndarray]
    """context feature columns by name, float64"""
    outcomes: dict[str, np.ndarray]
    """the outcome columns present, by name"""
    customer_ids: np.ndarray
    """(E,) customer id of each episode, as str"""
    first: np.ndarray
    """(E,) row of each episode's first decision"""
    notes: list[str] = field(default_factory=list)
    """what the log lacks and the fit does instead"""

    @property
    def n(self) -> int:
        """Number of decisions."""
        return int(self.action.shape[0])

    @property
    def n_episodes(self) -> int:
        """Number of episodes (customer campaigns)."""
        return int(self.first.shape[0])

    @property
    def offer(self) -> np.ndarray:
        """(n,) offer index, -1 for no contact."""
        return np.asarray(self.catalog.offer_of)[self.action]

    @property
    def channel(self) -> np.ndarray:
        """(n,) channel index, -1 for no contact."""
        return np.asarray(self.catalog.channel_of)[self.action]

    @property
    def contacted(self) -> np.ndarray:
        """(n,) a contact was sent."""
        return self.action > 0

    def has(self, name: str) -> bool:
        """Whether outcome column ``name`` is in the log."""
        return name in self.outcomes

    def recency(self) -> np.ndarray:
        """(n,) periods since the last purchase (``recency`` feature times 52, capped at 52)."""
        return np.rint(self.features["recency"] * 52.0)

    def alive(self) -> np.ndarray:
        """(n,) not churned before this period (all true without a ``churned`` column)."""
        if "churned" not in self.outcomes:
            return np.ones(self.n, dtype=bool)
        churned = self.outcomes["churned"].astype(np.int64)
        total = np.cumsum(churned)
        # churns in earlier rows of the same episode: running total minus the episode's
        # total before its first row, minus this row's own churn
        before = total - churned - (total - churned)[self.first][self.episode]
        return before == 0

    def episode_index(self) -> np.ndarray:
        """(n,) position of the row within its episode (0 for the first)."""
        return np.arange(self.n) - self.first[self.episode]


def load_frame(source: str | os.PathLike[str] | pd.DataFrame, what: str = "logs") -> pd.DataFrame:
    """A table from a DataFrame, a ``.parquet`` or a ``.csv`` file.

    Raises:
        ValueError: If the suffix is neither ``.parquet`` nor ``.csv``.
    """
    if isinstance(source, pd.DataFrame):
        return source
    path = Path(source)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return pd.read_parquet(path)
    if suffix == ".csv":
        return pd.read_csv(path)
    raise ValueError(f"`{what}` must be a .parquet or .csv file or a DataFrame, got {str(path)!r}")


def prepare(frame: pd.DataFrame, catalog: Catalog, *, min_rows_per_action: int) -> Trajectories:
    """Validate a log for fitting and lay it out as :class:`Trajectories`.

    Raises:
        ValueError: Naming what is missing: a schema or mask column, an RFM feature, a second
            period, exploration, or rows of an action.
    """
    names = catalog.action_names
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"cannot fit a simulator: the log is missing column(s) {missing}")
    masks_missing = [mask_column(a) for a in names if mask_column(a) not in frame.columns]
    if masks_missing:
        raise ValueError(
            "cannot fit a simulator: the log is missing the allowed=<action> mask column(s) "
            f"{masks_missing[:4]}{' ...' if len(masks_missing) > 4 else ''} (consent, opt-outs "
            "and the contact cap are read from them; `campaignrl simulate` writes them)"
        )
    rfm_missing = [c for c in RFM_FEATURES if c not in frame.columns]
    if rfm_missing:
        raise ValueError(
            f"cannot fit a simulator: the log is missing the context feature(s) {rfm_missing} "
            "(recency, frequency and monetary value, encoded as in campaignrl.envs.observation)"
        )
    extra_masks = [
        c
        for c in frame.columns
        if str(c).startswith(MASK_PREFIX) and c not in set(map(mask_column, names))
    ]
    if extra_masks:
        raise ValueError(
            f"the log has mask column(s) {extra_masks[:4]} for actions the catalog does not "
            f"have; the catalog's actions are {list(names)}"
        )
    feature_columns = [
        str(c)
        for c in frame.columns
        if c not in _NOT_FEATURES and not str(c).startswith(MASK_PREFIX)
    ]
    data = read_logs(frame, action_names=names, feature_columns=feature_columns)
    if data.episode_ids is None or data.steps is None or data.masks is None:
        raise ValueError("cannot fit a simulator: episode_id, step and the masks are needed")

    # Sort by (episode, step): every estimator below reads trajectories in time order.
    order = np.lexsort((data.steps, data.episode_ids))
    episode = data.episode_ids[order]
    step = data.steps[order]
    if np.any((np.diff(episode) == 0) & (np.diff(step) == 0)):
        i = int(np.flatnonzero((np.diff(episode) == 0) & (np.diff(step) == 0))[0])
        raise ValueError(
            f"the log has two decisions for one episode and step (step {int(step[i])}): a fit "
            "needs one decision per customer and period"
        )
    n_steps = np.unique(step).size
    if n_steps < 2:
        raise ValueError(
            f"cannot fit a simulator: the log holds one period only (step {int(step[0])}); "
            "fatigue, opt-outs and churn are fitted from trajectories of at least 2 periods"
        )
    action = data.actions[order]
    propensity = data.propensities[order]
    if np.all(propensity >= 1.0 - 1e-9):
        raise ValueError(
            "cannot fit a simulator: the log has no exploration (every propensity is 1, the "
            "logging policy was deterministic); responses to the actions it never tried cannot "
            "be told apart from its choices. Log with exploration, e.g. `campaignrl simulate "
            "--epsilon 0.3`"
        )
    counts = np.bincount(action, minlength=catalog.n_actions)
    few = [
        (names[a], int(counts[a]))
        for a in range(catalog.n_actions)
        if counts[a] < min_rows_per_action
    ]
    if few:
        shown = ", ".join(f"{a!r}: {k}" for a, k in few[:6])
        raise ValueError(
            f"cannot fit a simulator: too few rows per action (fewer than min_rows_per_action="
            f"{min_rows_per_action}): {shown}{' ...' if len(few) > 6 else ''}; "
            "the log needs more exploration of these actions"
        )
    features = {
        name: np.asarray(data.features[order, j], dtype=np.float64)  # type: ignore[index]
        for j, name in enumerate(data.feature_names)
    }
    outcomes = {k: np.asarray(v)[order] for k, v in (getattr(data, "outcomes", None) or {}).items()}
    first = np.flatnonzero(np.r_[True, np.diff(episode) != 0])
    customers = frame["customer_id"].to_numpy()[order][first].astype(str)
    notes: list[str] = []
    absent = [c for c in OUTCOMES if c not in outcomes]
    if absent:
        notes.append(f"the log has no outcome column(s) {absent}")
    return Trajectories(
        catalog=catalog,
        episode=episode,
        step=step,
        action=action,
        propensity=propensity,
        reward=data.rewards[order],
        masks=np.asarray(data.masks)[order],
        features=features,
        outcomes=outcomes,
        customer_ids=customers,
        first=first,
        notes=notes,
    )
