"""Reading decision logs into a validated, typed ``LoggedData`` record for OPE."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from campaignrl._checks import check_array
from campaignrl.logs.schema import MASK_PREFIX, REQUIRED_COLUMNS, mask_column

__all__ = ["OPE_COLUMNS", "LoggedData", "read_logs"]

OPE_COLUMNS: tuple[str, ...] = ("action", "propensity", "reward")
"""the columns off-policy evaluation cannot do without"""

_OPTIONAL_COLUMNS = ("position",)
"""known columns that are not features"""


@dataclass(frozen=True, eq=False)
class LoggedData:
    """Logged bandit feedback: one entry per decision, as arrays (the OPE input).

    Build it with :func:`read_logs` (which names the column and row of any defect), or directly
    from arrays; direct construction checks shapes, dtypes and ranges (naming the field and the
    index). The arrays are made read-only.

    Examples:
        >>> data = LoggedData(
        ...     actions=np.array([0, 1, 1]),
        ...     rewards=np.array([0.0, 1.0, 0.5]),
        ...     propensities=np.array([0.5, 0.25, 0.25]),
        ...     action_names=("a", "b", "c"),
        ... )
        >>> data.n_rounds, data.n_actions, data.n_positions
        (3, 3, 1)
    """

    actions: np.ndarray
    """(n,) int64 action index of each decision, in ``[0, n_actions)``"""
    rewards: np.ndarray
    """(n,) float64 observed reward"""
    propensities: np.ndarray
    """(n,) float64 the logging policy's probability of the logged action, in (0, 1]"""
    action_names: tuple[str, ...]
    """name of every action, in index order (defines ``n_actions``)"""
    features: np.ndarray | None = None
    """(n, d) float64 context features, or ``None``"""
    feature_names: tuple[str, ...] = ()
    """name of each feature column (``d`` names)"""
    positions: np.ndarray | None = None
    """(n,) int64 slot of each decision (0-based) in multi-slot logs, or ``None``"""
    episode_ids: np.ndarray | None = None
    """(n,) int64 episode code (order of first appearance of ``episode_id``), or ``None``"""
    steps: np.ndarray | None = None
    """(n,) int64 period within the episode, or ``None``"""
    masks: np.ndarray | None = None
    """(n, A) bool actions the world allowed at each decision (``allowed=<action>``), or
    ``None`` when the log does not record them"""

    def __post_init__(self) -> None:
        n_actions = len(self.action_names)
        if n_actions == 0:
            raise ValueError("`action_names` must name at least one action, got none")
        actions = _as_index_array(self.actions, "actions", ndim=1)
        n = actions.shape[0]
        _check_range(actions, "actions", low=0, high=n_actions - 1)
        object.__setattr__(self, "action_names", tuple(str(a) for a in self.action_names))
        object.__setattr__(self, "actions", actions)
        rewards = _as_float_array(self.rewards, "rewards", (n,))
        object.__setattr__(self, "rewards", rewards)
        props = _as_float_array(self.propensities, "propensities", (n,))
        bad = ~((props > 0.0) & (props <= 1.0))
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"`propensities` must be in (0, 1], got {props[i]!r} at index {i}")
        object.__setattr__(self, "propensities", props)
        if self.features is not None:
            feats = _as_float_array(self.features, "features", (n, None))
            if len(self.feature_names) != feats.shape[1]:
                raise ValueError(
                    f"`feature_names` must name the {feats.shape[1]} feature columns, "
                    f"got {len(self.feature_names)} names"
                )
            object.__setattr__(self, "features", feats)
        elif len(self.feature_names) != 0:
            raise ValueError(
                f"`feature_names` must be empty without features, got {self.feature_names}"
            )
        object.__setattr__(self, "feature_names", tuple(str(f) for f in self.feature_names))
        for name in ("positions", "episode_ids", "steps"):
            value = getattr(self, name)
            if value is not None:
                arr = _as_index_array(value, name, ndim=1)
                if arr.shape[0] != n:
                    raise ValueError(f"`{name}` must have shape ({n},), got {arr.shape}")
                _check_range(arr, name, low=0, high=None)
                object.__setattr__(self, name, arr)

        if self.masks is not None:
            masks = np.asarray(self.masks)
            if masks.shape != (n, n_actions) or masks.dtype != bool:
                raise ValueError(
                    f"`masks` must be a boolean array of shape ({n}, {n_actions}), "
                    f"got {masks.dtype} {masks.shape}"
                )
            taken = masks[np.arange(n), actions]
            if not taken.all():
                i = int(np.argmin(taken))
                raise ValueError(f"`masks` must allow the logged action, row {i} does not")
            masks = masks.copy()
            masks.setflags(write=False)
            object.__setattr__(self, "masks", masks)

    @property
    def n_rounds(self) -> int:
        """Number of logged decisions ``n``."""
        return int(self.actions.shape[0])

    @property
    def n_actions(self) -> int:
        """Number of actions ``A`` (the length of ``action_names``)."""
        return len(self.action_names)

    @cached_property
    def n_positions(self) -> int:
        """Number of slots ``L``: one more than the largest position, 1 without positions."""
        if self.positions is None or self.positions.shape[0] == 0:
            return 1
        return int(self.positions.max()) + 1


