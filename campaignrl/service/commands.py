"""The ``campaignrl serve`` and ``campaignrl logs export`` commands.

``register(subparsers, parser_class)`` adds ``serve``; :func:`register_logs_export` adds
``export`` to the ``logs`` group (which ``campaignrl.ope.commands`` creates). Handlers raise
``ValueError`` on bad input (the CLI prints one line and exits with code 2). Nothing here
imports the web framework until a command runs: the ``service`` extra is optional.

Secrets are never flags (other users can read a process's arguments): the hashing key, the
admin token, the API key and the signing key come from ``CAMPAIGNRL_*`` variables or the
``--config`` file.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["register", "register_logs_export"]


def _number(low: float | None, what: str, *, strict: bool = False) -> Any:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
        if not math.isfinite(value) or (
            low is not None and (value < low or (strict and value == low))
        ):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return value

    return parse


def _integer(low: int, high: int | None, what: str) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return value

    return parse


def _probability(text: str) -> float:
    value: float = _number(0.0, "a number in [0, 1]")(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text!r}")
    return value


def _one_of(choices: tuple[str, ...]) -> Any:
    def parse(text: str) -> str:
        if text not in choices:
            raise argparse.ArgumentTypeError(f"must be one of {', '.join(choices)}; got {text!r}")
        return text

    return parse


def _reward_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--reward-window-seconds",
        type=_number(0.0, "a positive number", strict=True),
        help="how long after its activation a decision waits for rewards (default: 3600)",
    )
    p.add_argument(
        "--aggregation",
        type=_one_of(("sum", "earliest", "max")),
        help="how several on-time rewards of a decision combine (default: sum)",
    )
    p.add_argument(
        "--default-reward",
        type=_number(None, "a finite number"),
        help="reward of an active decision whose window closed without one (default: 0)",
    )
    p.add_argument(
        "--versions-dir",
        type=Path,
        help="policy versions folder (default: beside a SQLite store, <db file>.versions)",
    )


def register(subparsers: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    """Add ``serve`` to the ``campaignrl`` subcommands.

    Args:
        subparsers: The ``add_subparsers()`` action of the main parser.
        parser_class: The parser class (one-line errors, exit 2); unused here, kept for the
            same signature as the other command modules.
    """
    p = subparsers.add_parser(
        "serve",
        help="run the decision service (HTTP): decide, log, join rewards, learn online",
        description="Run the decision service. Secrets come from the environment or --config "
        "only: CAMPAIGNRL_HASH_KEY (required, >= 16 bytes), CAMPAIGNRL_ADMIN_TOKEN, "
        "CAMPAIGNRL_API_KEY, CAMPAIGNRL_SIGNING_KEY. Every flag has a CAMPAIGNRL_<NAME> "
        "variable and a config-file key; flags win over the environment, which wins over "
        "the file.",
    )
    p.set_defaults(handler=_cmd_serve)
    p.add_argument("--policy", type=Path, help="policy artifact to serve (new ones are proposed)")
    p.add_argument("--store", help="sqlite:///decisions.db (default) or postgresql://user@host/db")
    p.add_argument("--config", type=Path, help="settings file (.toml or .yaml)")
    p.add_argument("--host", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=_integer(1, 65535, "a port in 1..65535"), help="default 8000")
    p.add_argument(
        "--workers", type=_integer(1, 64, "an integer in 1..64"), help="processes (default 1)"
    )
    p.add_argument("--epsilon", type=_probability, help="exploration share, in [0, 1]")
    p.add_argument(
        "--seed", type=_integer(0, None, "a non-negative integer"), help="exploration seed"
    )
    _reward_flags(p)
    p.add_argument(
        "--learn",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="learn online from joined rewards (linear, tabular, Gaussian Thompson policies)",
    )
    p.add_argument(
        "--learn-every-seconds",
        type=_number(0.0, "a positive number", strict=True),
        help="publish a learned version at most this often (default: 60)",
    )
    p.add_argument(
        "--learn-every-rewards",
        type=_integer(1, None, "a positive integer"),
        help="also publish once this many joined rows are pending",
    )
    p.add_argument(
        "--refresh-seconds",
        type=_number(0.0, "a positive number", strict=True),
        help="with several workers, how soon each serves a version another one swapped in "
        "(default: 1)",
    )
    p.add_argument(
        "--max-body-bytes", type=_integer(1024, None, "an integer >= 1024"), help="413 beyond"
    )
    p.add_argument(
        "--max-batch",
        type=_integer(1, 100_000, "an integer in 1..100000"),
        help="most decisions or rewards per batch (default: 1000)",
    )
    p.add_argument(
        "--log-level",
        type=_one_of(("critical", "error", "warning", "info", "debug")),
        help="uvicorn's log level (default: info)",
    )
    from campaignrl.service.loop import register as register_loop

    register_loop(subparsers, parser_class)


def register_logs_export(logs_subparsers: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    """Add ``export`` to the ``campaignrl logs`` subcommands.

    Args:
        logs_subparsers: The ``add_subparsers()`` action of the ``logs`` parser.
        parser_class: The parser class (unused; the same signature as :func:`register`).
    """
    p = logs_subparsers.add_parser(
        "export",
        help="write the service's joined decisions as a decision log (for ope and retraining)",
        description="Export the decisions whose reward window closed, joined with their "
        "rewards (aggregated, or the default), with the logged masks, in the decision-log "
        "schema that `campaignrl ope` reads. The reward settings must be the service's: they "
        "come from the flags, CAMPAIGNRL_* variables or --config, like `serve`'s.",
    )
    p.set_defaults(handler=_cmd_logs_export)
    p.add_argument("--store", required=True, help="the service's store URL")
    p.add_argument("--out", type=Path, required=True, help="output .parquet or .csv")
    p.add_argument(
        "--since",
        help="only decisions made at or after this time: unix seconds or ISO 8601 "
        "(2026-03-01T00:00:00Z)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--config", type=Path, help="the service's settings file (.toml or .yaml)")
    p.add_argument(
        "--policy",
        type=Path,
        help="an artifact with the served features and actions (default: the versions "
        "folder's current version)",
    )
    _reward_flags(p)


# ---------------------------------------------------------------------------- handlers


def _parse_since(text: str | None) -> float | None:
    """``--since`` as unix seconds.

    Examples:
        >>> _parse_since("2026-01-01T00:00:00Z")
        1767225600.0
        >>> _parse_since("1767225600")
        1767225600.0
    """
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        from datetime import UTC, datetime

        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(
                f"argument --since: must be unix seconds or an ISO 8601 time, got {text!r}"
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp()
    if not math.isfinite(value):
        raise ValueError(f"argument --since: must be a finite time, got {text!r}")
    return value


def _serve_overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "policy_dir": args.policy,
        "store_url": args.store,
        "host": args.host,
        "port": args.port,
        "workers": args.workers,
        "exploration_epsilon": args.epsilon,
        "seed": args.seed,
        "reward_window_seconds": args.reward_window_seconds,
        "aggregation": args.aggregation,
        "default_reward": args.default_reward,
        "versions_dir": args.versions_dir,
        "learn": args.learn,
        "learn_every_seconds": args.learn_every_seconds,
        "learn_every_rewards": args.learn_every_rewards,
        "max_body_bytes": args.max_body_bytes,
        "max_batch": args.max_batch,
        "refresh_seconds": args.refresh_seconds,
        "log_level": args.log_level,
    }


def _cmd_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from campaignrl.service.app import create_app
        from campaignrl.service.runtime import ServiceRuntime, open_versions
        from campaignrl.service.settings import ServiceSettings
    except ImportError as exc:  # pragma: no cover - the service extra is missing
        raise ValueError(
            f"`campaignrl serve` needs the service extra: pip install 'campaignrl[service]' ({exc})"
        ) from None
    settings = ServiceSettings.load(args.config, **_serve_overrides(args))
    if settings.workers == 1:
        # A PROMETHEUS_MULTIPROC_DIR set for one process: emptied before it makes metrics.
        _empty_metrics_folder()
    # Several workers: SQLite is allowed (WAL; writers take turns across processes, on one
    # machine), PostgreSQL is the better fit. Online learning runs in one worker only, the one
    # holding a lock file in the versions folder (runtime.LearnerElection); if it dies another
    # takes over, and every worker picks up the versions it publishes.
    # Check everything once, here, so a mistake is one line and exit code 2, not a worker
    # that dies at start: the store opens (tables created), the policy is accepted, and
    # --learn suits its kind.
    versions = open_versions(settings)
    ServiceRuntime.open(settings, versions=versions).close()
    common: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "timeout_graceful_shutdown": settings.graceful_timeout_seconds,
        "proxy_headers": False,
        "server_header": False,
    }
    with _sigterm_is_a_clean_exit():
        _run(uvicorn, settings, versions, create_app, common)
    return 0


@contextlib.contextmanager
def _sigterm_is_a_clean_exit() -> Iterator[None]:
    """SIGTERM drains and exits with code 0.

    uvicorn handles SIGTERM by draining the requests in flight, then raises the signal again
    under the handler it found at start so the process still dies of it (code -15). A drained
    shutdown is what an orchestrator asked for: with this no-op handler in place, the
    re-raised signal does nothing and ``serve`` returns 0. With several workers uvicorn's
    supervisor takes SIGTERM over: it passes it to every worker (each drains its requests
    and closes its store) and returns once they all exited, and ``serve`` returns 0.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(uvicorn: Any, settings: Any, versions: Any, create_app: Any, common: Any) -> None:
    if settings.workers == 1:
        from campaignrl.service.runtime import freeze_startup_objects

        app = create_app(settings, versions=versions)
        freeze_startup_objects()
        uvicorn.run(app, **common)
        return
    with _multiprocess_metrics():
        # uvicorn's workers import the app by name and build it from the environment.
        for key, value in settings.to_env().items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        uvicorn.run(
            "campaignrl.service.app:create_app_from_env",
            factory=True,
            workers=settings.workers,
            **common,
        )


