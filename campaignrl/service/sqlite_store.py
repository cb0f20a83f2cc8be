"""The embedded decision store: SQLite in WAL mode, durable on power loss (``synchronous=FULL``)."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from campaignrl.service.store import SQLStore, check_schema_version, schema_statements

__all__ = ["SQLiteStore"]

_SYNCHRONOUS = ("FULL", "NORMAL", "EXTRA")


class SQLiteStore(SQLStore):
    """A :class:`~campaignrl.service.store.DecisionStore` in one SQLite file.

    Each thread gets its own connection (readers run side by side under WAL); writes are
    serialized by a lock in the process and ``BEGIN IMMEDIATE`` across processes, and each
    write transaction is fsynced before it returns (``synchronous=FULL``: a commit survives a
    power loss, not only a crash of the process).

    Args:
        path: The database file (created with its tables if absent; its folder must exist).
        synchronous: SQLite's ``synchronous`` setting: ``FULL`` (default, durable on power
            loss), ``EXTRA``, or ``NORMAL`` (WAL: survives a crash of the process but may lose
            the last commits on a power loss).
        timeout: Seconds to wait for another process's write lock.

    Raises:
        ValueError: If the folder of ``path`` does not exist, ``synchronous`` is unknown, or
            the file holds tables of another schema version.

    Examples:
        >>> import tempfile, pathlib
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     store = SQLiteStore(pathlib.Path(tmp) / "decisions.db")
        ...     print(store.counts().decisions)
        ...     store.close()
        0
    """

    def __init__(
        self, path: str | os.PathLike[str], *, synchronous: str = "FULL", timeout: float = 30.0
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
        with self._write() as cur:
            for statement in schema_statements(
                real="REAL", blob="BLOB", boolean="INTEGER", serial="INTEGER PRIMARY KEY"
            ):
                cur.execute(statement)
            cur.execute("SELECT value FROM meta WHERE key = 'schema_version'")
            check_schema_version(cur.fetchone()[0], repr(str(self.path)))

    def _connection(self) -> sqlite3.Connection:
        if self._closed:
            raise RuntimeError(f"the store {str(self.path)!r} is closed")
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            # isolation_level=None: no implicit transactions; BEGIN/COMMIT are explicit below.
            conn = sqlite3.connect(
                self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            conn.execute("PRAGMA foreign_keys=ON")
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
        with self._connections_lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r}, synchronous={self.synchronous!r})"
