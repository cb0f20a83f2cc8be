"""The decision store: one interface (a Protocol), SQL shared by the SQLite and PostgreSQL backends.

A store keeps every decision and every reward, durably: a call that adds records returns only
after they are committed, and whatever it returned is in the store after a crash. Retried
decisions are idempotent by the client's ``event_id``; rewards for an unknown decision are
refused as a whole batch. The store knows nothing about wait windows: the joiner
(:mod:`campaignrl.service.joiner`) decides what is late, defaulted and joined.

Pick a backend by URL with :func:`open_store`: ``sqlite:///decisions.db`` (a relative path;
``sqlite:////abs/path.db`` for an absolute one) or ``postgresql://user@host:port/db``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import operator
import queue
import threading
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from itertools import chain, repeat
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np

from campaignrl.logs.schema import BOOL_OUTCOME_COLUMNS, OUTCOME_COLUMNS
from campaignrl.service.records import DecisionRecord, RewardRecord

__all__ = [
    "SCHEMA_VERSION",
    "SQLStore",
    "DecisionStore",
    "GroupCommitStore",
    "PolicyVersionRow",
    "StoreCounts",
    "StoredDecision",
    "UnknownDecisionError",
    "open_store",
]

SCHEMA_VERSION = 2
"""version of the tables' layout, stored in the ``meta`` table. 1: the first layout; 2: the
rewards' nullable outcome columns (a store of version 1 gains them when opened)"""

_DECISION_COLUMNS = (
    "decision_id",
    "event_id",
    "customer_key",
    "created_at",
    "action",
    "action_name",
    "propensity",
    "probabilities",
    "features",
    "mask",
    "policy_version",
    "deferred",
    "activated_at",
)
_SELECT_DECISION = "SELECT " + ", ".join(f"d.{c}" for c in _DECISION_COLUMNS) + " FROM decisions d"
_INSERT_SIZES = (50, 10, 1)
"""rows per multi-row ``INSERT`` (a few statement shapes, each prepared once and cached;
50 x 13 parameters stay under SQLite's oldest limit of 999)"""
_NULLABLE = (12, 9, 1)
"""indexes in :data:`_DECISION_COLUMNS` of the nullable columns (activated_at, mask, event_id),
last first: one that is NULL in every row of a write is left out of its ``INSERT`` (its
default is NULL), as binding a ``None`` costs SQLite's module an adapter lookup (about
0.4 us a value, 100 per column and batch)"""


@functools.lru_cache(maxsize=128)
def _insert_sql(table: str, columns: tuple[str, ...], rows: int, keyed: bool, marker: str) -> str:
    """The ``INSERT`` of ``rows`` rows into ``columns`` of ``table``, in the backend's ``marker``.

    ``keyed`` (decisions): one row at least has an ``event_id``, and an event seen before
    inserts nothing. Without, NULLs never conflict and the upsert clause would cost SQLite a
    sixth of the insert's time.
    """
    row = f"({', '.join([marker] * len(columns))})"
    sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES " + ", ".join([row] * rows)
    return f"{sql} ON CONFLICT (event_id) DO NOTHING" if keyed else sql


def _group_sizes(n: int) -> list[int]:
    """``n`` rows as consecutive groups whose sizes are among :data:`_INSERT_SIZES`.

    Examples:
        >>> _group_sizes(73)
        [50, 10, 10, 1, 1, 1]
    """
    sizes: list[int] = []
    for size in _INSERT_SIZES:
        count, n = divmod(n, size)
        sizes += [size] * count
    return sizes


_CHUNK = 500
"""ids per ``IN (...)`` list (SQLite allows 32766 parameters; PostgreSQL 65535)"""


class UnknownDecisionError(KeyError):
    """A reward or an activation names a decision the store does not hold."""

    def __init__(self, decision_ids: Sequence[str]) -> None:
        self.decision_ids = tuple(decision_ids)
        shown = ", ".join(repr(d) for d in self.decision_ids[:5])
        more = f" and {len(self.decision_ids) - 5} more" if len(self.decision_ids) > 5 else ""
        self.message = f"unknown `decision_id`: {shown}{more}"
        super().__init__(self.message)

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return self.message


@dataclass(frozen=True)
class StoreCounts:
    """What the store holds (for metrics)."""

    decisions: int
    """decisions stored"""
    deferred: int
    """of which deferred"""
    pending_activation: int
    """deferred decisions not activated (yet)"""
    rewards: int
    """rewards stored (late ones included)"""
    late_rewards: int
    """rewards that arrived after their decision's window closed"""


class PolicyVersionRow(NamedTuple):
    """A policy version that served decisions, as registered in the store."""

    version: int
    """the version number (``DecisionRecord.policy_version``)"""
    action_names: tuple[str, ...]
    """its actions, in index order"""
    feature_names: tuple[str, ...]
    """its features, in order"""
    registered_at: float
    """unix seconds UTC of the first registration"""


class StoredDecision(NamedTuple):
    """A decision with the rewards stored for it, as the joiner reads them."""

    record: DecisionRecord
    """the decision"""
    rewards: tuple[RewardRecord, ...]
    """its rewards, in order of arrival (``received_at``, then storage order)"""
    step: int | None
    """0-based rank of the decision among all its customer's decisions (by time, then id);
    ``None`` unless asked for (``iter_active(steps=True)``)"""


