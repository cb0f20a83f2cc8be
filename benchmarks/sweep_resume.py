"""A 12-trial sweep killed mid-way (kill -9 of the driver) and resumed, against an unkilled run.

Runs ``experiments/sweep_example.yaml`` (12 trials of UCB1 x 2 seeds; ``--scale small``, the
default, shrinks its budgets and populations so the benchmark takes minutes, not an hour)
twice on a local Ray (or ``--ray ADDRESS``):

1. uninterrupted, into ``A/``;
2. into ``B/``, killed with SIGKILL (driver and the Ray it started) once ``--kill-after``
   trials have finished, then the same call again on ``B/``, which runs a new Tuner over
   the trials without a record in ``B/trials/`` (Tune's state is never restored).

Prints the wall times, the trials finished at the kill (the driver's records in ``trials/``),
the trials the resumed run ran, whether any finished trial ran again, and whether the two
``sweep.csv`` are the same bytes (their sha256)::

    .venv/bin/python benchmarks/sweep_resume.py [--scale small|full] [--kill-after 6]
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "experiments" / "sweep_example.yaml"

_RUN = """
import json, logging, sys, ray
address = sys.argv[3] or None
if address:
    ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
else:
    ray.init(num_cpus=int(sys.argv[4]), include_dashboard=False, log_to_driver=False,
             logging_level=logging.WARNING)
from campaignrl.scale.sweep import load_sweep, sweep_experiment
config, sweep, _ = load_sweep(sys.argv[1])
outcome = sweep_experiment(config, sweep, sys.argv[2])
print(json.dumps({"ran": list(outcome.ran), "failed": outcome.failed, "best": outcome.best,
                  "refused": outcome.refused}))
"""
"""the driver: a sweep on a fresh local Ray (or the given cluster), its outcome as JSON"""


def _small(raw: dict[str, Any]) -> dict[str, Any]:
    """The example with small budgets: 1 campaign of 2,000 customers, 5,000 evaluated."""
    raw = json.loads(json.dumps(raw))
    raw["eval_customers"] = 5_000
    for agent in raw["agents"]:
        agent["train_customers"] = 2_000
        agent["timesteps"] = 2_000 * raw["horizon"]
    return raw


def _session_pids(sid: int) -> list[int]:
    pids = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:
            pids.append(int(Path(stat).parent.name))
    return pids


def _kill_session(proc: subprocess.Popen[str]) -> None:
    """SIGKILL the driver and everything it started (its own session)."""
    for pid in _session_pids(proc.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=60)


def _start(config: Path, out: Path, address: str, cpus: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _RUN, str(config), str(out), address, str(cpus)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _finish(proc: subprocess.Popen[str]) -> dict[str, Any]:
    stdout, stderr = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"sweep failed ({proc.returncode}):\n{stderr[-3000:]}")
    _kill_session(proc)  # a local Ray's leftovers, if any
    return dict(json.loads(stdout.strip().splitlines()[-1]))


def _recorded(out: Path) -> set[int]:
    """Trials the driver recorded as finished: ``trials/trial_<i>.json``."""
    return {int(p.stem.removeprefix("trial_")) for p in (out / "trials").glob("trial_*.json")}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    """Run, kill, resume, compare; print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=("small", "full"), default="small")
    parser.add_argument("--kill-after", type=int, default=6, help="finished trials, then kill")
    parser.add_argument("--ray", default="", help="Ray address (default: a local Ray per run)")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray")
    parser.add_argument("--work", type=Path, default=None, help="folder (default: temporary)")
    args = parser.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="sweep-resume-"))
    work.mkdir(parents=True, exist_ok=True)
    raw = yaml.safe_load(EXAMPLE.read_text())
    config = work / "sweep.yaml"
    config.write_text(yaml.safe_dump(_small(raw) if args.scale == "small" else raw))

    started = time.perf_counter()
    a = _finish(_start(config, work / "A", args.ray, args.cpus))
    t_a = time.perf_counter() - started
    print(f"uninterrupted: {len(a['ran'])} trials in {t_a:.1f} s", flush=True)

    started = time.perf_counter()
    proc = _start(config, work / "B", args.ray, args.cpus)
    lines: queue.Queue[str] = queue.Queue()

    def read(stream: Any) -> None:
        for line in stream:
            lines.put(line)

    threading.Thread(target=read, args=(proc.stderr,), daemon=True).start()
    done = 0
    while done < args.kill_after:
        try:
            done += lines.get(timeout=1800).startswith("sweep: trial ")
        except queue.Empty:
            _kill_session(proc)
            raise SystemExit("no trial finished in 30 minutes") from None
    _kill_session(proc)  # a trial's line is printed after its record is written
    t_kill = time.perf_counter() - started
    before = _recorded(work / "B")
    print(
        f"killed (SIGKILL) after {t_kill:.1f} s: {done} trials reported done, "
        f"{len(before)} recorded in trials/",
        flush=True,
    )

    started = time.perf_counter()
    b = _finish(_start(config, work / "B", args.ray, args.cpus))
    t_b = time.perf_counter() - started
    rerun = sorted(set(b["ran"]) & before)
    same = (work / "A" / "sweep.csv").read_bytes() == (work / "B" / "sweep.csv").read_bytes()
    print(f"resumed: ran {len(b['ran'])} trials {sorted(b['ran'])} in {t_b:.1f} s")
    print(f"finished trials run again: {len(rerun)} {rerun}; records refused: {b['refused']}")
    print(f"killed + resumed: {t_kill + t_b:.1f} s (uninterrupted {t_a:.1f} s)")
    sha_a, sha_b = _sha(work / "A" / "sweep.csv"), _sha(work / "B" / "sweep.csv")
    print(f"sweep.csv sha256: A {sha_a[:16]}, B {sha_b[:16]}")
    print(f"same table: {same}; best A {a['best']} B {b['best']}; folder {work}")
    if not same or rerun or a["failed"] or b["failed"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
