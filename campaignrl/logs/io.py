"""Reading decision logs into a validated, typed ``LoggedData`` record for OPE."""

from __future__ import annotations

import codecs
import csv
import os
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from campaignrl._checks import check_array
from campaignrl.logs.schema import (
    BOOL_OUTCOME_COLUMNS,
    MASK_PREFIX,
    OUTCOME_COLUMNS,
    REQUIRED_COLUMNS,
    mask_column,
)

__all__ = ["MAX_ABS_VALUE", "OPE_COLUMNS", "LoggedData", "read_logs"]

OPE_COLUMNS: tuple[str, ...] = ("action", "propensity", "reward")
"""the columns off-policy evaluation cannot do without"""

_OPTIONAL_COLUMNS = ("position", *OUTCOME_COLUMNS)
"""known columns that are not features (outcomes happen after the decision: never context)"""

MAX_ABS_VALUE = 1e12
"""largest magnitude of a reward or a context feature. Larger values are unit or parsing
mistakes (a timestamp in nanoseconds, a sentinel such as 1e308), and they break the reward
models before they overflow: least squares works on ``X^T X``, whose rounding error grows as
``x^2``. Measured on a ridge fit of rewards of scale 1 with one such feature value, the
predictions of a Cholesky and an SVD solve differ by 3e-8 at 1e12, 1e-4 at 1e15 and 0.8 at
1e18, and ``x^2`` overflows float64 beyond 1.3e154. Rescale such a column (dollars, not
cents; days, not nanoseconds)."""
_INT64_LIMIT = 2**63
"""int64 holds the integers below this"""
_SHORT = 60
"""values longer than this (in their repr) are cut in messages"""


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
    outcomes: Mapping[str, np.ndarray] | None = None
    """the outcome columns the log has (:data:`~campaignrl.logs.schema.OUTCOME_COLUMNS`), by
    name: (n,) bool arrays, float64 for ``basket_value``; ``None`` when it has none"""

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
        _check_magnitude(rewards, "rewards")
        object.__setattr__(self, "rewards", rewards)
        props = _as_float_array(self.propensities, "propensities", (n,))
        bad = ~((props > 0.0) & (props <= 1.0))
        if bad.any():
            i = int(np.argmax(bad))
            got = float(props[i])
            raise ValueError(f"`propensities` must be in (0, 1], got {got!r} at index {i}")
        object.__setattr__(self, "propensities", props)
        if self.features is not None:
            feats = _as_float_array(self.features, "features", (n, None))
            if len(self.feature_names) != feats.shape[1]:
                raise ValueError(
                    f"`feature_names` must name the {feats.shape[1]} feature columns, "
                    f"got {len(self.feature_names)} names"
                )
            _check_magnitude(feats, "features", self.feature_names)
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
                # A slot index: a slate shows each action at most once, so there are at most
                # A slots (and (n, A, L) arrays downstream stay as large as (n, A, A)).
                _check_range(arr, name, low=0, high=n_actions - 1 if name == "positions" else None)
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
        if self.outcomes is not None:
            object.__setattr__(self, "outcomes", _check_outcomes(self.outcomes, n))

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
    estimators) are read when present, and so are the outcome columns (``opened``,
    ``purchased``, ``basket_value``, ``unsubscribed``, ``churned``: :data:`LoggedData.outcomes`;
    never features). Every check is vectorized: a defect is reported with the column, the first
    offending row (0-based, counting data rows of the file, header excluded) and its value (a
    short repr).

    Args:
        source: Path to a ``.parquet`` or ``.csv`` file (UTF-8), or a DataFrame in the schema
            of :mod:`campaignrl.logs.schema`.
        action_names: Action names in index order. Default: the default catalog's actions.
            The ``action`` column may hold these names or integer indices into them.
        feature_columns: Context feature columns. Default: every column that is neither a
            schema column, ``position``, an outcome nor an ``allowed=`` mask column; an empty
            list reads no features.

    Returns:
        The validated :class:`LoggedData`.

    Raises:
        ValueError: On a log with no rows; a file that is not the CSV or Parquet its suffix
            says (or not UTF-8); two columns of one name; a column named like a schema column
            but for its case (``Position``); a missing column; a propensity missing, boolean
            or outside (0, 1]; an unknown action or an index out of range; a list or struct
            where a single value belongs; a non-finite reward or feature, or one beyond
            :data:`MAX_ABS_VALUE`; a duplicate ``decision_id``; a ``position`` or ``step``
            that is not a non-negative integer (a ``position`` must be below the number of
            actions, a ``step`` below 2**63); an outcome flag that is missing or not a boolean
            (true/false, 1/0); a ``basket_value`` that is negative, non-finite or beyond
            :data:`MAX_ABS_VALUE`, or above 0 where ``purchased`` is False; an ``opened``
            ``no_contact``.

    Examples:
        >>> frame = pd.DataFrame({
        ...     "action": ["no_contact", "pct10@sms"],
        ...     "propensity": [0.5, 0.25],
        ...     "reward": [0.0, 3.5],
        ... })
        >>> data = read_logs(frame)
        >>> data.actions.tolist(), data.n_actions
        ([0, 5], 19)
        >>> with_outcomes = frame.assign(opened=[False, True], basket_value=[0.0, 20.0])
        >>> read_logs(with_outcomes).outcomes["basket_value"].tolist()
        [0.0, 20.0]
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
    frame, source_text = _load_frame(source, feature_columns)
    if len(frame) == 0:
        where = "the DataFrame" if isinstance(source, pd.DataFrame) else repr(str(source))
        raise ValueError(f"the log is empty: {where} has no rows (decisions)")
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
    _refuse_booleans(frame["propensity"], "propensity", "must be a number in (0, 1], not a boolean")
    propensities = _read_float(frame["propensity"], "propensity")
    bad = ~((propensities > 0.0) & (propensities <= 1.0))  # NaN fails both comparisons
    if bad.any():
        _refuse(frame["propensity"], "propensity", bad, "must be a number in (0, 1]")
    rewards = _read_float(frame["reward"], "reward")
    _refuse_non_finite(frame["reward"], "reward", rewards)
    if "decision_id" in frame.columns:
        _check_unique(frame["decision_id"])
    positions = steps = None
    if "position" in frame.columns:
        positions = _read_index(
            frame["position"],
            "position",
            high=len(names) - 1,
            what=f"must hold slot indices in [0, {len(names) - 1}] (a slate shows each of the "
            f"{len(names)} actions at most once)",
            source_text=source_text,
        )
    if "step" in frame.columns:
        steps = _read_index(frame["step"], "step", source_text=source_text)
    episode_ids = None
    if "episode_id" in frame.columns:
        column = frame["episode_id"]
        _refuse_nested(column, "episode_id")
        bad = column.isna().to_numpy()
        if bad.any():
            _refuse(column, "episode_id", bad, "must not be missing")
        codes, _ = pd.factorize(column, sort=False)
        episode_ids = codes.astype(np.int64, copy=False)

    masks = _read_masks(frame, names, actions)
    outcomes = _read_outcomes(frame, names, actions)
    features = None
    if feature_columns:
        features = np.empty((n, len(feature_columns)), dtype=np.float64, order="F")
        for j, col in enumerate(feature_columns):
            values = _read_float(frame[col], col)
            _refuse_non_finite(frame[col], col, values)
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
        outcomes=outcomes,
    )