@runtime_checkable
class DecisionStore(Protocol):
    """Where decisions and rewards are kept. Every method is safe to call from several threads."""

    def add_decisions(self, records: Sequence[DecisionRecord]) -> list[DecisionRecord]:
        """Store decisions; return, for each, the decision stored for it.

        Committed before returning (one transaction for the batch). A record whose
        ``event_id`` was seen before (earlier, or earlier in the same batch) stores nothing
        and returns the FIRST decision stored for that ``event_id``.

        Raises:
            ValueError: If a ``decision_id`` is already stored.
        """
        ...

    def get_decision(self, decision_id: str) -> DecisionRecord:
        """The stored decision ``decision_id``.

        Raises:
            UnknownDecisionError: If no such decision is stored.
        """
        ...

    def get_decisions(self, decision_ids: Sequence[str]) -> dict[str, DecisionRecord]:
        """The stored decisions among ``decision_ids``, by id (unknown ids are left out)."""
        ...

    def activation_times(self, decision_ids: Sequence[str]) -> dict[str, float | None]:
        """When each stored decision among ``decision_ids`` was activated, by id.

        ``None`` for a deferred decision not activated yet; unknown ids are left out. What a
        reward's lateness needs, without reading (and checking) the decisions' vectors.
        """
        ...

    def activate(self, decision_id: str, at: float) -> DecisionRecord:
        """Mark a deferred decision activated at ``at``; return the stored decision.

        Idempotent: a decision already active keeps its first activation time.

        Raises:
            UnknownDecisionError: If no such decision is stored.
        """
        ...

    def add_rewards(self, rewards: Sequence[RewardRecord]) -> list[RewardRecord]:
        """Store rewards (committed before returning, one transaction); return them.

        Raises:
            UnknownDecisionError: If any ``decision_id`` is unknown (naming it); then nothing
                of the batch is stored.
        """
        ...

    def rewards_for(self, decision_id: str) -> list[RewardRecord]:
        """The rewards stored for ``decision_id`` in order of arrival (empty if none)."""
        ...

    def counts(self) -> StoreCounts:
        """Counts of what is stored."""
        ...

    def closed_counts(self, activated_until: float) -> tuple[int, int]:
        """``(n, unrewarded)`` of the decisions activated at or before ``activated_until``.

        ``unrewarded`` counts those with no reward that is not late.
        """
        ...

    def iter_active(
        self,
        *,
        activated_until: float,
        activated_after: float | None = None,
        created_since: float | None = None,
        page_size: int = 2000,
        steps: bool = False,
    ) -> Iterator[StoredDecision]:
        """Active decisions with their rewards, read a page at a time.

        Those with ``activated_after < activated_at <= activated_until`` and
        ``created_at >= created_since`` (bounds that are ``None`` are open), ordered by
        ``created_at`` then ``decision_id``. With ``steps``, each comes with its rank among
        all its customer's decisions (whatever the bounds): one pass over the whole table,
        for an export; without, ``step`` is ``None`` and only the selected rows are read.
        """
        ...

    def add_policy_version(
        self,
        version: int,
        action_names: Sequence[str],
        feature_names: Sequence[str],
        at: float,
    ) -> PolicyVersionRow:
        """Register a policy version that serves (idempotent); return the stored row.

        The decision-log export reads the action and feature names from here, so a store
        can be exported without the policy artifact.

        Raises:
            ValueError: If ``version`` is registered with other action or feature names.
        """
        ...

    def policy_versions(self) -> list[PolicyVersionRow]:
        """Every registered policy version, in version order."""
        ...

    def close(self) -> None:
        """Release the connections. The store is not usable afterwards."""
        ...


def open_store(url: str) -> DecisionStore:
    """Open the store at ``url``, creating its tables on first use.

    Args:
        url: ``sqlite:///<path>`` (relative; ``sqlite:////<abs path>``) or
            ``postgresql://...`` / ``postgres://...`` (a libpq connection URI).

    Raises:
        ValueError: If the URL names no supported backend or no path (naming ``--store``).

    Examples:
        >>> open_store("mysql://db/decisions")
        Traceback (most recent call last):
        ...
        ValueError: `--store` must be sqlite:///<path> or postgresql://..., got 'mysql://db/decisions'
    """
    if not isinstance(url, str):
        raise TypeError(f"`--store` must be a URL string, got {type(url).__name__} {url!r}")
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :]
        if not path or path.endswith("/") or path == ":memory:":
            raise ValueError(
                f"`--store` must name a database file, as in sqlite:///decisions.db, got {url!r}"
            )
        from campaignrl.service.sqlite_store import SQLiteStore

        return SQLiteStore(path)
    if url.startswith(("postgresql://", "postgres://")):
        from campaignrl.service.postgres_store import PostgresStore

        return PostgresStore(url)
    raise ValueError(f"`--store` must be sqlite:///<path> or postgresql://..., got {url!r}")


# ------------------------------------------------------------------ the SQL both backends share


def _outcome_columns(real: str, boolean: str) -> list[tuple[str, str]]:
    """``(name, type)`` of the rewards' outcome columns; NULL is "not reported"."""
    return [(c, boolean if c in BOOL_OUTCOME_COLUMNS else real) for c in OUTCOME_COLUMNS]


def schema_statements(*, real: str, blob: str, boolean: str, serial: str) -> list[str]:
    """The ``CREATE ... IF NOT EXISTS`` statements of the tables, in the backend's types.

    A new store is laid out at :data:`SCHEMA_VERSION`; an existing one is left as it is (see
    :func:`upgrade_statements`).

    Args:
        real: The type of a float64 (``REAL``, ``DOUBLE PRECISION``).
        blob: The type of raw bytes (``BLOB``, ``BYTEA``).
        boolean: The type of a flag (``INTEGER``, ``BOOLEAN``).
        serial: The definition of an auto-increment primary key column.
    """
    return [
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        f"""CREATE TABLE IF NOT EXISTS decisions (
            decision_id TEXT PRIMARY KEY,
            event_id TEXT UNIQUE,
            customer_key TEXT NOT NULL,
            created_at {real} NOT NULL,
            action INTEGER NOT NULL,
            action_name TEXT NOT NULL,
            propensity {real} NOT NULL,
            probabilities {blob} NOT NULL,
            features {blob} NOT NULL,
            mask {blob},
            policy_version INTEGER NOT NULL,
            deferred {boolean} NOT NULL,
            activated_at {real}
        )""",
        "CREATE INDEX IF NOT EXISTS decisions_created ON decisions (created_at, decision_id)",
        # No index on customer_key: a keyed hash, so each row inserted would dirty a random
        # page of it (about one page written to the WAL per decision, the largest cost of a
        # durable batch). The customer's step is ranked at export instead (iter_active), and
        # stores laid out before lose the index: nothing else reads it.
        "DROP INDEX IF EXISTS decisions_customer",
        "CREATE INDEX IF NOT EXISTS decisions_activated ON decisions (activated_at)",
        f"""CREATE TABLE IF NOT EXISTS rewards (
            id {serial},
            decision_id TEXT NOT NULL REFERENCES decisions (decision_id),
            reward {real} NOT NULL,
            received_at {real} NOT NULL,
            late {boolean} NOT NULL,
            {", ".join(f"{name} {type_}" for name, type_ in _outcome_columns(real, boolean))}
        )""",
        "CREATE INDEX IF NOT EXISTS rewards_decision ON rewards (decision_id, received_at)",
        f"""CREATE TABLE IF NOT EXISTS policy_versions (
            version INTEGER PRIMARY KEY,
            action_names TEXT NOT NULL,
            feature_names TEXT NOT NULL,
            registered_at {real} NOT NULL
        )""",
        "INSERT INTO meta (key, value) VALUES ('schema_version', "
        f"'{SCHEMA_VERSION}') ON CONFLICT (key) DO NOTHING",
    ]


