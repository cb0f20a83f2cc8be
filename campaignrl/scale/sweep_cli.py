"""``campaignrl experiment sweep``: the argparse registration, light to import.

The command line builds every parser at start-up; this module imports nothing heavy, and the
sweep itself (pandas, the agents, Ray) is imported when the command runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["add_sweep_parser"]


def _run(args: argparse.Namespace) -> int:
    from campaignrl.scale.sweep import run_sweep

    return run_sweep(args.config, args.out, args.ray, args.overwrite)


def add_sweep_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``sweep`` under ``campaignrl experiment``.

    Args:
        subparsers: The ``experiment`` command's sub-command action (what
            ``add_subparsers`` returned); its parser class (the CLI's one-line-error parser)
            is used.

    Returns:
        The new sub-command's parser (its handler is set: ``args.handler(args)`` runs it).
    """
    p: argparse.ArgumentParser = subparsers.add_parser(
        "sweep",
        help="sweep agents' settings (the config's sweep: section) on Ray Tune; resumable",
        description="Run the trials of the config's sweep: section on Ray Tune (one trial = "
        "one setting of one agent, run for every seed); write sweep.csv, a plot per agent and "
        "the best setting's policies under --out/best/<agent>/. Killed, the same command "
        "resumes it: finished trials are kept.",
    )
    p.add_argument("config", type=Path, help="experiment YAML with a sweep: section")
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="sweep folder: new or empty, or this sweep's own (to resume it)",
    )
    p.add_argument(
        "--ray",
        metavar="ADDRESS",
        default=None,
        help="Ray to run on: local (default: start Ray on this machine with all its CPUs), "
        "auto (the cluster `ray start --head` made here) or HOST:6379 / ray://HOST:10001",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a sweep of another config in --out (or start this one over)",
    )
    p.set_defaults(handler=_run)
    return p