def _read_outcomes(
    frame: pd.DataFrame, names: tuple[str, ...], actions: np.ndarray
) -> dict[str, np.ndarray] | None:
    """The outcome columns the log has, validated, or ``None`` if it has none.

    Besides each column's type, two rules that hold by definition are checked, because a
    break means a misaligned or mislabelled column: a basket without a purchase
    (``basket_value > 0`` where ``purchased`` is False) and an opened ``no_contact``.
    """
    out: dict[str, np.ndarray] = {}
    for col in OUTCOME_COLUMNS:
        if col not in frame.columns:
            continue
        column = frame[col]
        if col in BOOL_OUTCOME_COLUMNS:
            out[col] = _read_bool(column, col)
        else:
            _refuse_booleans(column, col, "must be a money amount, not a boolean")
            values = _read_float(column, col)
            bad = ~((values >= 0.0) & (values <= MAX_ABS_VALUE))  # NaN fails both
            if bad.any():
                _refuse(column, col, bad, f"must be a finite number in [0, {MAX_ABS_VALUE:g}]")
            out[col] = values
    if "basket_value" in out and "purchased" in out:
        bad = (out["basket_value"] != 0.0) & ~out["purchased"]
        if bad.any():
            _refuse(
                frame["basket_value"], "basket_value", bad, "must be 0 where `purchased` is False"
            )
    if "opened" in out and "no_contact" in names:
        bad = out["opened"] & (actions == names.index("no_contact"))
        if bad.any():
            _refuse(frame["opened"], "opened", bad, "must be False where `action` is no_contact")
    return out or None