def check_schema_version(stored: Any, where: str) -> int:
    """The layout version of a store, refusing one this campaignrl cannot read or upgrade.

    Returns:
        The stored version, from 1 to :data:`SCHEMA_VERSION`; below it, the backend runs
        :func:`upgrade_statements` before using the store.

    Raises:
        ValueError: If ``stored`` (the ``meta`` row) is not a version from 1 to
            :data:`SCHEMA_VERSION`: a store laid out by a newer campaignrl is refused, as
            this one would not know what its columns mean.

    Examples:
        >>> check_schema_version("1", "'d.db'")
        1
        >>> check_schema_version("3", "'d.db'")
        Traceback (most recent call last):
        ...
        ValueError: store 'd.db' has schema version '3'; this campaignrl reads versions 1 to 2
    """
    text = str(stored)
    version = int(text) if text.isascii() and text.isdigit() else 0
    if not 1 <= version <= SCHEMA_VERSION:
        raise ValueError(
            f"store {where} has schema version {stored!r}; this campaignrl reads versions "
            f"1 to {SCHEMA_VERSION}"
        )
    return version


def upgrade_statements(
    stored: int, *, real: str, boolean: str, columns: Collection[str] | None
) -> list[str]:
    """The statements that bring a store of layout ``stored`` to :data:`SCHEMA_VERSION`.

    Run them in the transaction that read ``stored`` (with the tables locked against another
    process doing the same), then the store is at :data:`SCHEMA_VERSION`. Version 2 adds
    the rewards' nullable outcome columns: the rewards stored before report no outcome.

    Args:
        stored: The version :func:`check_schema_version` returned.
        real: The type of a float64.
        boolean: The type of a flag.
        columns: The rewards table's columns now (SQLite, which has no ``ADD COLUMN IF NOT
            EXISTS``: read them with ``PRAGMA table_info``), or ``None`` to add the columns
            with ``IF NOT EXISTS`` (PostgreSQL).

    Examples:
        >>> upgrade_statements(1, real="REAL", boolean="INTEGER", columns=["id", "opened"])[0]
        'ALTER TABLE rewards ADD COLUMN purchased INTEGER'
        >>> upgrade_statements(2, real="REAL", boolean="INTEGER", columns=None)
        []
    """
    if stored >= SCHEMA_VERSION:
        return []
    out: list[str] = []
    if stored < 2:
        for name, type_ in _outcome_columns(real, boolean):
            if columns is None:
                out.append(f"ALTER TABLE rewards ADD COLUMN IF NOT EXISTS {name} {type_}")
            elif name not in columns:
                out.append(f"ALTER TABLE rewards ADD COLUMN {name} {type_}")
    out.append(f"UPDATE meta SET value = '{SCHEMA_VERSION}' WHERE key = 'schema_version'")
    return out


_FLOAT64 = np.dtype(np.float64)
_BOOL = np.dtype(np.bool_)
_NATIVE_LE = _FLOAT64 == np.dtype("<f8")
_RAW_DTYPES = (_BOOL, _FLOAT64) if _NATIVE_LE else (_BOOL,)
"""dtypes whose ``tobytes`` are :func:`encode_array`'s bytes: a ``bool`` vector's one 0/1
byte per entry, as ``astype(uint8)`` gives, and a native float64 vector's on a little-endian
machine only (elsewhere ``float64`` is not ``<f8``)"""


def encode_array(array: np.ndarray | None) -> bytes | None:
    """Raw little-endian bytes of a float64 or bool vector (never pickle).

    Examples:
        >>> list(encode_array(np.array([True, False])))
        [1, 0]
        >>> encode_array(np.array([1.0], dtype=">f8")) == np.array([1.0], dtype="<f8").tobytes()
        True
    """
    if array is None:
        return None
    dtype = array.dtype
    if dtype is _BOOL or (dtype is _FLOAT64 and _NATIVE_LE):  # one C call, for records' dtypes
        return array.tobytes()
    if dtype == np.bool_:
        return array.astype(np.uint8).tobytes()
    return array.astype("<f8", copy=False).tobytes()


def decode_floats(raw: bytes | memoryview) -> np.ndarray:
    """The float64 vector of :func:`encode_array`."""
    return np.frombuffer(bytes(raw), dtype="<f8").astype(np.float64)


def decode_mask(raw: bytes | memoryview | None) -> np.ndarray | None:
    """The bool vector of :func:`encode_array`, or ``None``."""
    if raw is None:
        return None
    return np.frombuffer(bytes(raw), dtype=np.uint8).astype(bool)


_NONE_TYPE = type(None)
_DTYPE = operator.attrgetter("dtype")
_TOBYTES = np.ndarray.tobytes


def _encoded(arrays: list[Any], native: bool) -> list[Any]:
    """:func:`encode_array` of each of ``arrays`` (as ``bytearray`` if ``native``).

    Vectors of one dtype that :data:`_RAW_DTYPES` holds are encoded by one ``tobytes``
    each, mapped in C (the records' arrays: row views of the decider's batch matrices).
    """
    kinds = set(map(type, arrays))
    if kinds == {_NONE_TYPE}:
        return arrays
    if kinds == {np.ndarray}:
        dtypes = list(map(_DTYPE, arrays))
        if dtypes[0] in _RAW_DTYPES and dtypes.count(dtypes[0]) == len(dtypes):
            raw = map(_TOBYTES, arrays)
            return list(map(bytearray, raw)) if native else list(raw)
    encoded = list(map(encode_array, arrays))
    return [None if b is None else bytearray(b) for b in encoded] if native else encoded


