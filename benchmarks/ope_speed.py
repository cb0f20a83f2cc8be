"""Speed and peak memory of the bandit estimators and the bootstrap on large synthetic logs.

    python benchmarks/ope_speed.py [--rows 1000000,10000000] [--actions 25]
        [--target per-row|context-free] [--bootstrap 1000] [--bootstrap-rows 1000000]
        [--intervals bootstrap,studentized] [--threads 1,0] [--seed 0] [--json out.json]

For each size: a log of ``n`` rows x ``A`` actions (random actions, propensities and rewards),
a target table (``(n, A)`` per row, or ``(A,)`` context-free) and reward-model predictions
``(n, A)``; times IPS, SNIPS and DR (``estimate_policy_value``, validation included, given the
predictions), then ``B``-resample bootstrap intervals of DR (``estimate_interval``; percentile
and studentized), and the bare resampling (``bootstrap_values``) with a given number of
threads (0: the default, every usable CPU). Peak memory is tracemalloc's
peak over each timed block (numpy reports its buffers to tracemalloc), with the inputs it
holds counted in, and the process's maximum resident set size at the end.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from campaignrl.logs.io import LoggedData
from campaignrl.ope import DR, IPS, SNIPS, TargetPolicy, bootstrap_values


def _sizes(text: str) -> list[int]:
    return [int(float(s)) for s in text.split(",") if s.strip()]


def make_inputs(
    n: int, n_actions: int, per_row: bool, rng: np.random.Generator
) -> tuple[LoggedData, TargetPolicy, np.ndarray]:
    """A random log, target and reward predictions."""
    actions = rng.integers(0, n_actions, n)
    propensities = rng.uniform(0.02, 1.0, n)
    rewards = rng.random(n)
    data = LoggedData(actions, rewards, propensities, tuple(f"a{k}" for k in range(n_actions)))
    if per_row:
        probs = rng.random((n, n_actions))
        probs /= probs.sum(axis=1, keepdims=True)
        target = TargetPolicy(probs, per_row=True)
    else:
        target = TargetPolicy(np.full(n_actions, 1.0 / n_actions))
    q_hat = rng.random((n, n_actions))
    return data, target, q_hat


def measure(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """``(result, seconds, tracemalloc peak in GB above the start)``."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    base, _ = tracemalloc.get_traced_memory()
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return result, seconds, (peak - base) / 1e9


def input_gb(data: LoggedData, target: TargetPolicy, q_hat: np.ndarray) -> float:
    arrays = (data.actions, data.rewards, data.propensities, target.probs, q_hat)
    return sum(a.nbytes for a in arrays) / 1e9


def time_estimators(
    n: int, n_actions: int, per_row: bool, rng: np.random.Generator
) -> dict[str, Any]:
    """Time IPS, SNIPS and DR on one log; print a table row."""
    data, target, q_hat = make_inputs(n, n_actions, per_row, rng)
    held = input_gb(data, target, q_hat)
    times, peaks = {}, {}
    for name, est in (("ipw", IPS()), ("snipw", SNIPS()), ("dr", DR())):
        _, times[name], peaks[name] = measure(
            lambda est=est: est.estimate_policy_value(data, target, estimated_rewards=q_hat)
        )
    total = sum(times.values())
    peak = held + max(peaks.values())
    print(
        f"| {n:,} | {n_actions} | {held:.2f} | {times['ipw']:.2f} | {times['snipw']:.2f} "
        f"| {times['dr']:.2f} | {total:.2f} | {peak:.2f} |",
        flush=True,
    )
    return {"rows": n, "inputs_gb": held, "seconds": times, "total_seconds": total, "peak_gb": peak}


def time_bootstrap(
    n: int,
    n_actions: int,
    per_row: bool,
    n_bootstrap: int,
    methods: Sequence[str],
    threads: Sequence[int],
    seed: int,
    rng: np.random.Generator,
) -> list[dict[str, Any]]:
    """Time DR bootstrap intervals and the bare resampling on one log; print table rows."""
    data, target, q_hat = make_inputs(n, n_actions, per_row, rng)
    held = input_gb(data, target, q_hat)
    out = []
    for method in methods:
        est, seconds, peak = measure(
            lambda method=method: DR().estimate_interval(
                data,
                target,
                estimated_rewards=q_hat,
                method=method,
                n_bootstrap=n_bootstrap,
                rng=np.random.default_rng(seed),
            )
        )
        print(
            f"| {n:,} | {n_bootstrap} | DR interval, {method} | {seconds:.2f} "
            f"| {held + peak:.2f} |",
            flush=True,
        )
        out.append(
            {
                "rows": n,
                "resamples": n_bootstrap,
                "what": f"interval-{method}",
                "seconds": seconds,
                "peak_gb": held + peak,
                "ci": [est.ci_low, est.ci_high],
            }
        )
    terms = DR().round_terms(data, target, estimated_rewards=q_hat)
    for n_threads in threads:
        _, seconds, peak = measure(
            lambda n_threads=n_threads: bootstrap_values(
                terms,
                n_bootstrap=n_bootstrap,
                rng=np.random.default_rng(seed),
                n_threads=n_threads or None,
            )
        )
        label = f"{n_threads} thread(s)" if n_threads else "default threads"
        print(
            f"| {n:,} | {n_bootstrap} | DR resamples, {label} | {seconds:.2f} "
            f"| {held + peak:.2f} |",
            flush=True,
        )
        out.append(
            {
                "rows": n,
                "resamples": n_bootstrap,
                "what": f"values-threads-{n_threads or 'default'}",
                "seconds": seconds,
                "peak_gb": held + peak,
            }
        )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=_sizes, default=[1_000_000, 10_000_000])
    parser.add_argument("--actions", type=int, default=25)
    parser.add_argument("--target", choices=("per-row", "context-free"), default="per-row")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--bootstrap-rows", type=_sizes, default=[1_000_000])
    parser.add_argument(
        "--intervals",
        default="bootstrap,studentized",
        help="comma-separated DR interval methods to time (studentized, bootstrap, normal)",
    )
    parser.add_argument(
        "--threads",
        type=_sizes,
        default=[1, 0],
        help="thread counts for the bare resampling (0: every usable CPU; empty: skip)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    per_row = args.target == "per-row"
    print(
        f"# ope_speed on {platform.processor() or platform.machine()}, Python "
        f"{platform.python_version()}, numpy {np.__version__}; target {args.target}"
    )
    print(
        "| rows | actions | inputs GB | IPS s | SNIPS s | DR s | total s "
        "| peak GB (inputs + work) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    rows = [time_estimators(n, args.actions, per_row, rng) for n in args.rows]
    print()
    print("| rows | resamples | what | seconds | peak GB (inputs + work) |")
    print("|---|---|---|---|---|")
    methods = [m for m in args.intervals.split(",") if m]
    boots = [
        row
        for n in args.bootstrap_rows
        for row in time_bootstrap(
            n, args.actions, per_row, args.bootstrap, methods, args.threads, args.seed, rng
        )
    ]
    max_rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # KB on Linux
    print(f"\nprocess max RSS: {max_rss_gb:.2f} GB (data generation included)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {
                    "estimators": rows,
                    "bootstrap": boots,
                    "max_rss_gb": max_rss_gb,
                    "target": args.target,
                    "actions": args.actions,
                },
                fh,
                indent=2,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
