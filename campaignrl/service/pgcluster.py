"""A throwaway PostgreSQL server on 127.0.0.1, for the tests, the benchmarks and a quick try.

:func:`throwaway_postgres` runs Debian's (or any) ``initdb`` in a temporary folder, starts a
server with ``pg_ctl`` listening on ``127.0.0.1`` only, on a free port, with ``trust``
authentication for the ``postgres`` role, yields its URL, and on exit stops it and deletes
the folder. ``initdb`` refuses to run as root: as root (CI containers) the cluster belongs to
the ``postgres`` OS user (Debian's ``postgresql`` package creates it) and the server runs as
that user. The server keeps PostgreSQL's durable defaults (``fsync=on``,
``synchronous_commit=on``): a commit is flushed to its WAL, as in production; only ``initdb``
skips its own fsyncs (``--no-sync``: nothing in a throwaway cluster needs to survive a power
loss before it starts).

No data ever needs this module: it is the test and benchmark fixture, kept in the package so
the tests and ``benchmarks/`` share one copy. From a shell, a server until Ctrl-C::

    python -m campaignrl.service.pgcluster
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

__all__ = ["MISSING_SERVER", "PostgresClusterError", "postgres_bindir", "throwaway_postgres"]

MISSING_SERVER = (
    "PostgreSQL server binaries (initdb, pg_ctl) not found on PATH nor in "
    "/usr/lib/postgresql/*/bin: install Debian's `postgresql` package "
    "(apt-get update && apt-get install -y postgresql), as .ci/run does"
)
"""the error when no server binaries are installed"""


class PostgresClusterError(RuntimeError):
    """The throwaway server could not be set up (its binaries, OS user or a step failed)."""


def postgres_bindir() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``: on PATH, else the newest Debian install.

    Debian keeps them off PATH, in ``/usr/lib/postgresql/<major>/bin``.
    """
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
def throwaway_postgres(
    cpus: Sequence[int] | None = None,
    *,
    stop_mode: Literal["fast", "immediate"] = "fast",
) -> Iterator[str]:
    """Start a PostgreSQL server for the block; yield its URL (``postgresql://postgres@...``).

    Args:
        cpus: CPUs to pin the server's processes to (``taskset``, for benchmarks), or ``None``.
        stop_mode: ``pg_ctl stop -m``: ``fast`` (a clean shutdown) or ``immediate`` (quicker;
            the folder is deleted anyway).

    Raises:
        PostgresClusterError: If the binaries or the ``postgres`` OS user (as root) are
            missing, or a step fails (with its output and the server log).
        ValueError: If ``stop_mode`` is not ``fast`` or ``immediate``.
    """
    if stop_mode not in ("fast", "immediate"):
        raise ValueError(f"`stop_mode` must be 'fast' or 'immediate', got {stop_mode!r}")
    bindir = postgres_bindir()
    if bindir is None:
        raise PostgresClusterError(MISSING_SERVER)
    prefix: list[str] = []
    owner: pwd.struct_passwd | None = None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            raise PostgresClusterError(
                "running as root, and there is no `postgres` OS user to run initdb as "
                "(Debian's `postgresql` package creates it)"
            ) from None
        prefix = ["runuser", "-u", "postgres", "--"]
    if cpus:
        prefix = ["taskset", "-c", ",".join(str(int(c)) for c in cpus), *prefix]
    base = Path(tempfile.mkdtemp(prefix="campaignrl-pg-"))
    data, log, port = base / "data", base / "server.log", _free_port()

    def run(*args: str) -> None:
        done = subprocess.run([*prefix, *args], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            server_log = log.read_text(errors="replace") if log.exists() else ""
            raise PostgresClusterError(
                f"{Path(args[0]).name} failed ({done.returncode}): "
                f"{done.stderr}{done.stdout}{server_log}"
            )

    try:
        if owner is not None:
            os.chown(base, owner.pw_uid, owner.pw_gid)
        run(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
            "--no-locale", "--no-sync")  # fmt: skip
        # The socket folder is the private temporary one; TCP on loopback only.
        options = f"-k {base} -c listen_addresses=127.0.0.1 -p {port}"
        run(str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w",
            "start")  # fmt: skip
        try:
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
        finally:
            run(str(bindir / "pg_ctl"), "-D", str(data), "-m", stop_mode, "-w", "stop")
    finally:
        shutil.rmtree(base, ignore_errors=True)


def main() -> int:
    """Serve a throwaway cluster until Ctrl-C, printing its URL (exit 2 if it cannot start)."""
    try:
        with throwaway_postgres() as url:
            print(url, flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    time.sleep(3600)
    except PostgresClusterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