_DECISION_FIELDS = operator.itemgetter(*_DECISION_COLUMNS)
_BLOB_COLUMNS = (7, 8, 9)
"""indexes in :data:`_DECISION_COLUMNS` of probabilities, features, mask"""
_FLAG_COLUMN = 11
"""index of ``deferred`` in :data:`_DECISION_COLUMNS`"""


def _decision_params(
    records: Sequence[DecisionRecord], *, native: bool = False
) -> tuple[tuple[str, ...], list[Any]]:
    """The columns to insert and the values of ``records``, row after row in one list.

    Built by C loops (``map``, slices) over the records' field dicts: the writer thread
    holds the GIL while it builds and binds them, and the event loop waits for it. The
    nullable columns NULL in every record are left out (see :data:`_NULLABLE`).

    Args:
        records: The decisions.
        native: Flags as ints and blobs as ``bytearray``: the only types besides floats and
            strings that SQLite's module binds without an adapter lookup (a bool, bytes or
            None costs it 0.4 to 0.7 us a value). The stored values are the same (SQLite
            stores a flag as an integer and either as the same BLOB).

    Examples:
        >>> r = DecisionRecord("d1", None, "c1", 2.0, 0, "no_contact", 1.0, np.array([1.0]),
        ...                    np.array([0.5]), None, 3, False, None)
        >>> columns, values = _decision_params([r], native=True)
        >>> [c for c in _DECISION_COLUMNS if c not in columns]
        ['event_id', 'mask']
        >>> values[-2:]
        [0, 2.0]
    """
    n, width = len(records), len(_DECISION_COLUMNS)
    # The dataclass's fields are plain instance attributes: its __dict__ holds them all.
    values = list(chain.from_iterable(map(_DECISION_FIELDS, map(vars, records))))
    for j in _BLOB_COLUMNS:
        values[j::width] = _encoded(values[j::width], native)
    if native:
        values[_FLAG_COLUMN::width] = map(int, values[_FLAG_COLUMN::width])
    return _without_null_columns(_DECISION_COLUMNS, values, _NULLABLE, n)


def _without_null_columns(
    columns: tuple[str, ...], values: list[Any], nullable: Sequence[int], n: int
) -> tuple[tuple[str, ...], list[Any]]:
    """``columns`` and the ``n`` rows of ``values``, less the ``nullable`` ones NULL in all rows.

    ``nullable`` holds indexes in ``columns``, last first; ``values`` is changed in place.
    """
    width = len(columns)
    for j in nullable:  # last first: the indexes of the columns before stay valid
        if values[j::width].count(None) == n:
            del values[j::width]
            columns = columns[:j] + columns[j + 1 :]
            width -= 1
    return columns, values


def _decision_of(row: Sequence[Any]) -> DecisionRecord:
    return DecisionRecord(
        decision_id=row[0],
        event_id=row[1],
        customer_key=row[2],
        created_at=float(row[3]),
        action=int(row[4]),
        action_name=row[5],
        propensity=float(row[6]),
        probabilities=decode_floats(row[7]),
        features=decode_floats(row[8]),
        mask=decode_mask(row[9]),
        policy_version=int(row[10]),
        deferred=bool(row[11]),
        activated_at=None if row[12] is None else float(row[12]),
    )


_REWARD_COLUMNS = ("decision_id", "reward", "received_at", "late", *OUTCOME_COLUMNS)
_REWARD_FIELDS = operator.itemgetter("decision_id", "reward", "received_at", "late", "outcomes")
_REWARD_NULLABLE = tuple(range(len(_REWARD_COLUMNS) - 1, 3, -1))
"""indexes in :data:`_REWARD_COLUMNS` of the outcome columns, last first (see :data:`_NULLABLE`)"""
_NO_OUTCOMES = (None,) * len(OUTCOME_COLUMNS)


def _reward_params(
    rewards: Sequence[RewardRecord], *, native: bool = False
) -> tuple[tuple[str, ...], list[Any]]:
    """The columns to insert and the values of ``rewards``, row after row in one list.

    As :func:`_decision_params`: the outcome columns no reward reports are left out, and
    ``native`` binds the ``late`` flag as an int.

    Examples:
        >>> r = RewardRecord("d1", 2.5, 3.0, outcomes={"opened": True})
        >>> columns, values = _reward_params([r, RewardRecord("d2", 1.0, 4.0)], native=True)
        >>> columns
        ('decision_id', 'reward', 'received_at', 'late', 'opened')
        >>> values
        ['d1', 2.5, 3.0, 0, True, 'd2', 1.0, 4.0, 0, None]
    """
    n = len(rewards)
    values = list(chain.from_iterable(map(_REWARD_FIELDS, map(vars, rewards))))
    reports = values[4::5]
    del values[4::5]
    if native:
        values[3::4] = map(int, values[3::4])
    if reports.count(None) == n:  # the usual post: a reward without outcomes
        return _REWARD_COLUMNS[:4], values
    rows = zip(*[iter(values)] * 4, strict=True)
    values = [
        value
        for row, report in zip(rows, reports, strict=True)
        for value in chain(
            row, _NO_OUTCOMES if report is None else (report.get(c) for c in OUTCOME_COLUMNS)
        )  # None: NULL, not reported
    ]
    return _without_null_columns(_REWARD_COLUMNS, values, _REWARD_NULLABLE, n)


def _reward_of(row: Sequence[Any]) -> RewardRecord:
    outcomes = {
        c: (bool(v) if c in BOOL_OUTCOME_COLUMNS else float(v))  # SQLite's flags are 0/1
        for c, v in zip(OUTCOME_COLUMNS, row[4:], strict=True)
        if v is not None
    }
    return RewardRecord(
        decision_id=row[0],
        reward=float(row[1]),
        received_at=float(row[2]),
        late=bool(row[3]),
        outcomes=outcomes or None,
    )


_SELECT_VERSION = "SELECT version, action_names, feature_names, registered_at FROM policy_versions"


def _version_of(row: Sequence[Any]) -> PolicyVersionRow:
    return PolicyVersionRow(
        int(row[0]), tuple(json.loads(row[1])), tuple(json.loads(row[2])), float(row[3])
    )


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _finite_time(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"`{name}` must be a number, got {type(value).__name__} {value!r}")
    if not math.isfinite(float(value)):
        raise ValueError(f"`{name}` must be finite, got {value!r}")
    return float(value)