def _empty_metrics_folder() -> Path | None:
    """Delete the metric files (``*.db``) in ``PROMETHEUS_MULTIPROC_DIR``, if it is set.

    prometheus-client needs an empty folder at start: files of an earlier run would be
    summed in (and their processes' gauges shown).

    Raises:
        ValueError: If the variable names something that is not a folder.
    """
    from campaignrl.service.metrics import MULTIPROC_ENV

    given = os.environ.get(MULTIPROC_ENV)
    if not given:
        return None
    folder = Path(given)
    if not folder.is_dir():
        raise ValueError(
            f"{MULTIPROC_ENV} {given!r} is not a folder: create it, or unset it and "
            f"`serve --workers` uses a temporary one"
        )
    for stale in folder.glob("*.db"):
        stale.unlink(missing_ok=True)
    return folder


@contextlib.contextmanager
def _multiprocess_metrics() -> Iterator[Path]:
    """``PROMETHEUS_MULTIPROC_DIR`` for the workers, so ``/metrics`` sums over all of them.

    The user's folder if the variable is set (emptied first, after this process's checks
    made their metrics), else a temporary one, deleted after. The workers are started after
    this is set and import prometheus-client fresh, in its multiprocess mode; this process
    serves no request, and its own metrics are not in the sums.

    Raises:
        ValueError: If the variable names something that is not a folder.
    """
    import shutil
    import tempfile

    from campaignrl.service.metrics import MULTIPROC_ENV

    given = _empty_metrics_folder()
    if given is not None:
        yield given
        return
    folder = Path(tempfile.mkdtemp(prefix="campaignrl-metrics-"))
    os.environ[MULTIPROC_ENV] = str(folder)
    try:
        yield folder
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(folder, ignore_errors=True)