_BOOL_TEXT = {"true": True, "false": False, "1": True, "0": False}
"""booleans as text (case-insensitive): a CSV column with one stray value is read as text"""


def _read_bool(column: pd.Series, name: str) -> np.ndarray:
    """A column of booleans (True/False, 1/0, or those as text) as bool; refuses anything else.

    Missing values are refused: an outcome that was not observed is not ``False``.
    """
    _refuse_nested(column, name)
    if pd.api.types.is_bool_dtype(column.dtype) and not column.isna().any():
        return column.to_numpy(dtype=bool)
    if pd.api.types.is_numeric_dtype(column.dtype) and not pd.api.types.is_bool_dtype(column.dtype):
        values = column.to_numpy(dtype=np.float64, na_value=np.nan)
        bad = ~((values == 0.0) | (values == 1.0))  # NaN fails both
        if bad.any():
            _refuse(column, name, bad, "must be a boolean (true/false or 1/0), not missing")
        return values == 1.0
    # Text, objects, categoricals, nullable booleans: look up the few distinct values once.
    codes, uniques = pd.factorize(column, sort=False)  # missing -> code -1
    looked = [_bool_of(u) for u in uniques.tolist()]
    valid = np.array([v is not None for v in looked] + [False], dtype=bool)
    truth = np.array([bool(v) for v in looked] + [False], dtype=bool)
    bad = ~valid[codes]  # code -1 picks the trailing False
    if bad.any():
        _refuse(column, name, bad, "must be a boolean (true/false or 1/0), not missing")
    return truth[codes]