class SQLStore(ABC):
    """The store's logic in SQL that SQLite and PostgreSQL both run.

    A backend supplies connections (:meth:`_write` and :meth:`_read`, context managers that
    yield a DB-API cursor inside a transaction, committed on a clean exit and rolled back on
    an exception), its parameter marker and how to spot a duplicate key.
    SQL here is written with ``?`` markers; :meth:`_q` rewrites them for the backend.
    """

    _MARKER = "?"
    _NATIVE_PARAMS = False
    """bind flags as ints and blobs as ``bytearray`` (see :func:`_decision_params`)"""

    @abstractmethod
    def _write(self) -> AbstractContextManager[Any]:
        """A cursor in a write transaction, committed durably on exit."""

    @abstractmethod
    def _read(self) -> AbstractContextManager[Any]:
        """A cursor for reading."""

    @abstractmethod
    def _is_unique_violation(self, error: Exception) -> bool:
        """Whether ``error`` is the backend's unique-constraint violation."""

    @abstractmethod
    def close(self) -> None:
        """Release the connections."""

    def _q(self, sql: str) -> str:
        return sql if self._MARKER == "?" else sql.replace("?", self._MARKER)

    def _marks(self, n: int) -> str:
        return ", ".join([self._MARKER] * n)

    # -------------------------------------------------------------------------- decisions

    def add_decisions(self, records: Sequence[DecisionRecord]) -> list[DecisionRecord]:
        """See :meth:`DecisionStore.add_decisions`."""
        records = list(records)
        if not all(map(isinstance, records, repeat(DecisionRecord))):
            for i, record in enumerate(records):
                if not isinstance(record, DecisionRecord):
                    raise TypeError(
                        f"`records[{i}]` must be a DecisionRecord, got {type(record).__name__}"
                    )
        if not records:
            return []
        columns, values = _decision_params(records, native=self._NATIVE_PARAMS)
        width = len(columns)
        events = values[1::width] if columns[1] == "event_id" else None
        stored: dict[str, DecisionRecord] = {}
        try:
            with self._write() as cur:
                # The unique index on event_id makes a concurrent retry of the same event
                # wait for the first one's commit and then do nothing: never two rows.
                # Multi-row INSERTs, in order (an event_id repeated later in the batch inserts
                # nothing): SQLite's executemany gives up and takes back the GIL at every row,
                # and each time waits for a busy event loop to hand it over; one statement per
                # 50 rows measured a third more rows per second under load than executemany.
                inserted = start = 0
                for size in _group_sizes(len(records)):
                    keyed = events is not None and events[start : start + size].count(None) < size
                    cur.execute(
                        _insert_sql("decisions", columns, size, keyed, self._MARKER),
                        values[start * width : (start + size) * width],
                    )
                    inserted += cur.rowcount
                    start += size
                if events is not None and inserted != len(records):
                    keys = [e for e in dict.fromkeys(events) if e is not None]
                    for chunk in _chunks(keys):
                        cur.execute(
                            self._q(
                                f"{_SELECT_DECISION} WHERE d.event_id IN "
                                f"({self._marks(len(chunk))})"
                            ),
                            list(chunk),
                        )
                        for row in cur.fetchall():
                            stored[row[1]] = _decision_of(row)  # row[1]: its event_id
        except Exception as error:
            if self._is_unique_violation(error):
                ids = [r.decision_id for r in records]
                raise ValueError(
                    f"`decision_id` already stored (one of {ids[:5]}): ids must be unique"
                ) from error
            raise
        if not stored:
            return records  # a list of our own
        return [stored.get(r.event_id, r) if r.event_id is not None else r for r in records]

    def get_decision(self, decision_id: str) -> DecisionRecord:
        """See :meth:`DecisionStore.get_decision`."""
        found = self.get_decisions([decision_id])
        if decision_id not in found:
            raise UnknownDecisionError([decision_id])
        return found[decision_id]

    def get_decisions(self, decision_ids: Sequence[str]) -> dict[str, DecisionRecord]:
        """See :meth:`DecisionStore.get_decisions`."""
        ids = list(dict.fromkeys(decision_ids))
        found: dict[str, DecisionRecord] = {}
        with self._read() as cur:
            for chunk in _chunks(ids):
                cur.execute(
                    self._q(
                        f"{_SELECT_DECISION} WHERE d.decision_id IN ({self._marks(len(chunk))})"
                    ),
                    list(chunk),
                )
                for row in cur.fetchall():
                    found[row[0]] = _decision_of(row)
        return found

    def activation_times(self, decision_ids: Sequence[str]) -> dict[str, float | None]:
        """See :meth:`DecisionStore.activation_times`."""
        found: dict[str, float | None] = {}
        with self._read() as cur:
            for chunk in _chunks(list(dict.fromkeys(decision_ids))):
                cur.execute(
                    self._q(
                        "SELECT decision_id, activated_at FROM decisions WHERE decision_id IN "
                        f"({self._marks(len(chunk))})"
                    ),
                    list(chunk),
                )
                for decision_id, activated_at in cur.fetchall():
                    found[decision_id] = None if activated_at is None else float(activated_at)
        return found

    def activate(self, decision_id: str, at: float) -> DecisionRecord:
        """See :meth:`DecisionStore.activate`."""
        at = _finite_time(at, "at")
        with self._write() as cur:
            cur.execute(
                self._q(
                    "UPDATE decisions SET activated_at = ? "
                    "WHERE decision_id = ? AND activated_at IS NULL"
                ),
                (at, decision_id),
            )
            cur.execute(self._q(f"{_SELECT_DECISION} WHERE d.decision_id = ?"), (decision_id,))
            row = cur.fetchone()
        if row is None:
            raise UnknownDecisionError([decision_id])
        return _decision_of(row)

    # ---------------------------------------------------------------------------- rewards

    def add_rewards(self, rewards: Sequence[RewardRecord]) -> list[RewardRecord]:
        """See :meth:`DecisionStore.add_rewards`."""
        rewards = list(rewards)
        if not all(map(isinstance, rewards, repeat(RewardRecord))):
            for i, reward in enumerate(rewards):
                if not isinstance(reward, RewardRecord):
                    raise TypeError(
                        f"`rewards[{i}]` must be a RewardRecord, got {type(reward).__name__}"
                    )
        if not rewards:
            return []
        columns, values = _reward_params(rewards, native=self._NATIVE_PARAMS)
        width = len(columns)
        ids = list(dict.fromkeys(values[::width]))  # the decision_id column
        with self._write() as cur:
            known: set[str] = set()
            for chunk in _chunks(ids):
                cur.execute(
                    self._q(
                        "SELECT decision_id FROM decisions WHERE decision_id IN "
                        f"({self._marks(len(chunk))})"
                    ),
                    list(chunk),
                )
                known.update(row[0] for row in cur.fetchall())
            missing = [d for d in ids if d not in known]
            if missing:
                raise UnknownDecisionError(missing)  # rolls the transaction back: nothing stored
            # Multi-row INSERTs, in order (the ids count up as executemany's did): see
            # add_decisions.
            start = 0
            for size in _group_sizes(len(rewards)):
                cur.execute(
                    _insert_sql("rewards", columns, size, False, self._MARKER),
                    values[start * width : (start + size) * width],
                )
                start += size
        return rewards

    def rewards_for(self, decision_id: str) -> list[RewardRecord]:
        """See :meth:`DecisionStore.rewards_for`."""
        with self._read() as cur:
            return self._rewards_of(cur, [decision_id]).get(decision_id, [])

    def _rewards_of(self, cur: Any, decision_ids: Sequence[str]) -> dict[str, list[RewardRecord]]:
        out: dict[str, list[RewardRecord]] = {}
        for chunk in _chunks(list(decision_ids)):
            cur.execute(
                self._q(
                    f"SELECT {', '.join(_REWARD_COLUMNS)} FROM rewards "
                    f"WHERE decision_id IN ({self._marks(len(chunk))}) ORDER BY received_at, id"
                ),
                list(chunk),
            )
            for row in cur.fetchall():
                out.setdefault(row[0], []).append(_reward_of(row))
        return out

    # -------------------------------------------------------------------- policy versions

    def add_policy_version(
        self,
        version: int,
        action_names: Sequence[str],
        feature_names: Sequence[str],
        at: float,
    ) -> PolicyVersionRow:
        """See :meth:`DecisionStore.add_policy_version`."""
        if isinstance(version, bool) or not isinstance(version, int):
            raise TypeError(f"`version` must be an int, got {type(version).__name__} {version!r}")
        actions = [str(a) for a in action_names]
        features = [str(f) for f in feature_names]
        at = _finite_time(at, "at")
        with self._write() as cur:
            cur.execute(
                self._q(
                    "INSERT INTO policy_versions (version, action_names, feature_names, "
                    "registered_at) VALUES (?, ?, ?, ?) ON CONFLICT (version) DO NOTHING"
                ),
                (version, json.dumps(actions), json.dumps(features), at),
            )
            cur.execute(self._q(f"{_SELECT_VERSION} WHERE version = ?"), (version,))
            row = _version_of(cur.fetchone())
        if row.action_names != tuple(actions) or row.feature_names != tuple(features):
            raise ValueError(
                f"policy version {version} is registered with actions {list(row.action_names)} "
                f"and features {list(row.feature_names)}, got {actions} and {features}"
            )
        return row

    def policy_versions(self) -> list[PolicyVersionRow]:
        """See :meth:`DecisionStore.policy_versions`."""
        with self._read() as cur:
            cur.execute(f"{_SELECT_VERSION} ORDER BY version")
            return [_version_of(row) for row in cur.fetchall()]

    # ----------------------------------------------------------------------------- reading

    def counts(self) -> StoreCounts:
        """See :meth:`DecisionStore.counts`."""
        with self._read() as cur:
            cur.execute(
                "SELECT (SELECT COUNT(*) FROM decisions), "
                "(SELECT COUNT(*) FROM decisions WHERE deferred), "
                "(SELECT COUNT(*) FROM decisions WHERE activated_at IS NULL), "
                "(SELECT COUNT(*) FROM rewards), "
                "(SELECT COUNT(*) FROM rewards WHERE late)"
            )
            row = cur.fetchone()
        return StoreCounts(*(int(v) for v in row))

    def closed_counts(self, activated_until: float) -> tuple[int, int]:
        """See :meth:`DecisionStore.closed_counts`."""
        until = _finite_time(activated_until, "activated_until")
        with self._read() as cur:
            cur.execute(
                self._q(
                    "SELECT COUNT(*), COALESCE(SUM(CASE WHEN NOT EXISTS ("
                    "SELECT 1 FROM rewards r WHERE r.decision_id = d.decision_id AND NOT r.late"
                    ") THEN 1 ELSE 0 END), 0) FROM decisions d "
                    "WHERE d.activated_at IS NOT NULL AND d.activated_at <= ?"
                ),
                (until,),
            )
            n, unrewarded = cur.fetchone()
        return int(n), int(unrewarded)

    def iter_active(
        self,
        *,
        activated_until: float,
        activated_after: float | None = None,
        created_since: float | None = None,
        page_size: int = 2000,
        steps: bool = False,
    ) -> Iterator[StoredDecision]:
        """See :meth:`DecisionStore.iter_active`."""
        until = _finite_time(activated_until, "activated_until")
        # Without a lower bound most rows qualify, and the planner's pick of the activation
        # index meant sorting every activated row again for each page (35 s for 200,000
        # rows); the unary + keeps it off that index, so pages walk the created index in
        # order. With a lower bound the few newly activated rows are best found by it.
        activated = "d.activated_at" if activated_after is not None else "+d.activated_at"
        where = [f"{activated} IS NOT NULL", f"{activated} <= ?"]
        params: list[Any] = [until]
        if activated_after is not None:
            where.append("d.activated_at > ?")
            params.append(_finite_time(activated_after, "activated_after"))
        if created_since is not None:
            where.append("d.created_at >= ?")
            params.append(_finite_time(created_since, "created_since"))
        if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1:
            raise ValueError(f"`page_size` must be an int >= 1, got {page_size!r}")
        if steps:
            yield from self._iter_with_steps(where, params, page_size)
            return
        base = f"{_SELECT_DECISION} WHERE {' AND '.join(where)}"
        last: tuple[float, str] | None = None
        while True:
            sql, args = base, list(params)
            if last is not None:  # keyset pagination: pages stay cheap however deep
                sql += " AND (d.created_at > ? OR (d.created_at = ? AND d.decision_id > ?))"
                args += [last[0], last[0], last[1]]
            sql += f" ORDER BY d.created_at, d.decision_id LIMIT {int(page_size)}"
            with self._read() as cur:
                cur.execute(self._q(sql), args)
                rows = cur.fetchall()
                rewards = self._rewards_of(cur, [row[0] for row in rows])
            for row in rows:
                record = _decision_of(row)
                yield StoredDecision(record, tuple(rewards.get(record.decision_id, ())), None)
            if len(rows) < page_size:
                return
            last = (float(rows[-1][3]), rows[-1][0])

    def _iter_with_steps(
        self, where: list[str], params: list[Any], page_size: int
    ) -> Iterator[StoredDecision]:
        """:meth:`iter_active` with steps: one statement, so one snapshot of the table.

        The step is ``ROW_NUMBER() OVER (PARTITION BY customer_key ORDER BY created_at,
        decision_id) - 1`` over every decision (SQLite >= 3.25 and PostgreSQL both run window
        functions): one sort of the table's three key columns per export, instead of an index
        on ``customer_key`` that every insert would pay for. The rows are read whole inside
        the read transaction (the export holds them all anyway), then yielded.
        """
        sql = (
            "WITH s AS (SELECT decision_id AS sid, ROW_NUMBER() OVER ("
            "PARTITION BY customer_key ORDER BY created_at, decision_id) - 1 AS step "
            f"FROM decisions) {_SELECT_DECISION.replace(' FROM', ', s.step FROM', 1)} "
            f"JOIN s ON s.sid = d.decision_id WHERE {' AND '.join(where)} "
            "ORDER BY d.created_at, d.decision_id"
        )
        out: list[StoredDecision] = []
        with self._read() as cur:
            cur.execute(self._q(sql), params)
            # The rewards of each page come through a second cursor of the same transaction
            # while the first one is still being read.
            side = cur.connection.cursor()
            try:
                while rows := cur.fetchmany(page_size):
                    rewards = self._rewards_of(side, [row[0] for row in rows])
                    out.extend(
                        StoredDecision(
                            (record := _decision_of(row)),
                            tuple(rewards.get(record.decision_id, ())),
                            int(row[-1]),
                        )
                        for row in rows
                    )
            finally:
                side.close()
        yield from out


