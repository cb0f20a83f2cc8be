"""Streamed OPE of Parquet logs bigger than memory: speed, memory, equality and coverage.

    python benchmarks/ope_stream.py generate --rows 100000000 --out /tmp/bench_data/log100m
    python benchmarks/ope_stream.py evaluate --logs /tmp/bench_data/log100m [--rows N]
        [--batch-rows 262144] [--bootstrap 1000] [--workers N] [--ray local] [--json out.json]
    python benchmarks/ope_stream.py equal --logs /tmp/bench_data/log100m --rows 10000000
    python benchmarks/ope_stream.py coverage [--logs 100] [--rows 1000000]
        [--truth-customers 4000000]

``generate``: a log of ``--rows`` decisions (``rows / 8`` customers x 8 weeks of the
``retail`` world, 19 actions) made by the scaled simulate
(:func:`campaignrl.logs.scaled.simulate_dataset`: part files of 131,072 customers); logging
policy ``rfm-rules`` with 30% uniform exploration over the allowed actions.

The target of every figure is a fixed linear softmax policy over the 20 context features
(seeded weights, 20% exploration), saved as a policy artifact and loaded from its folder as
``campaignrl ope --policy`` does. Estimators: IPS, SNIPS and DR (reward model: ridge on
``[one-hot action | features]``, fitted on a hashed sample of 1M rows, cross-fitted over 2
folds of hashed customer ids); 95% intervals from 1,000 Poisson resamples of 65,536
buckets of customers.

``evaluate``: wall time end to end (files found, reward-model sample read and fitted, every
batch evaluated, intervals), rows per second, and the peak resident memory of this process
and its children (``getrusage``: Ray workers are children of the Ray processes, so with
``--ray`` measure with ``/usr/bin/time -v`` around a fresh ``ray start`` instead).
``--rows N`` reads only the first part files holding N rows. ``--workers N``: threads over
runs of row groups (default: the CPUs, at most 8; the results do not depend on it).

``equal``: the streamed estimates of the first part files holding ``--rows`` rows against
the in-memory estimators (:func:`campaignrl.ope.evaluate.evaluate`'s estimators on the same
rows read by :func:`campaignrl.logs.read_logs`, with the streamed reward model's predictions:
the two paths share the model, not its fit). Prints the largest absolute difference.

``coverage``: ``--logs`` logs of ``--rows`` rows (seeds 1000, 1001, ...), each written as 4
Parquet files and evaluated streamed; the share of logs whose 95% interval covers the truth
``E_{s ~ d_b}[sum_a pi_e(a | s) E[r | s, a]]`` (the target's expected reward per decision in
the states the logging policy visits, from the simulator's exact ``expected_reward()``),
estimated from ``--truth-customers`` customers of other seeds (its standard error printed
beside it: it must be far below the intervals' widths).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import Ridge

from campaignrl.agents.baselines import make_baseline
from campaignrl.envs.vector import CampaignVectorEnv
from campaignrl.ope import DR, IPS, SNIPS
from campaignrl.ope.stream import evaluate_stream, resolve_log_files

WORLD, PERIODS, EPSILON = "retail", 8, 0.3
ESTIMATORS = (IPS(), SNIPS(), DR())


def make_target() -> Any:
    """The fixed target: a linear softmax over the world's features, 20% exploration."""
    from campaignrl.policies.base import Exploration
    from campaignrl.policies.linear import LinearPolicy

    env = CampaignVectorEnv(2, world=WORLD, horizon=PERIODS)
    features = tuple(env.encoder.feature_names)
    actions = tuple(env.action_names)
    beta = np.random.default_rng(7).normal(scale=0.5, size=(len(actions), len(features)))
    return LinearPolicy(
        features, actions, beta, exploration=Exploration(kind="softmax", epsilon=0.2)
    )


def save_target(folder: Path) -> Path:
    """The target saved as a policy artifact in ``folder/policy``."""
    from campaignrl.policies.artifacts import save_policy

    return save_policy(make_target(), folder / "policy", overwrite=True)


