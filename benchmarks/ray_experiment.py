"""Serial vs Ray wall time of one experiment config, and whether both write the same summary.

Runs ``campaignrl experiment run CONFIG`` twice in subprocesses (serial, then ``--ray local``:
a local Ray with every CPU of this machine), times each, and compares ``summary.csv`` byte for
byte (it holds no wall-clock column) and every exported policy file.

``--scale K`` divides every learner's ``timesteps`` by K (rounded up to whole campaigns by the
experiment itself) and ``--eval-customers`` replaces the evaluation size, for a run that fits
in a few minutes; the README says which scale a figure used.

    python benchmarks/ray_experiment.py --config experiments/retail.yaml --scale 10
        --eval-customers 20000
"""

from __future__ import annotations

import argparse
import hashlib
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml


def _scaled_config(config: Path, scale: int, eval_customers: int | None, folder: Path) -> Path:
    data = yaml.safe_load(config.read_text())
    for agent in data["agents"]:
        if "timesteps" in agent:
            agent["timesteps"] = math.ceil(agent["timesteps"] / scale)
    if eval_customers is not None:
        data["eval_customers"] = eval_customers
    data.pop("sweep", None)
    out = folder / f"{config.stem}-scale{scale}.yaml"
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out


def _run(config: Path, out: Path, ray: bool) -> float:
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "campaignrl.cli", "experiment", "run", str(config), "--out"]
    cmd += [str(out), *(["--ray", "local"] if ray else [])]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return seconds


def _digest(folder: Path) -> dict[str, str]:
    """sha256 of the summary and of every exported policy file, by relative path."""
    files = [folder / "summary.csv", *sorted((folder / "policies").rglob("*.npz"))]
    return {str(f.relative_to(folder)): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("experiments/retail.yaml"))
    parser.add_argument("--scale", type=int, default=1, help="divide timesteps by this")
    parser.add_argument("--eval-customers", type=int, default=None)
    parser.add_argument("--work", type=Path, default=Path("/tmp/ray_experiment"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    config = _scaled_config(args.config, args.scale, args.eval_customers, args.work)
    serial = _run(config, args.work / "serial", ray=False)
    print(f"serial: {serial:.1f} s", flush=True)
    on_ray = _run(config, args.work / "ray", ray=True)
    print(f"ray local: {on_ray:.1f} s", flush=True)
    a, b = _digest(args.work / "serial"), _digest(args.work / "ray")
    same = a == b
    print(
        f"{args.config} (timesteps / {args.scale}, eval_customers "
        f"{args.eval_customers or 'as in the file'}): serial {serial:.1f} s, Ray {on_ray:.1f} s "
        f"= {on_ray / serial:.2f}x; summary.csv and {len(a) - 1} policy files identical: {same}"
    )
    if not same:
        diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        print(f"differ: {diff}")


if __name__ == "__main__":
    main()
