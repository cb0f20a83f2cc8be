"""Rows per second and peak memory of the scaled ``simulate`` (a partitioned Parquet log).

Simulates ``--customers`` customers for ``--periods`` periods with a logging policy into a
dataset folder under ``--out`` (removed afterwards unless ``--keep``), and prints the wall
time, decisions (rows) per second, the size on disk, the peak resident memory of this process
(``ru_maxrss``) and of its whole process tree (this process and every descendant, summed,
sampled every 0.2 s from ``/proc``; with ``--ray local`` that includes Ray's own processes
and its workers). 100M rows = 10M customers x 10 periods (19 actions on ``retail``):

    python benchmarks/simulate_scale.py --customers 1000000 --periods 10
    python benchmarks/simulate_scale.py --customers 10000000 --periods 10 [--ray local]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import threading
import time
from pathlib import Path

import numpy as np

from campaignrl.agents.baselines import make_baseline
from campaignrl.logs.scaled import BLOCK_CUSTOMERS, CHUNK_CUSTOMERS, simulate_dataset
from campaignrl.simulators.presets import get_world


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process (all its threads) and its reaped children.

    On a shared machine the wall time measures the neighbours too; CPU time does not (Ray
    workers are not counted: they are not this process's children).
    """
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _tree_rss() -> tuple[int, int]:
    """(sum, largest) resident bytes of this process and all its descendants (Linux /proc)."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    page = os.sysconf("SC_PAGE_SIZE")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while we looked
            continue
        parents[int(entry)] = int(fields[1])
        rss[int(entry)] = int(fields[21]) * page
    me = os.getpid()
    tree = {me}
    grew = True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in tree and pid not in tree:
                tree.add(pid)
                grew = True
    sizes = [rss.get(p, 0) for p in tree]
    return sum(sizes), max(sizes)


class _Sampler(threading.Thread):
    """Peak of :func:`_tree_rss` while it runs."""

    def __init__(self, every: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.every = every
        self.stop = threading.Event()
        self.peak_sum = 0
        self.peak_one = 0

    def run(self) -> None:
        while not self.stop.is_set():
            total, one = _tree_rss()
            self.peak_sum, self.peak_one = max(self.peak_sum, total), max(self.peak_one, one)
            self.stop.wait(self.every)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--periods", type=int, default=10)
    parser.add_argument("--world", default="retail")
    parser.add_argument("--policy", default="random", help="baseline name (default: random)")
    parser.add_argument("--epsilon", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chunk-customers", type=int, default=CHUNK_CUSTOMERS)
    parser.add_argument("--block-customers", type=int, default=BLOCK_CUSTOMERS)
    parser.add_argument("--ray", default=None, help="Ray address: local, auto or host:port")
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench_data/simulate_scale"))
    parser.add_argument("--keep", action="store_true", help="keep the dataset")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args()

    policy = make_baseline(args.policy)
    # as the CLI does: a baseline's pilot (static-best) gets its own stream
    policy.fit(get_world(args.world), args.periods, np.random.default_rng([args.seed, 1]))
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    sampler = _Sampler()
    sampler.start()
    start, cpu_start = time.perf_counter(), _cpu_seconds()
    info = simulate_dataset(
        args.out,
        world=args.world,
        policy=policy,
        customers=args.customers,
        periods=args.periods,
        seed=args.seed,
        chunk_customers=args.chunk_customers,
        block_customers=args.block_customers,
        epsilon=args.epsilon,
        ray_address=args.ray,
        overwrite=True,
    )
    elapsed, cpu = time.perf_counter() - start, _cpu_seconds() - cpu_start
    sampler.stop.set()
    sampler.join()
    disk = sum(p.stat().st_size for p in info.path.iterdir())
    figures = {
        "customers": args.customers,
        "periods": args.periods,
        "rows": info.rows,
        "parts": info.parts,
        "chunk_customers": info.manifest["chunk_customers"],
        "block_customers": info.manifest["block_customers"],
        "ray": args.ray,
        "seconds": elapsed,
        "rows_per_s": info.rows / elapsed,
        "cpu_seconds": cpu,
        "rows_per_cpu_s": info.rows / cpu,
        "bytes_on_disk": disk,
        "driver_peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "driver_rss_after_imports": rss_before,
        "tree_peak_rss": sampler.peak_sum,
        "largest_process_peak_rss": sampler.peak_one,
        "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
    }
    print(
        f"{info.rows:,} rows ({args.customers:,} customers x {args.periods} periods, "
        f"{info.parts} parts, ray={args.ray}) in {elapsed:,.1f} s: "
        f"{figures['rows_per_s']:,.0f} rows/s ({cpu:,.1f} CPU-s of this process and its "
        f"waited-for children: {figures['rows_per_cpu_s']:,.0f} rows per CPU-s); "
        f"{disk / 1e9:.2f} GB on disk; peak RSS "
        f"{figures['driver_peak_rss'] / 2**20:,.0f} MiB (driver; "
        f"{rss_before / 2**20:,.0f} MiB after imports), "
        f"{sampler.peak_sum / 2**20:,.0f} MiB (process tree), "
        f"{sampler.peak_one / 2**20:,.0f} MiB (largest process)",
        flush=True,
    )
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1) + "\n")
    if not args.keep:
        shutil.rmtree(info.path)


if __name__ == "__main__":
    main()