def _bool_of(value: object) -> bool | None:
    """One distinct value as a boolean, or ``None`` if it is not one."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, float, np.integer, np.floating)) and value in (0, 1):
        return bool(value == 1)
    if isinstance(value, str):
        return _BOOL_TEXT.get(value.strip().casefold())
    return None


def _check_outcomes(outcomes: Mapping[str, np.ndarray], n: int) -> Mapping[str, np.ndarray]:
    """``LoggedData.outcomes`` checked (names, shapes, dtypes, ranges) and made read-only."""
    if not isinstance(outcomes, Mapping):
        raise TypeError(f"`outcomes` must be a mapping of column name to array, got {outcomes!r}")
    checked: dict[str, np.ndarray] = {}
    for name, value in outcomes.items():
        if name not in OUTCOME_COLUMNS:
            raise ValueError(
                f"`outcomes` keys must be outcome columns {list(OUTCOME_COLUMNS)}, got {name!r}"
            )
        arr = np.asarray(value)
        if name in BOOL_OUTCOME_COLUMNS:
            if arr.shape != (n,) or arr.dtype != bool:
                raise ValueError(
                    f"`outcomes[{name!r}]` must be a boolean array of shape ({n},), "
                    f"got {arr.dtype} {arr.shape}"
                )
            arr = arr.copy()
        else:
            arr = check_array(
                value, f"outcomes[{name!r}]", shape=(n,), min_val=0.0, max_val=MAX_ABS_VALUE
            )
            arr = arr.copy() if arr is value else arr  # never freeze the caller's array
        arr.setflags(write=False)
        checked[name] = arr
    return types.MappingProxyType(checked)


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
            _refuse(frame[col], col, bad, "must be a boolean (true/false or 1/0)")
        masks[:, j] = values == 1.0
    taken = masks[np.arange(len(frame)), actions]
    if not taken.all():
        row = int(np.argmin(taken))
        col = expected[int(actions[row])]
        raise ValueError(f"column `{col}` must allow the logged action: row {row} has False")
    return masks


# --------------------------------------------------------------------------------------------
# Loading: the file is what its suffix says, and its column names are usable
# --------------------------------------------------------------------------------------------

SourceText = Callable[[str, int], "str | None"]
"""``(column, row) -> the cell as written in the file`` (CSV), or ``None``"""


def _load_frame(
    source: str | os.PathLike[str] | pd.DataFrame, feature_columns: Sequence[str] | None
) -> tuple[pd.DataFrame, SourceText | None]:
    """The log as a DataFrame, and a way back to a cell's text (CSV files only)."""
    if isinstance(source, pd.DataFrame):
        _check_names([str(c) for c in source.columns], feature_columns, "the DataFrame")
        return source.reset_index(drop=True), None
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(
            f"`source` must be a path or a pandas DataFrame, got {type(source).__name__}"
        )
    path = Path(source)
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise ValueError(f"`source` must end in .parquet or .csv, got {str(source)!r}")
    if not path.exists():
        raise FileNotFoundError(f"`source` {str(source)!r} does not exist")
    if not path.is_file():
        raise ValueError(f"`source` {str(source)!r} is not a file")
    if suffix == ".csv":
        return _read_csv(path, feature_columns), lambda column, row: _csv_cell(path, column, row)
    return _read_parquet(path, feature_columns), None


def _read_csv(path: Path, feature_columns: Sequence[str] | None) -> pd.DataFrame:
    where = repr(str(path))
    with path.open("rb") as fh:
        header = fh.readline()
        head = header + fh.read(1 << 16)
    if not head.strip():
        raise ValueError(f"the log is empty: {where} has no header and no rows")
    if head.startswith(b"PAR1"):
        raise ValueError(f"`source` {where} looks like Parquet, not CSV: rename it to .parquet")
    nul = head.find(b"\x00")
    if nul >= 0:
        raise ValueError(
            f"`source` {where} is not a text CSV file: byte {nul} is NUL (binary data)"
        )
    try:
        text = header.decode("utf-8-sig")
    except UnicodeDecodeError:
        fields = next(csv.reader([header.decode("utf-8", "surrogateescape")]), [])
        bad = next((f for f in fields if f != f.encode("utf-8", "replace").decode()), "")
        raise ValueError(
            f"`source` {where} is not UTF-8: line 1 (the header) has "
            f"{_short(bad.encode('utf-8', 'surrogateescape') if bad else header)}"
        ) from None
    names = next(csv.reader([text.rstrip("\r\n")]), [])
    _check_names(names, feature_columns, where)
    import pyarrow as pa

    try:
        frame = pd.read_csv(path, engine="pyarrow")
    except (ValueError, pa.ArrowException) as exc:  # pandas' EmptyDataError, ArrowInvalid
        raise ValueError(
            f"`source` {where} is not a readable CSV file: {_short_text(exc)}"
        ) from None
    _check_utf8(frame, path)
    return frame