def _cmd_logs_export(args: argparse.Namespace) -> int:
    from campaignrl._fs import check_new_file
    from campaignrl.logs import write_logs
    from campaignrl.policies import load_policy
    from campaignrl.service.joiner import Joiner, JoinSettings
    from campaignrl.service.settings import ExportSettings
    from campaignrl.service.store import open_store
    from campaignrl.service.versions import PolicyVersions, read_signing_key

    since = _parse_since(args.since)
    settings = ExportSettings.load(
        args.config,
        store_url=args.store,
        versions_dir=args.versions_dir,
        reward_window_seconds=args.reward_window_seconds,
        aggregation=args.aggregation,
        default_reward=args.default_reward,
    )
    out = check_new_file(args.out, "--out", overwrite=args.overwrite)
    if out.suffix.lower() not in (".parquet", ".csv"):
        raise ValueError(f"argument --out: must end in .parquet or .csv, got {str(out)!r}")
    if args.policy is not None:
        policy = load_policy(args.policy)
    else:
        root = settings.resolved_versions_dir
        if not (root / "current.json").is_file():
            raise ValueError(
                f"argument --policy: needed, as {str(root)!r} holds no served version "
                f"(pass --versions-dir or --policy)"
            )
        policy = PolicyVersions(root, signing_key=read_signing_key()).current.policy
    store = open_store(settings.store_url)
    try:
        joiner = Joiner(
            store,
            JoinSettings(
                window_seconds=settings.reward_window_seconds,
                aggregation=settings.aggregation,
                default_reward=settings.default_reward,
            ),
            action_names=policy.action_names,
            feature_names=policy.feature_names,
        )
        frame = joiner.export_logs(since)
        held = store.counts().decisions if frame.empty else 0
    finally:
        store.close()
    write_logs(frame, out)
    print(f"wrote {len(frame)} joined decisions to {out}")
    if frame.empty and held:
        # An empty file is what the settings ask for, but usually means the window given here
        # is not the service's: say so rather than leave a log `campaignrl ope` refuses.
        print(
            f"none of the store's {held} decisions has its reward window closed under "
            f"--reward-window-seconds {settings.reward_window_seconds:g} (or --since): pass the "
            "service's settings (flags, CAMPAIGNRL_* variables or --config)",
            file=sys.stderr,
        )
    for column, why in frame.attrs.get("outcomes_left_out", {}).items():
        print(f"outcome column {column!r} not written: {why}")
    return 0