def peak_rss_mb() -> float:
    """Peak resident memory of this process and of its waited-for children (MB)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024.0


def first_files(logs: Path, rows: int | None) -> list[Path]:
    """The first part files (in path order) that hold at least ``rows`` rows (all: None)."""
    import pyarrow.parquet as pq

    files = resolve_log_files(logs)
    if rows is None:
        return files
    out, total = [], 0
    for path in files:
        if total >= rows:
            break
        out.append(path)
        total += pq.read_metadata(path).num_rows
    return out


def cmd_generate(args: argparse.Namespace) -> dict[str, Any]:
    from campaignrl.logs.scaled import simulate_dataset

    customers = -(-args.rows // PERIODS)
    start = time.perf_counter()
    info = simulate_dataset(
        args.out,
        world=WORLD,
        policy=make_baseline("rfm-rules"),
        customers=customers,
        periods=PERIODS,
        seed=args.seed,
        epsilon=EPSILON,
        ray_address=args.ray,
        overwrite=args.overwrite,
        progress=True,
    )
    seconds = time.perf_counter() - start
    return {"rows": info.rows, "parts": info.parts, "seconds": seconds, "out": str(info.path)}


def cmd_evaluate(args: argparse.Namespace) -> dict[str, Any]:
    files = first_files(args.logs, args.rows)
    with tempfile.TemporaryDirectory() as tmp:
        policy_dir = save_target(Path(tmp))
        start = time.perf_counter()
        result = evaluate_stream(
            files,
            policy_dir,
            ESTIMATORS,
            reward_model=Ridge(alpha=1.0),
            model_sample=args.model_sample,
            n_bootstrap=args.bootstrap,
            seed=0,
            batch_rows=args.batch_rows,
            ray_address=args.ray,
            workers=args.workers,
            progress=True,
        )
        seconds = time.perf_counter() - start
    n = result.diagnostics.n_rounds
    return {
        "rows": n,
        "files": len(files),
        "seconds": seconds,
        "rows_per_second": n / seconds,
        "peak_rss_mb": peak_rss_mb(),
        "batch_rows": args.batch_rows,
        "bootstrap": args.bootstrap,
        "ray": args.ray,
        "workers": args.workers,
        "estimates": [e.to_dict() for e in result.estimates],
        "diagnostics": result.diagnostics.to_dict(),
        "model_rows": result.model_rows,
    }


def cmd_equal(args: argparse.Namespace) -> dict[str, Any]:
    import pyarrow.dataset as ds

    from campaignrl.logs.io import read_logs
    from campaignrl.ope.evaluate import evaluate
    from campaignrl.ope.stream import cluster_folds

    files = first_files(args.logs, args.rows)
    target = make_target()
    streamed = evaluate_stream(
        files,
        target,
        ESTIMATORS,
        reward_model=Ridge(alpha=1.0),
        model_sample=args.model_sample,
        n_bootstrap=100,
        seed=0,
        progress=True,
    )
    table = ds.dataset([str(f) for f in files], format="parquet").to_table()
    ids = table.column("customer_id")
    frame = table.drop_columns(["decision_id", "timestamp", "policy_version"]).to_pandas()
    del table
    data = read_logs(frame, action_names=target.action_names)
    del frame
    model = streamed.reward_model
    if model is None:  # DR is among the estimators
        raise RuntimeError("no reward model")
    q = model.predict(data, cluster_folds(ids, 2, "customer_id"))
    in_memory = evaluate(
        data, target, ESTIMATORS, estimated_rewards=q, method="normal", cluster="row"
    )
    rows: list[dict[str, Any]] = []
    for s, m in zip(streamed.estimates, in_memory.estimates, strict=True):
        rows.append(
            {
                "estimator": s.estimator,
                "streamed": s.value,
                "in_memory": m.value,
                "abs_diff": abs(s.value - m.value),
            }
        )
    return {
        "rows": data.n_rounds,
        "files": len(files),
        "estimates": rows,
        "max_abs_diff": max(r["abs_diff"] for r in rows),
        "ess_streamed": streamed.diagnostics.effective_sample_size,
        "ess_in_memory": in_memory.diagnostics.effective_sample_size,
    }


def truth(n_customers: int, chunk: int = 100_000) -> tuple[float, float]:
    """The target's expected reward per decision in the logging states, and its SE."""
    from campaignrl.policies.sampling import epsilon_mix, sample_actions

    base, target = make_baseline("rfm-rules"), make_target()
    means = []
    n_chunks = max(2, -(-n_customers // chunk))
    for c in range(n_chunks):
        seed = 10**6 + c
        env = CampaignVectorEnv(chunk, world=WORLD, horizon=PERIODS)
        obs, _ = env.reset(seed=seed)
        rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])
        total = 0.0
        for _ in range(PERIODS):
            sim = env.simulator
            masks = env.action_masks()
            q = sim.expected_reward()
            probs = target.probabilities(np.asarray(obs, dtype=np.float64), masks)
            total += float(np.einsum("ia,ia->", probs, q))
            logging = epsilon_mix(base.probabilities(obs, masks, sim), masks, EPSILON)
            actions, _ = sample_actions(logging, rng)
            obs, _, _, _, _ = env.step(actions)
        means.append(total / (chunk * PERIODS))
        print(f"truth chunk {c + 1}/{n_chunks}: {means[-1]:.5f}", file=sys.stderr)
    arr = np.asarray(means)
    return float(arr.mean()), float(arr.std(ddof=1) / np.sqrt(arr.size))