def read_logs(
    source: str | os.PathLike[str] | pd.DataFrame,
    *,
    action_names: Sequence[str] | None = None,
    feature_columns: Sequence[str] | None = None,
) -> LoggedData:
    """Read a decision log (Parquet, CSV or a DataFrame) and validate it for OPE.

    OPE needs the ``action``, ``propensity`` and ``reward`` columns; ``decision_id`` (checked
    for uniqueness), ``position`` (slot, 0-based), ``episode_id`` and ``step`` (sequential
    estimators) are read when present. Every check is vectorized: a defect is reported with the
    column, the first offending row (0-based, counting data rows of the file, header excluded)
    and its value.

    Args:
        source: Path to a ``.parquet`` or ``.csv`` file, or a DataFrame in the schema of
            :mod:`campaignrl.logs.schema`.
        action_names: Action names in index order. Default: the default catalog's actions.
            The ``action`` column may hold these names or integer indices into them.
        feature_columns: Context feature columns. Default: every column that is neither a
            schema column nor ``position``; an empty list reads no features.

    Returns:
        The validated :class:`LoggedData`.

    Raises:
        ValueError: On a missing column, a propensity missing or outside (0, 1], an unknown
            action or an index out of range, a non-finite reward or feature, a duplicate
            ``decision_id``, a negative or non-integer ``position`` or ``step``.

    Examples:
        >>> frame = pd.DataFrame({
        ...     "action": ["no_contact", "pct10@sms"],
        ...     "propensity": [0.5, 0.25],
        ...     "reward": [0.0, 3.5],
        ... })
        >>> data = read_logs(frame)
        >>> data.actions.tolist(), data.n_actions
        ([0, 5], 19)
        >>> read_logs(frame.assign(propensity=[0.5, 0.0]))
        Traceback (most recent call last):
        ...
        ValueError: column `propensity` must be a number in (0, 1]: row 1 has 0.0
    """
    if action_names is None:
        from campaignrl.catalog import default_catalog

        action_names = default_catalog().action_names
    names = tuple(str(a) for a in action_names)
    if len(set(names)) != len(names):
        raise ValueError(f"`action_names` must be unique, got {list(names)}")
    frame = _load_frame(source, feature_columns)
    missing = [c for c in OPE_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"log is missing required column(s) {missing}")
    if feature_columns is None:
        skip = set(REQUIRED_COLUMNS) | set(_OPTIONAL_COLUMNS)
        feature_columns = [
            str(c) for c in frame.columns if c not in skip and not str(c).startswith(MASK_PREFIX)
        ]
    else:
        feature_columns = [str(c) for c in feature_columns]
        absent = [c for c in feature_columns if c not in frame.columns]
        if absent:
            raise ValueError(f"`feature_columns` not in the log: {absent}")
    n = len(frame)

    actions = _read_actions(frame["action"], names)
    propensities = _read_float(frame["propensity"], "propensity")
    bad = ~((propensities > 0.0) & (propensities <= 1.0))  # NaN fails both comparisons
    if bad.any():
        _refuse(frame, "propensity", bad, "must be a number in (0, 1]")
    rewards = _read_float(frame["reward"], "reward")
    _refuse_non_finite(frame, "reward", rewards)
    if "decision_id" in frame.columns:
        _check_unique(frame["decision_id"])
    positions = _read_index(frame, "position") if "position" in frame.columns else None
    steps = _read_index(frame, "step") if "step" in frame.columns else None
    episode_ids = None
    if "episode_id" in frame.columns:
        column = frame["episode_id"]
        bad = column.isna().to_numpy()
        if bad.any():
            _refuse(frame, "episode_id", bad, "must not be missing")
        codes, _ = pd.factorize(column, sort=False)
        episode_ids = codes.astype(np.int64, copy=False)

    masks = _read_masks(frame, names, actions)
    features = None
    if feature_columns:
        features = np.empty((n, len(feature_columns)), dtype=np.float64, order="F")
        for j, col in enumerate(feature_columns):
            values = _read_float(frame[col], col)
            _refuse_non_finite(frame, col, values)
            features[:, j] = values
    return LoggedData(
        actions=actions,
        rewards=rewards,
        propensities=propensities,
        action_names=names,
        features=features,
        feature_names=tuple(feature_columns),
        positions=positions,
        episode_ids=episode_ids,
        steps=steps,
        masks=masks,
    )


