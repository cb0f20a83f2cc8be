"""The ``campaignrl fit-sim`` command: decision logs -> a simulator directory (SIMDIR).

``add_parser(subparsers)`` registers it on the ``campaignrl`` parser; the handler raises
``ValueError`` on a log that cannot support a fit (the CLI prints it as one line and exits
with code 2) and ``FileExistsError`` for an existing ``--out`` without ``--overwrite``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "fit_sim_command"]


def _segments(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a positive integer or auto, got {text!r}"
        ) from None
    if not 1 <= value <= 50:
        raise argparse.ArgumentTypeError(f"must be in 1..50 or auto, got {text!r}")
    return value


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text!r}")
    return value


def _positive(text: str) -> int:
    value = _non_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def add_parser(subparsers: Any, parser_class: type[argparse.ArgumentParser] | None = None) -> None:
    """Add ``fit-sim`` to the ``campaignrl`` subcommands.

    Args:
        subparsers: The ``add_subparsers()`` action of the main parser.
        parser_class: Unused (``fit-sim`` has no nested subcommands); accepted so that it
            registers like ``campaignrl.ope.commands.register``.
    """
    p = subparsers.add_parser(
        "fit-sim",
        help="fit a customer simulator from decision logs (use it with --sim SIMDIR)",
        description="Fit segments, tastes, response and dynamics from a decision log and "
        "write them as a simulator directory (manifest.json + arrays.npz).",
    )
    p.set_defaults(handler=fit_sim_command)
    p.add_argument("--logs", type=Path, required=True, help="decision log (.parquet or .csv)")
    p.add_argument(
        "--customers",
        type=Path,
        default=None,
        help="customer table (.parquet or .csv): customer_id and numeric columns to segment on",
    )
    p.add_argument(
        "--feedback",
        type=Path,
        default=None,
        help="feedback text (.parquet or .csv): customer_id, text; topics join the segmentation",
    )
    p.add_argument("--out", type=Path, required=True, help="simulator directory to write (SIMDIR)")
    p.add_argument(
        "--segments",
        type=_segments,
        default="auto",
        help="number of segments, or auto: best silhouette over 2..8 (default: auto)",
    )
    p.add_argument("--topics", type=_positive, default=5, help="feedback topics (default: 5)")
    p.add_argument("--seed", type=_non_negative, default=0, help="seed of the fit (default: 0)")
    p.add_argument("--name", default="fitted", help="name of the fitted world (default: fitted)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out directory")
    p.add_argument(
        "--report",
        action="store_true",
        help="also write a fidelity report (report.md + PNG figures) into SIMDIR/report",
    )


def fit_sim_command(args: argparse.Namespace) -> int:
    """Fit, save and summarize; returns the exit code."""
    from campaignrl.simulators.fit.artifact import save_fitted
    from campaignrl.simulators.fit.fitting import fit_simulator

    out = Path(args.out)
    if (out.exists() or out.is_symlink()) and not args.overwrite:
        raise FileExistsError(
            f"argument --out: {str(out)!r} exists; pass --overwrite to replace it"
        )
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"argument --out: {str(out)!r} is a file; give a directory path")
    fitted = fit_simulator(
        args.logs,
        args.customers,
        args.feedback,
        segments=args.segments,
        seed=args.seed,
        name=args.name,
        n_topics=args.topics,
        progress=True,
    )
    path = save_fitted(fitted, out, overwrite=args.overwrite)
    diag = fitted.diagnostics
    spec = fitted.spec
    print(
        f"fitted {diag['rows']:,} decisions ({diag['customers']:,} customers x "
        f"{diag['periods']} periods): {len(spec.segments)} segments "
        f"({diag['segments']['chosen_by']}), tastes of rank {diag['tastes']['rank']} from "
        f"{diag['tastes']['source']}"
    )
    for seg in spec.segments:
        opens = "/".join(f"{v:.2f}" for v in seg.open_rates)
        print(
            f"  {seg.name:<12} share {seg.share:6.1%}  organic {seg.organic_rate:.3f}  "
            f"open {opens}  basket {seg.basket_median:.0f}  "
            f"opt-out x{seg.unsubscribe_multiplier:.2f}"
        )
    for note in fitted.notes:
        print(f"note: {note}")
    if args.report:
        from campaignrl.simulators.fit.report import fidelity_report

        rep = fidelity_report(
            fitted, args.logs, Path(path) / "report", seed=args.seed, feedback=args.feedback
        )
        k, n = rep.within("segment")
        print(
            f"fidelity report: {rep.paths['report']} ({k} of {n} per-segment open/conversion/"
            f"opt-out rates within 10%; Spearman of fitted-world values vs DR "
            f"{rep.spearman['dr']:.2f})"
        )
    print(f"wrote {path} (use it as --sim {path})")
    return 0