def _read_parquet(path: Path, feature_columns: Sequence[str] | None) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    where = repr(str(path))
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError) as exc:
        with path.open("rb") as fh:
            head = fh.read(4096)
        if not head:
            raise ValueError(f"the log is empty: {where} is an empty file") from None
        if b"\x00" not in head and b"," in head:
            raise ValueError(
                f"`source` {where} looks like CSV, not Parquet: rename it to .csv"
            ) from None
        raise ValueError(
            f"`source` {where} is not a readable Parquet file: {_short_text(exc)}"
        ) from None
    _check_names(list(schema.names), feature_columns, where)
    present = set(schema.names)
    wanted = [*OPE_COLUMNS, "decision_id", "episode_id", "step", "position"]
    if feature_columns is None:
        wanted += [c for c in schema.names if c not in REQUIRED_COLUMNS and c != "position"]
    else:
        wanted += list(feature_columns)
        wanted += list(OUTCOME_COLUMNS)
        wanted += [c for c in schema.names if c.startswith(MASK_PREFIX)]
    columns = list(dict.fromkeys(c for c in wanted if c in present))
    # Reading the low-cardinality string columns dictionary-encoded gives pandas categoricals:
    # validating 10M action names is then a lookup of a few dozen categories.
    strings = [
        c
        for c in ("action", "episode_id")
        if c in present
        and (
            pa.types.is_string(schema.field(c).type)
            or pa.types.is_large_string(schema.field(c).type)
        )
    ]
    try:
        table = pq.read_table(path, columns=columns, read_dictionary=strings)
    except (pa.ArrowException, OSError) as exc:
        raise ValueError(
            f"`source` {where} is not a readable Parquet file: {_short_text(exc)}"
        ) from None
    return table.to_pandas()


def _check_names(names: list[str], feature_columns: Sequence[str] | None, where: str) -> None:
    """Refuse two columns of one name, and schema names in the wrong case (``Position``)."""
    seen: dict[str, int] = {}
    for j, name in enumerate(names):
        if name in seen:
            raise ValueError(
                f"column `{name}` appears twice in {where} (columns {seen[name]} and {j}, "
                "counting from 0): column names must be distinct"
            )
        seen[name] = j
    reserved = {c.casefold(): c for c in (*REQUIRED_COLUMNS, *_OPTIONAL_COLUMNS)}
    chosen = set(feature_columns or ())
    for name in names:
        if name in chosen:
            continue  # asked for as a feature by name: the caller knows
        key = name.strip().casefold()
        meant = reserved.get(key)
        if meant is None and key.startswith(MASK_PREFIX) and not name.startswith(MASK_PREFIX):
            meant = MASK_PREFIX + name.strip()[len(MASK_PREFIX) :]
        if meant is not None and meant != name:
            raise ValueError(
                f"column `{name}` is not a schema column: did you mean {meant!r}? "
                "(column names are case-sensitive; rename it)"
            )


def _check_utf8(frame: pd.DataFrame, path: Path) -> None:
    """Refuse cells that are not UTF-8 (pyarrow reads such a column as bytes)."""
    first: tuple[int, int, Any] | None = None
    for j, name in enumerate(frame.columns):
        column = frame[name]
        if column.dtype != object or pd.api.types.infer_dtype(column, skipna=True) not in (
            "bytes",
            "mixed",
        ):
            continue
        for row, value in enumerate(column.tolist()):
            if first is not None and row > first[0]:
                break
            if isinstance(value, bytes):
                try:
                    value.decode("utf-8")
                except UnicodeDecodeError:
                    if first is None or (row, j) < first[:2]:
                        first = (row, j, value)
                    break
    if first is None:
        return
    row, j, value = first
    line = _first_bad_utf8_line(path)
    at = f" (line {line} of the file, the header being line 1)" if line is not None else ""
    raise ValueError(
        f"column `{frame.columns[j]}` must be UTF-8 text: row {row}{at} has {_short(value)}"
    )


