"""A throwaway PostgreSQL cluster on loopback for the service benchmarks.

The same recipe as ``tests/service/conftest.py`` (which keeps its own copy as a pytest fixture:
test helpers stay out of the package, and a benchmark must not import pytest's conftest):
``initdb`` in a temporary folder (as the ``postgres`` OS user when running as root), a server
on ``127.0.0.1`` and a free port, stopped and deleted on exit. The server keeps PostgreSQL's
durable defaults (``fsync=on``, ``synchronous_commit=on``): a commit is flushed to its WAL.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

__all__ = ["postgres_bindir", "throwaway_postgres"]


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


@contextlib.contextmanager
def throwaway_postgres(cpus: Sequence[int] | None = None) -> Iterator[str]:
    """Start a PostgreSQL server for the block; yield its URL.

    Args:
        cpus: CPUs to pin the server's processes to (``taskset``), or ``None``.

    Raises:
        RuntimeError: If the server binaries are missing or a step fails (with its output).
    """
    bindir = postgres_bindir()
    if bindir is None:
        raise RuntimeError(
            "PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql"
        )
    base = Path(tempfile.mkdtemp(prefix="campaignrl-pg-bench-"))
    prefix: list[str] = []
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(base, owner.pw_uid, owner.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    if cpus:
        prefix = ["taskset", "-c", ",".join(str(c) for c in cpus), *prefix]
    data, port = base / "data", _free_port()

    def run(*args: str) -> None:
        done = subprocess.run([*prefix, *args], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            log = (base / "server.log").read_text() if (base / "server.log").exists() else ""
            raise RuntimeError(
                f"{args[0]} failed ({done.returncode}): {done.stderr}{done.stdout}{log}"
            )

    try:
        run(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
            "--no-locale", "--no-sync")  # fmt: skip
        options = f"-k {base} -c listen_addresses=127.0.0.1 -p {port}"
        run(str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(base / "server.log"),
            "-w", "start")  # fmt: skip
        try:
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
        finally:
            run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
    finally:
        shutil.rmtree(base, ignore_errors=True)