def _read_masks(
    frame: pd.DataFrame, names: tuple[str, ...], actions: np.ndarray
) -> np.ndarray | None:
    """The ``allowed=<action>`` columns as an (n, A) mask, or ``None`` if the log has none."""
    present = [c for c in frame.columns if str(c).startswith(MASK_PREFIX)]
    if not present:
        return None
    expected = [mask_column(a) for a in names]
    unknown = sorted(set(map(str, present)) - set(expected))
    if unknown:
        raise ValueError(f"mask column(s) {unknown} name no known action")
    missing = [c for c in expected if c not in frame.columns]
    if missing:
        raise ValueError(f"log has mask columns but is missing {missing[:3]} ({len(missing)})")
    masks = np.empty((len(frame), len(names)), dtype=bool)
    for j, col in enumerate(expected):
        values = _read_float(frame[col], col)
        bad = ~((values == 0.0) | (values == 1.0))
        if bad.any():
            _refuse(frame, col, bad, "must be a boolean (true/false or 1/0)")
        masks[:, j] = values == 1.0
    taken = masks[np.arange(len(frame)), actions]
    if not taken.all():
        row = int(np.argmin(taken))
        col = expected[int(actions[row])]
        raise ValueError(f"column `{col}` must allow the logged action: row {row} has False")
    return masks


def _load_frame(
    source: str | os.PathLike[str] | pd.DataFrame, feature_columns: Sequence[str] | None
) -> pd.DataFrame:
    if isinstance(source, pd.DataFrame):
        return source.reset_index(drop=True)
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(
            f"`source` must be a path or a pandas DataFrame, got {type(source).__name__}"
        )
    path = Path(source)
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise ValueError(f"`source` must end in .parquet or .csv, got {str(source)!r}")
    if not path.is_file():
        raise FileNotFoundError(f"`source` {str(source)!r} does not exist")
    if suffix == ".csv":
        return pd.read_csv(path, engine="pyarrow")
    import pyarrow.parquet as pq

    schema = pq.read_schema(path)
    present = set(schema.names)
    wanted = [*OPE_COLUMNS, "decision_id", "episode_id", "step", "position"]
    if feature_columns is None:
        wanted += [c for c in schema.names if c not in REQUIRED_COLUMNS and c != "position"]
    else:
        wanted += list(feature_columns)
        wanted += [c for c in schema.names if c.startswith(MASK_PREFIX)]
    columns = list(dict.fromkeys(c for c in wanted if c in present))
    # Reading the low-cardinality string columns dictionary-encoded gives pandas categoricals:
    # validating 10M action names is then a lookup of a few dozen categories.
    import pyarrow as pa

    strings = [
        c
        for c in ("action", "episode_id")
        if c in present
        and (
            pa.types.is_string(schema.field(c).type)
            or pa.types.is_large_string(schema.field(c).type)
        )
    ]
    table = pq.read_table(path, columns=columns, read_dictionary=strings)
    return table.to_pandas()


def _row_value(frame: pd.DataFrame, column: str, row: int) -> Any:
    value = frame[column].iloc[row]
    return value.item() if isinstance(value, np.generic) else value


def _refuse(frame: pd.DataFrame, column: str, bad: np.ndarray, what: str) -> None:
    row = int(np.argmax(bad))
    raise ValueError(f"column `{column}` {what}: row {row} has {_row_value(frame, column, row)!r}")


def _refuse_non_finite(frame: pd.DataFrame, column: str, values: np.ndarray) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        _refuse(frame, column, bad, "must be a finite number")