def _first_bad_utf8_line(path: Path) -> int | None:
    """1-based line of the first byte that is not UTF-8, reading the file in blocks."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    newlines = 0
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            try:
                decoder.decode(block)
            except UnicodeDecodeError as exc:
                return newlines + block.count(b"\n", 0, exc.start) + 1
            newlines += block.count(b"\n")
    return None


def _csv_cell(path: Path, column: str, row: int) -> str | None:
    """The text of one cell of a CSV file, as written (for messages)."""
    try:
        cells = pd.read_csv(path, usecols=[column], dtype=str, keep_default_na=False)
        return str(cells[column].iloc[row])
    except (ValueError, IndexError, KeyError):
        return None


# --------------------------------------------------------------------------------------------
# Columns
# --------------------------------------------------------------------------------------------


def _short(value: Any) -> str:
    """A short repr for messages: escaped (never raw bytes), cut after :data:`_SHORT`."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    elif isinstance(value, np.generic):
        value = value.item()
    text = repr(value)
    return text if len(text) <= _SHORT else text[: _SHORT - 3] + "..."


def _short_text(exc: BaseException) -> str:
    """An exception's first line, with anything unprintable escaped, cut short."""
    lines = str(exc).splitlines()
    text = ascii(lines[0] if lines else type(exc).__name__)[1:-1]
    return text if len(text) <= 2 * _SHORT else text[: 2 * _SHORT - 3] + "..."


def _row_value(column: pd.Series, row: int) -> str:
    return _short(column.iloc[row])


def _refuse(column: pd.Series, name: str, bad: np.ndarray, what: str) -> None:
    row = int(np.argmax(bad))
    raise ValueError(f"column `{name}` {what}: row {row} has {_row_value(column, row)}")


def _refuse_non_finite(column: pd.Series, name: str, values: np.ndarray) -> None:
    bad = ~(np.abs(values) <= MAX_ABS_VALUE)  # NaN and infinities fail the comparison
    if bad.any():
        _refuse(
            column, name, bad, f"must be a finite number of magnitude at most {MAX_ABS_VALUE:g}"
        )


_SCALAR_KINDS = frozenset(
    ("string", "empty", "integer", "floating", "mixed-integer-float", "boolean", "decimal",
     "categorical", "datetime", "datetime64", "date", "timedelta", "timedelta64", "period")
)  # fmt: skip
"""``pd.api.types.infer_dtype`` results that hold no lists or structs"""


def _refuse_nested(column: pd.Series, name: str) -> None:
    """Refuse lists, arrays and structs (dicts) where a single value belongs."""
    if column.dtype != object or pd.api.types.infer_dtype(column, skipna=True) in _SCALAR_KINDS:
        return
    nested = np.fromiter(
        (isinstance(v, (list, tuple, dict, set, np.ndarray)) for v in column.tolist()),
        dtype=bool,
        count=len(column),
    )
    if nested.any():
        _refuse(column, name, nested, "must hold single values, not lists or structs")


def _refuse_booleans(column: pd.Series, name: str, what: str) -> None:
    if pd.api.types.is_bool_dtype(column.dtype):
        bad = column.notna().to_numpy()
    elif column.dtype == object:
        bad = np.fromiter(
            (isinstance(v, (bool, np.bool_)) for v in column.tolist()),
            dtype=bool,
            count=len(column),
        )
    else:
        return
    if bad.any():
        _refuse(column, name, bad, what)


def _read_float(column: pd.Series, name: str) -> np.ndarray:
    """The column as float64; entries that are not numbers become NaN (refused by callers)."""
    _refuse_nested(column, name)
    if isinstance(column.dtype, pd.CategoricalDtype):
        column = column.astype(object)
    if pd.api.types.is_bool_dtype(column.dtype) or not pd.api.types.is_numeric_dtype(column.dtype):
        column = pd.to_numeric(column, errors="coerce")
    return column.to_numpy(dtype=np.float64, na_value=np.nan)