# ------------------------------------------------------------------------------ group commit


class _Pending:
    """One caller's write waiting for a group commit.

    A thread waits on ``wake``; a coroutine awaits ``future`` (of the event loop ``loop``).
    """

    __slots__ = ("error", "finished", "future", "items", "kind", "loop", "result", "wake")

    def __init__(
        self,
        kind: str,
        items: list[Any],
        loop: asyncio.AbstractEventLoop | None = None,
        future: asyncio.Future[list[Any]] | None = None,
    ) -> None:
        self.kind = kind
        self.items = items
        self.result: list[Any] = []
        self.error: BaseException | None = None
        self.finished = False
        self.wake = threading.Event()
        self.loop = loop
        self.future = future


def _settle(done: list[_Pending]) -> None:
    """Resolve the futures of finished async writers (in their event loop's thread)."""
    for pending in done:
        future = pending.future
        if future is None or future.done():  # cancelled: the records are committed anyway
            continue
        if pending.error is not None:
            future.set_exception(pending.error)
        else:
            future.set_result(pending.result)


class GroupCommitStore:
    """A store whose concurrent writes share transactions (group commit); reads pass through.

    A durable commit costs a disk flush (milliseconds); writers that arrive while one flush
    is under way queue up, and the next flush commits all of them in one transaction. One
    writer flushes at a time (the leader): a thread calling :meth:`add_decisions` or
    :meth:`add_rewards` leads when nobody does, then hands over to the next waiting thread;
    coroutines (:meth:`add_decisions_async`, :meth:`add_rewards_async`, for an event loop
    that must not block) are flushed by one writer thread of the store's own, started on
    first use, which wakes them with one callback per flush. Every caller still returns only
    after its own records are committed, with its own result or error: when a merged batch
    fails (an unknown decision id in one caller's rewards), each caller's part is retried
    alone, so only the guilty caller gets the error.

    Args:
        store: The store that commits.
        max_batch: Most callers merged into one transaction.

    Examples:
        >>> import tempfile, pathlib
        >>> from campaignrl.service.sqlite_store import SQLiteStore
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     store = GroupCommitStore(SQLiteStore(pathlib.Path(tmp) / "d.db"))
        ...     print(store.counts().decisions, store.commits)
        ...     store.close()
        0 0
    """

    def __init__(self, store: DecisionStore, *, max_batch: int = 256) -> None:
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise ValueError(f"`max_batch` must be an int >= 1, got {max_batch!r}")
        self.store = store
        self.max_batch = max_batch
        self.commits = 0
        """transactions committed (fewer than write calls when calls were merged)"""
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._queue: list[_Pending] = []
        self._flushing = False
        self._writer: threading.Thread | None = None
        # One item per hand-over of the lead to the writer (or to stop it): a C queue, far
        # cheaper to signal than a threading.Event on every flush.
        self._writer_wake: queue.SimpleQueue[None] = queue.SimpleQueue()
        self._writer_stop = False
        self._closing = False

    def add_decisions(self, records: Sequence[DecisionRecord]) -> list[DecisionRecord]:
        """See :meth:`DecisionStore.add_decisions` (merged with concurrent callers)."""
        return self._submit("decisions", list(records))

    def add_rewards(self, rewards: Sequence[RewardRecord]) -> list[RewardRecord]:
        """See :meth:`DecisionStore.add_rewards` (merged with concurrent callers)."""
        return self._submit("rewards", list(rewards))

    async def add_decisions_async(self, records: Sequence[DecisionRecord]) -> list[DecisionRecord]:
        """:meth:`add_decisions` for a coroutine: the event loop runs on during the commit.

        Returns once the records are committed. Cancelling the caller does not withdraw
        them: a write once queued is committed.
        """
        return await self._submit_async("decisions", list(records))

    async def add_rewards_async(self, rewards: Sequence[RewardRecord]) -> list[RewardRecord]:
        """:meth:`add_rewards` for a coroutine (see :meth:`add_decisions_async`)."""
        return await self._submit_async("rewards", list(rewards))

    def _submit(self, kind: str, items: list[Any]) -> list[Any]:
        if not items:
            return []
        pending = _Pending(kind, items)
        with self._lock:
            self._check_open()
            self._queue.append(pending)
            lead = not self._flushing
            self._flushing = True
        while True:
            if lead:
                self._flush_once()
            pending.wake.wait()
            with self._lock:
                if pending.finished:
                    break
                pending.wake.clear()  # woken to lead the next flush
                lead = True
        if pending.error is not None:
            raise pending.error
        return pending.result

    async def _submit_async(self, kind: str, items: list[Any]) -> list[Any]:
        if not items:
            return []
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        with self._lock:
            self._check_open()
            self._queue.append(_Pending(kind, items, loop, future))
            if not self._flushing:
                self._flushing = True
                self._start_writer()
                self._writer_wake.put(None)  # the store's writer thread leads
        return await future

    def _check_open(self) -> None:
        if self._closing:
            raise RuntimeError("the store is closed")

    def _start_writer(self) -> None:
        """Start the writer thread that flushes for coroutines (once; under ``_lock``)."""
        if self._writer is None:
            self._writer = threading.Thread(
                target=self._write_loop, name="campaignrl-group-commit", daemon=True
            )
            self._writer.start()

    def _write_loop(self) -> None:
        while True:
            self._writer_wake.get()
            with self._lock:
                if self._writer_stop:
                    return
            self._flush_once()  # it hands the lead on, to this thread again if need be

    def _flush_once(self) -> None:
        with self._lock:
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
        try:
            for kind in ("decisions", "rewards"):
                group = [p for p in batch if p.kind == kind]
                if group:
                    self._commit(kind, group)
        finally:
            waiting: dict[asyncio.AbstractEventLoop, list[_Pending]] = {}
            with self._lock:
                for pending in batch:
                    if not pending.finished:  # only on an unexpected failure above
                        pending.error = RuntimeError("group commit failed")
                        pending.finished = True
                    if pending.loop is None:
                        pending.wake.set()
                    else:
                        waiting.setdefault(pending.loop, []).append(pending)
                if not self._queue:
                    self._flushing = False
                    self._idle.notify_all()
                elif self._queue[0].loop is None:
                    self._queue[0].wake.set()  # the next waiting thread leads
                else:
                    self._start_writer()
                    self._writer_wake.put(None)  # the writer thread leads for coroutines
            for loop, done in waiting.items():
                try:  # one callback per loop and flush, not one per caller
                    loop.call_soon_threadsafe(_settle, done)
                except RuntimeError:  # pragma: no cover - that loop is closed: nobody waits
                    pass

    def _commit(self, kind: str, group: list[_Pending]) -> None:
        write = self.store.add_decisions if kind == "decisions" else self.store.add_rewards
        merged = [item for p in group for item in p.items]
        try:
            results: list[Any] = list(write(merged))
            self.commits += 1
        except Exception as error:
            if len(group) == 1:
                group[0].error, group[0].finished = error, True
                return
            for pending in group:  # retry alone: the error goes to the caller who caused it
                try:
                    pending.result = list(write(pending.items))
                    self.commits += 1
                except Exception as alone:
                    pending.error = alone
                pending.finished = True
            return
        start = 0
        for pending in group:
            pending.result = results[start : start + len(pending.items)]
            pending.finished = True
            start += len(pending.items)

    def get_decision(self, decision_id: str) -> DecisionRecord:
        """See :meth:`DecisionStore.get_decision`."""
        return self.store.get_decision(decision_id)

    def get_decisions(self, decision_ids: Sequence[str]) -> dict[str, DecisionRecord]:
        """See :meth:`DecisionStore.get_decisions`."""
        return self.store.get_decisions(decision_ids)

    def activation_times(self, decision_ids: Sequence[str]) -> dict[str, float | None]:
        """See :meth:`DecisionStore.activation_times`."""
        return self.store.activation_times(decision_ids)

    def activate(self, decision_id: str, at: float) -> DecisionRecord:
        """See :meth:`DecisionStore.activate`."""
        return self.store.activate(decision_id, at)

    def rewards_for(self, decision_id: str) -> list[RewardRecord]:
        """See :meth:`DecisionStore.rewards_for`."""
        return self.store.rewards_for(decision_id)

    def counts(self) -> StoreCounts:
        """See :meth:`DecisionStore.counts`."""
        return self.store.counts()

    def closed_counts(self, activated_until: float) -> tuple[int, int]:
        """See :meth:`DecisionStore.closed_counts`."""
        return self.store.closed_counts(activated_until)

    def iter_active(
        self,
        *,
        activated_until: float,
        activated_after: float | None = None,
        created_since: float | None = None,
        page_size: int = 2000,
        steps: bool = False,
    ) -> Iterator[StoredDecision]:
        """See :meth:`DecisionStore.iter_active`."""
        return self.store.iter_active(
            activated_until=activated_until,
            activated_after=activated_after,
            created_since=created_since,
            page_size=page_size,
            steps=steps,
        )

    def add_policy_version(
        self,
        version: int,
        action_names: Sequence[str],
        feature_names: Sequence[str],
        at: float,
    ) -> PolicyVersionRow:
        """See :meth:`DecisionStore.add_policy_version`."""
        return self.store.add_policy_version(version, action_names, feature_names, at)

    def policy_versions(self) -> list[PolicyVersionRow]:
        """See :meth:`DecisionStore.policy_versions`."""
        return self.store.policy_versions()

    def close(self) -> None:
        """Wait for the writes under way, stop the writer thread, close the underlying store.

        Writes submitted after this start are refused (``RuntimeError``).
        """
        with self._idle:
            self._closing = True
            self._idle.wait_for(lambda: not self._flushing)
            self._writer_stop = True
            writer = self._writer
        if writer is not None:
            self._writer_wake.put(None)
            writer.join()
        self.store.close()