def _read_float(column: pd.Series, name: str) -> np.ndarray:
    """The column as float64; entries that are not numbers become NaN (refused by callers)."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        column = column.astype(object)
    if pd.api.types.is_bool_dtype(column.dtype) or not pd.api.types.is_numeric_dtype(column.dtype):
        column = pd.to_numeric(column, errors="coerce")
    return column.to_numpy(dtype=np.float64, na_value=np.nan)


def _read_index(frame: pd.DataFrame, name: str) -> np.ndarray:
    """A column of non-negative integers (``position``, ``step``) as int64."""
    column = frame[name]
    if pd.api.types.is_integer_dtype(column.dtype) and not column.isna().any():
        values = column.to_numpy(dtype=np.int64)
        bad = values < 0
    else:
        floats = _read_float(column, name)
        bad = ~(np.isfinite(floats) & (floats >= 0) & (np.floor(floats) == floats))
        values = np.where(bad, 0, floats).astype(np.int64)
    if bad.any():
        _refuse(frame, name, bad, "must hold non-negative integers")
    return values


def _read_actions(column: pd.Series, names: tuple[str, ...]) -> np.ndarray:
    n_actions = len(names)
    frame = column.to_frame("action")
    if pd.api.types.is_numeric_dtype(column.dtype) and not pd.api.types.is_bool_dtype(column.dtype):
        floats = column.to_numpy(dtype=np.float64, na_value=np.nan)
        bad = ~(
            np.isfinite(floats)
            & (np.floor(floats) == floats)
            & (floats >= 0)
            & (floats < n_actions)
        )
        if bad.any():
            _refuse(frame, "action", bad, f"must be an action index in [0, {n_actions - 1}]")
        return floats.astype(np.int64)
    # Names: factorize once, then look up the few distinct values.
    codes, uniques = pd.factorize(column, sort=False)
    lookup = {name: i for i, name in enumerate(names)}
    index_of = np.array(
        [_action_of(u, lookup, n_actions) for u in uniques.tolist()], dtype=np.int64
    )
    actions = np.where(codes >= 0, index_of[np.maximum(codes, 0)], -1)
    bad = actions < 0
    if bad.any():
        shown = ", ".join(names[:25]) + (", ..." if n_actions > 25 else "")
        _refuse(frame, "action", bad, f"must name a known action ({shown}) or an index")
    return actions


def _action_of(value: object, lookup: dict[str, int], n_actions: int) -> int:
    """Index of one distinct action value: a name, or an integer index (as int or digits)."""
    if isinstance(value, str):
        if value in lookup:
            return lookup[value]
        if value.strip().isdigit():
            value = int(value.strip())
        else:
            return -1
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value) if 0 <= int(value) < n_actions else -1
    return -1


def _check_unique(column: pd.Series) -> None:
    missing = column.isna().to_numpy()
    if missing.any():
        row = int(np.argmax(missing))
        raise ValueError(
            f"column `decision_id` must not be missing: row {row} has {column.iloc[row]!r}"
        )
    dup = column.duplicated(keep="first").to_numpy()
    if dup.any():
        row = int(np.argmax(dup))
        value = column.iloc[row]
        first = int(np.argmax((column == value).to_numpy()))
        raise ValueError(
            f"column `decision_id` must be unique: row {row} has {value!r}, "
            f"already used at row {first}"
        )


def _as_index_array(value: Any, name: str, *, ndim: int) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim != ndim:
        raise ValueError(f"`{name}` must be a {ndim}D array, got a {arr.ndim}D array")
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"`{name}` must hold integers, got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.int64)
    if arr is value:  # never freeze the caller's own array: freeze a view of it
        arr = arr.view()
    arr.setflags(write=False)
    return arr


def _check_range(arr: np.ndarray, name: str, *, low: int, high: int | None) -> None:
    bad = arr < low if high is None else (arr < low) | (arr > high)
    if bad.any():
        i = int(np.argmax(bad))
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"`{name}` must be {bound}, got {int(arr[i])} at index {i}")


def _as_float_array(value: Any, name: str, shape: tuple[int | None, ...]) -> np.ndarray:
    arr = check_array(value, name, shape=shape)
    if arr is value:  # never freeze the caller's own array: freeze a view of it
        arr = arr.view()
    arr.setflags(write=False)
    return arr
