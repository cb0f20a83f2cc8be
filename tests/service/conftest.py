"""Service test fixtures: a throwaway PostgreSQL cluster on loopback; a store of each backend."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from campaignrl.service.store import DecisionStore, GroupCommitStore, open_store

_MISSING = (
    "PostgreSQL server binaries (initdb, pg_ctl) not found on PATH nor in "
    "/usr/lib/postgresql/*/bin: install Debian's `postgresql` package "
    "(apt-get update && apt-get install -y postgresql), as .ci/run does"
)


def postgres_bindir() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``: on PATH, else the newest Debian install."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).resolve().parent
    found = [Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin") if Path(p, "pg_ctl").exists()]
    found.sort(key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    return found[-1] if found else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server started for the session in a temporary folder, on 127.0.0.1.

    initdb refuses to run as root: as root (CI), the cluster belongs to the ``postgres`` OS
    user (Debian's package creates it) and the server runs as that user.
    """
    bindir = postgres_bindir()
    if bindir is None:
        pytest.fail(_MISSING)
    base = Path(tempfile.mkdtemp(prefix="campaignrl-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.fail("running as root, and there is no `postgres` OS user to run initdb as")
        os.chown(base, owner.pw_uid, owner.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    data, port = base / "data", _free_port()

    def run(*args: str) -> None:
        done = subprocess.run([*prefix, *args], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            log = (base / "server.log").read_text() if (base / "server.log").exists() else ""
            pytest.fail(f"{args[0]} failed ({done.returncode}): {done.stderr}{done.stdout}{log}")

    run(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
        "--no-locale", "--no-sync")  # fmt: skip
    options = f"-k {base} -c listen_addresses=127.0.0.1 -p {port}"
    run(str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(base / "server.log"),
        "-w", "start")  # fmt: skip
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(base, ignore_errors=True)


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