def _read_index(
    column: pd.Series,
    name: str,
    *,
    high: int | None = None,
    what: str = "must hold non-negative integers below 2**63",
    source_text: SourceText | None = None,
) -> np.ndarray:
    """A column of non-negative integers (``position``, ``step``) as int64, at most ``high``."""
    _refuse_nested(column, name)
    limit = _INT64_LIMIT - 1 if high is None else high
    if pd.api.types.is_integer_dtype(column.dtype) and not column.isna().any():
        if pd.api.types.is_unsigned_integer_dtype(column.dtype):
            raw = column.to_numpy(dtype=np.uint64)
            bad = raw > np.uint64(limit)
            values = np.where(bad, 0, raw).astype(np.int64)
        else:
            values = column.to_numpy(dtype=np.int64)
            bad = (values < 0) | (values > limit)
        exact = True
    else:
        floats = _read_float(column, name)
        # float(limit) may round up to 2**63: compare below the limit exactly
        bad = ~(
            np.isfinite(floats)
            & (floats >= 0)
            & (np.floor(floats) == floats)
            & (floats < float(_INT64_LIMIT))
        )
        bad |= ~bad & (np.where(bad, 0, floats).astype(np.int64) > limit)
        values = np.where(bad, 0, floats).astype(np.int64)
        exact = False
    if bad.any():
        row = int(np.argmax(bad))
        shown = _row_value(column, row)
        value = column.iloc[row]
        if not exact and source_text is not None and _huge(value):
            # this float is not the number written in the file (2**63 + 1 reads as 2**63)
            text = source_text(name, row)
            shown = shown if text is None else _short(text)
        raise ValueError(f"column `{name}` {what}: row {row} has {shown}")
    return values


def _huge(value: Any) -> bool:
    """Whether ``value`` is a float too large to be an exact integer (at least 2**53)."""
    return isinstance(value, (float, np.floating)) and abs(float(value)) >= 2.0**53


def _read_actions(column: pd.Series, names: tuple[str, ...]) -> np.ndarray:
    n_actions = len(names)
    _refuse_nested(column, "action")
    if pd.api.types.is_numeric_dtype(column.dtype) and not pd.api.types.is_bool_dtype(column.dtype):
        floats = column.to_numpy(dtype=np.float64, na_value=np.nan)
        bad = ~(
            np.isfinite(floats)
            & (np.floor(floats) == floats)
            & (floats >= 0)
            & (floats < n_actions)
        )
        if bad.any():
            _refuse(column, "action", bad, f"must be an action index in [0, {n_actions - 1}]")
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
        _refuse(column, "action", bad, f"must name a known action ({shown}) or an index")
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
    _refuse_nested(column, "decision_id")
    missing = column.isna().to_numpy()
    if missing.any():
        row = int(np.argmax(missing))
        raise ValueError(
            f"column `decision_id` must not be missing: row {row} has {_row_value(column, row)}"
        )
    dup = column.duplicated(keep="first").to_numpy()
    if dup.any():
        row = int(np.argmax(dup))
        value = column.iloc[row]
        first = int(np.argmax((column == value).to_numpy()))
        raise ValueError(
            f"column `decision_id` must be unique: row {row} has {_short(value)}, "
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


def _check_magnitude(arr: np.ndarray, name: str, columns: Sequence[str] = ()) -> None:
    """Refuse entries beyond :data:`MAX_ABS_VALUE`, naming the index (and feature column)."""
    bad = np.abs(arr) > MAX_ABS_VALUE
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        where = f" (column {columns[idx[1]]!r})" if len(idx) == 2 and columns else ""
        raise ValueError(
            f"`{name}` must be at most {MAX_ABS_VALUE:g} in magnitude, got "
            f"{float(arr[idx])!r} at index {idx[0] if len(idx) == 1 else idx}{where}"
        )


def _as_float_array(value: Any, name: str, shape: tuple[int | None, ...]) -> np.ndarray:
    arr = check_array(value, name, shape=shape)
    if arr is value:  # never freeze the caller's own array: freeze a view of it
        arr = arr.view()
    arr.setflags(write=False)
    return arr