def cmd_coverage(args: argparse.Namespace) -> dict[str, Any]:
    from campaignrl.rollout import run_policy

    value, se = truth(args.truth_customers)
    print(f"truth {value:.5f} (se {se:.5f})", file=sys.stderr)
    target = make_target()
    customers = args.rows // PERIODS
    covered = {e.estimator_name: 0 for e in ESTIMATORS}
    widths: dict[str, list[float]] = {e.estimator_name: [] for e in ESTIMATORS}
    errors: dict[str, list[float]] = {e.estimator_name: [] for e in ESTIMATORS}
    start = time.perf_counter()
    for i in range(args.logs):
        log = run_policy(
            WORLD,
            make_baseline("rfm-rules"),
            n_customers=customers,
            horizon=PERIODS,
            seed=1000 + i,
            epsilon=EPSILON,
            record=True,
        ).log
        if log is None:
            raise RuntimeError("no log")
        with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
            for k, part in enumerate(np.array_split(np.arange(len(log)), 4)):
                log.iloc[part].to_parquet(Path(tmp) / f"part-{k}.parquet", index=False)
            del log
            result = evaluate_stream(
                tmp,
                target,
                ESTIMATORS,
                reward_model=Ridge(alpha=1.0),
                model_sample=args.model_sample,
                n_bootstrap=args.bootstrap,
                seed=i,
            )
        for e in result.estimates:
            covered[e.estimator] += int(e.ci_low <= value <= e.ci_high)
            widths[e.estimator].append(e.ci_high - e.ci_low)
            errors[e.estimator].append(e.value - value)
        print(
            f"log {i + 1}/{args.logs}: "
            + ", ".join(
                f"{e.estimator} {e.value:.4f} [{e.ci_low:.4f}, {e.ci_high:.4f}]"
                for e in result.estimates
            )
            + f" ({time.perf_counter() - start:.0f} s)",
            file=sys.stderr,
        )
    return {
        "logs": args.logs,
        "rows": customers * PERIODS,
        "truth": value,
        "truth_se": se,
        "coverage": {k: v / args.logs for k, v in covered.items()},
        "mean_width": {k: float(np.mean(v)) for k, v in widths.items()},
        "sd_of_estimates": {k: float(np.std(v, ddof=1)) for k, v in errors.items()},
        "mean_error": {k: float(np.mean(v)) for k, v in errors.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate")
    gen.add_argument("--rows", type=int, required=True)
    gen.add_argument("--out", type=Path, required=True)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--ray", default=None)
    gen.add_argument("--overwrite", action="store_true")
    for name in ("evaluate", "equal"):
        p = sub.add_parser(name)
        p.add_argument("--logs", type=Path, required=True)
        p.add_argument("--rows", type=int, default=None)
        p.add_argument("--model-sample", type=int, default=1_000_000)
        if name == "evaluate":
            p.add_argument("--batch-rows", type=int, default=1 << 18)
            p.add_argument("--bootstrap", type=int, default=1000)
            p.add_argument("--ray", default=None)
            p.add_argument(
                "--workers",
                type=int,
                default=None,
                help="threads over files without Ray (default: the CPUs, at most 8)",
            )
    cov = sub.add_parser("coverage")
    cov.add_argument("--logs", type=int, default=100)
    cov.add_argument("--rows", type=int, default=1_000_000)
    cov.add_argument("--truth-customers", type=int, default=4_000_000)
    cov.add_argument("--bootstrap", type=int, default=1000)
    cov.add_argument("--model-sample", type=int, default=1_000_000)
    cov.add_argument("--tmp", default=None, help="folder for the logs' files")
    for p in (gen, cov, *(sub.choices[n] for n in ("evaluate", "equal"))):
        p.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = parser.parse_args(argv)
    handler = {
        "generate": cmd_generate,
        "evaluate": cmd_evaluate,
        "equal": cmd_equal,
        "coverage": cmd_coverage,
    }[args.command]
    result = handler(args)
    text = json.dumps(result, indent=2, default=float)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
