"""The embedded decision store: SQLite in WAL mode, durable on power loss (``synchronous=FULL``)."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from campaignrl.service.store import (
    SQLStore,
    check_schema_version,
    schema_statements,
    upgrade_statements,
)

__all__ = ["SQLiteStore"]

_SYNCHRONOUS = ("FULL", "NORMAL", "EXTRA")
_MMAP_BYTES = 1 << 30
"""the database file mapped in memory, per connection (shared pages, not copies)"""
_CACHE_KIB = 32 * 1024
"""SQLite's own page cache, per connection (written pages live here until the commit)"""
_PAGE_BYTES = 2048
"""page size of a new database file (an existing one keeps its own). A commit writes every
page it dirtied to the WAL, whole: the tail pages of the tables' and indexes' b-trees, most
of them barely changed. Half SQLite's default 4096 measured a tenth less CPU per durable
batch of 100 decisions (2.2 against 2.45 ms, checkpoints included); a row of a few hundred
features still fits in one page (up to 2013 bytes), and 1024 was no better."""


class SQLiteStore(SQLStore):
    """A :class:`~campaignrl.service.store.DecisionStore` in one SQLite file.

    Each thread gets its own connection (readers run side by side under WAL); writes are
    serialized by a lock in the process and ``BEGIN IMMEDIATE`` across processes, and each
    write transaction is fsynced before it returns (``synchronous=FULL``: a commit survives a
    power loss, not only a crash of the process).

    Checkpoints (copying the WAL into the database file, and fsyncing that) are off the
    commit path: a thread of the store runs a ``PASSIVE`` checkpoint every
    ``checkpoint_seconds`` on its own connection, alongside the writers, instead of SQLite's
    automatic checkpoint inside every thousandth page's commit (a stall of several
    milliseconds for the request that happened to commit then). A commit is durable once its
    WAL frames are fsynced, checkpointed or not.

    Args:
        path: The database file (created with its tables if absent; its folder must exist).
        synchronous: SQLite's ``synchronous`` setting: ``FULL`` (default, durable on power
            loss), ``EXTRA``, or ``NORMAL`` (WAL: survives a crash of the process but may lose
            the last commits on a power loss).
        timeout: Seconds to wait for another process's write lock.
        checkpoint_seconds: How often the checkpoint thread copies the WAL into the file.

    Raises:
        ValueError: If the folder of ``path`` does not exist, ``synchronous`` is unknown, or
            the file holds tables of a newer schema version (an older one is upgraded: see
            :func:`~campaignrl.service.store.upgrade_statements`).

    Examples:
        >>> import tempfile, pathlib
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     store = SQLiteStore(pathlib.Path(tmp) / "decisions.db")
        ...     print(store.counts().decisions)
        ...     store.close()
        0
    """

    # Ints and bytearrays bind without the module's adapter lookup (bools, bytes do not).
    _NATIVE_PARAMS = True

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: str = "FULL",
        timeout: float = 30.0,
        checkpoint_seconds: float = 0.5,
    ) -> None:
        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise ValueError(
                f"`--store` folder {str(self.path.parent)!r} of {str(path)!r} does not exist"
            )
        if not isinstance(synchronous, str) or synchronous.upper() not in _SYNCHRONOUS:
            raise ValueError(f"`synchronous` must be one of {_SYNCHRONOUS}, got {synchronous!r}")
        self.synchronous = synchronous.upper()
        self.timeout = float(timeout)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._closed = False
        self._stop = threading.Event()
        self._checkpointer: threading.Thread | None = None
        if (
            isinstance(checkpoint_seconds, bool)
            or not isinstance(checkpoint_seconds, (int, float))
            or not 0 < checkpoint_seconds < float("inf")
        ):
            raise ValueError(
                f"`checkpoint_seconds` must be a positive number, got {checkpoint_seconds!r}"
            )
        self.checkpoint_seconds = float(checkpoint_seconds)
        # One write transaction (BEGIN IMMEDIATE: other processes wait): a store laid out by
        # an older version is upgraded once, and one of a newer version is left untouched.
        with self._write() as cur:
            for statement in schema_statements(
                real="REAL", blob="BLOB", boolean="INTEGER", serial="INTEGER PRIMARY KEY"
            ):
                cur.execute(statement)
            cur.execute("SELECT value FROM meta WHERE key = 'schema_version'")
            stored = check_schema_version(cur.fetchone()[0], repr(str(self.path)))
            cur.execute("PRAGMA table_info(rewards)")
            columns = {row[1] for row in cur.fetchall()}
            for statement in upgrade_statements(
                stored, real="REAL", boolean="INTEGER", columns=columns
            ):
                cur.execute(statement)
        self._checkpointer = threading.Thread(
            target=self._checkpoint_loop, name="campaignrl-sqlite-checkpoint", daemon=True
        )
        self._checkpointer.start()

    def _checkpoint_loop(self) -> None:
        """PASSIVE checkpoints until :meth:`close`: never waits for a reader or a writer."""
        conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
        try:
            while not self._stop.wait(self.checkpoint_seconds):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error:  # busy (another process checkpoints): next time
                    pass
        finally:
            conn.close()

    def _connection(self) -> sqlite3.Connection:
        if self._closed:
            raise RuntimeError(f"the store {str(self.path)!r} is closed")
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            # isolation_level=None: no implicit transactions; BEGIN/COMMIT are explicit below.
            conn = sqlite3.connect(
                self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
            )
            # Before the journal mode: it only takes on a file with no table yet.
            conn.execute(f"PRAGMA page_size={_PAGE_BYTES}")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA wal_autocheckpoint=0")  # the checkpoint thread does it
            # The unique index on event_id (clients' keys, often random) touches a random page
            # per row that has one: keep pages in memory (shared through the OS by mmap).
            conn.execute(f"PRAGMA mmap_size={_MMAP_BYTES}")
            conn.execute(f"PRAGMA cache_size=-{_CACHE_KIB}")
            self._local.conn = conn
            with self._connections_lock:
                self._connections.append(conn)
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Cursor]:
        conn = self._connection()
        with self._write_lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn.cursor()
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Cursor]:
        conn = self._connection()
        conn.execute("BEGIN")  # one snapshot for the statements of the block
        try:
            yield conn.cursor()
        finally:
            conn.execute("COMMIT")

    def _is_unique_violation(self, error: Exception) -> bool:
        return isinstance(error, sqlite3.IntegrityError) and "UNIQUE" in str(error)

    def close(self) -> None:
        """Close every thread's connection (the WAL is checkpointed by the last one)."""
        self._closed = True
        self._stop.set()
        if self._checkpointer is not None and self._checkpointer is not threading.current_thread():
            self._checkpointer.join()
        with self._connections_lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r}, synchronous={self.synchronous!r})"
