"""Service test fixtures: a throwaway PostgreSQL cluster on loopback; a store of each backend."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from campaignrl.service.pgcluster import PostgresClusterError, throwaway_postgres
from campaignrl.service.store import DecisionStore, GroupCommitStore, open_store


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server started for the session in a temporary folder, on 127.0.0.1.

    See :func:`campaignrl.service.pgcluster.throwaway_postgres` (as root, the cluster runs as
    the ``postgres`` OS user). A missing server fails the tests, never skips them: CI installs
    Debian's ``postgresql``.
    """
    with contextlib.ExitStack() as stack:
        try:
            url = stack.enter_context(throwaway_postgres(stop_mode="immediate"))
        except PostgresClusterError as exc:
            pytest.fail(str(exc))
        yield url


def reset_postgres(url: str) -> None:
    """Drop the store's tables, so each test starts from an empty database."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS rewards, decisions, policy_versions, meta")


def _empty_store_url(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'decisions.db'}"
    url: str = request.getfixturevalue("postgres_url")
    reset_postgres(url)
    return url


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty store of each backend."""
    return _empty_store_url(request, request.param, tmp_path)


@pytest.fixture(params=["sqlite", "postgres", "grouped-sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DecisionStore]:
    """An empty, open store of each backend, and SQLite behind group commit (closed after)."""
    backend = str(request.param)
    opened = open_store(_empty_store_url(request, backend.removeprefix("grouped-"), tmp_path))
    if backend.startswith("grouped-"):
        opened = GroupCommitStore(opened)
    yield opened
    opened.close()
