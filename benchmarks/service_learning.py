"""It learns in real time: online learning in the service against LinUCB trained offline.

    python benchmarks/service_learning.py [--world retail] [--customers 5000] [--periods 26]
        [--window 0.5] [--learn-every 0.5] [--seed 0] [--eval-customers 20000] [--json out.json]

Issue #11's second "done when": start ``campaignrl serve --learn`` from a uniform linear policy
(:func:`campaignrl.service.online.uniform_linear_policy_for_world`: zero weights, every allowed
action equally likely), run a simulated campaign through HTTP (``/v1/decisions:batch``, the
profits posted to ``/v1/rewards:batch`` right after each cohort's week), and let the learning
schedule publish versions. Every version published is an artifact in the versions folder; each
is evaluated on-policy in the simulator on one fixed population
(:func:`campaignrl.rollout.run_policy`, ``--eval-customers`` customers, the same seed for all)
and compared with ``campaignrl train --agent linucb`` on the same budget (the same customers x
periods, one campaign, updated every period as the service is).

Time: a week of the campaign is not a week here. The reward window is ``--window`` real seconds
(0.5 by default) and the service publishes at most every ``--learn-every`` seconds; after each
week the driver waits until the served version has learned from every decision made so far
(``training.online.rows`` of its manifest), as a week would give it time to. The joiner waits
the window plus its 1 s settling margin before a decision joins, so each week costs about 2 s
of waiting.

The value of a policy is its mean profit per customer over the campaign. The ratio the issue
asks for is ``value / LinUCB's value``; since sending nothing already earns most of it
(``no-contact``), the table also gives the share of LinUCB's lift over no-contact,
``(value - no-contact) / (LinUCB - no-contact)``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from campaignrl.agents.baselines import make_baseline
from campaignrl.policies import load_policy, save_policy
from campaignrl.rollout import FeaturePolicy, run_policy
from campaignrl.service.loop import (
    CampaignStats,
    Population,
    _cli,
    drive_campaign,
    start_server,
)
from campaignrl.service.online import uniform_linear_policy_for_world
from campaignrl.service.versions import PolicyVersions
from campaignrl.simulators.presets import get_world


def _rows_learned(policy_out: dict[str, Any]) -> int:
    online = (policy_out["manifest"].get("training") or {}).get("online") or {}
    return int(online.get("rows", 0))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--world", default="retail")
    parser.add_argument("--customers", type=int, default=5_000)
    parser.add_argument("--periods", type=int, default=26)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--window", type=float, default=0.5, help="reward window, seconds")
    parser.add_argument("--learn-every", type=float, default=0.5, help="publish period, seconds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-customers", type=int, default=20_000)
    parser.add_argument("--eval-seed", type=int, default=424_242)
    parser.add_argument("--wait-timeout", type=float, default=60.0)
    parser.add_argument("--out", type=Path, help="keep everything here (default: temporary)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    start = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - start:7.1f}s] {msg}", file=sys.stderr, flush=True)

    root = args.out or Path(tempfile.mkdtemp(prefix="service-learning-"))
    root.mkdir(parents=True, exist_ok=True)
    start_dir = save_policy(
        uniform_linear_policy_for_world(args.world), root / "uniform", overwrite=True
    )
    population = Population(args.world, args.customers, args.periods, args.seed, batch=args.batch)
    waits: list[float] = []
    with start_server(
        start_dir,
        root / "service",
        epsilon=None,
        seed=args.seed,
        window_seconds=args.window,
        learn=True,
        learn_every_seconds=args.learn_every,
        max_batch=args.batch,
    ) as server:
        log(f"serving the uniform linear policy with --learn at {server.client.url}")

        def caught_up(t: int, stats: CampaignStats) -> None:
            began = time.perf_counter()
            deadline = began + args.wait_timeout
            while True:
                current = server.client.get("/v1/policy")
                if _rows_learned(current) >= stats.decisions:
                    break
                if time.perf_counter() > deadline:
                    raise RuntimeError(
                        f"week {t + 1}: the service learned {_rows_learned(current)} of "
                        f"{stats.decisions} rows in {args.wait_timeout} s:\n{server.log_tail()}"
                    )
                time.sleep(0.05)
            waits.append(time.perf_counter() - began)
            log(
                f"week {t + 1}/{args.periods}: {stats.decisions:,} decisions, "
                f"{stats.rewards_posted:,} rewards ({stats.late_rewards} late); serving "
                f"v{current['version']} ({_rows_learned(current):,} rows learned, waited "
                f"{waits[-1]:.1f} s)"
            )

        stats = drive_campaign(
            server.client, population, run_id=f"learn{args.seed}", after_period=caught_up
        )
        versions_dir = server.versions_dir
    versions = PolicyVersions(versions_dir, signing_key=None).list()
    log(f"{len(versions)} versions in {versions_dir}; evaluating each on-policy")

    def evaluate(policy: Any) -> dict[str, Any]:
        result = run_policy(
            args.world, policy, n_customers=args.eval_customers, horizon=args.periods,
            seed=args.eval_seed,
        )  # fmt: skip
        return result.summary()

    rows = []
    for info in versions:
        manifest_rows = _rows_learned({"manifest": load_manifest(info.path)})
        rows.append(
            {
                "version": info.version,
                "path": str(info.path),
                "rows": manifest_rows,
                **evaluate(FeaturePolicy(load_policy(info.path))),
            }
        )
    log("training linucb offline on the same budget")
    budget = args.customers * args.periods
    _cli(
        [
            "train", "--world", args.world, "--agent", "linucb", "--timesteps", str(budget),
            "--customers", str(args.customers), "--periods", str(args.periods),
            "--seed", str(args.seed), "--evals", "0", "--out", str(root / "linucb"),
            "--overwrite",
        ]
    )  # fmt: skip
    linucb = evaluate(FeaturePolicy(load_policy(root / "linucb" / "policy")))
    baselines = {}
    for name in ("no-contact", "random"):
        baseline = make_baseline(name)
        baseline.fit(get_world(args.world), args.periods, np.random.default_rng(0))
        baselines[name] = evaluate(baseline)
    print(report(rows, linucb, baselines, stats, waits, args, budget))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "args": {k: str(v) for k, v in vars(args).items()},
                    "versions": rows,
                    "linucb": linucb,
                    "baselines": baselines,
                    "late_rewards": stats.late_rewards,
                    "decisions": stats.decisions,
                    "seconds": stats.seconds,
                },
                indent=2,
            )
        )
    log("done")
    return 0


def load_manifest(path: Path) -> dict[str, Any]:
    """The parsed ``manifest.json`` of an artifact."""
    from campaignrl.policies import read_manifest

    return dict(read_manifest(path))


def report(
    rows: list[dict[str, Any]],
    linucb: dict[str, Any],
    baselines: dict[str, dict[str, Any]],
    stats: CampaignStats,
    waits: list[float],
    args: Any,
    budget: int,
) -> str:
    ref = linucb["value_per_customer"]
    floor = baselines["no-contact"]["value_per_customer"]

    def cells(summary: dict[str, Any]) -> str:
        v = summary["value_per_customer"]
        lo, hi = summary["ci95"]
        return f"{v:.2f} [{lo:.2f}, {hi:.2f}] | {v / ref:.1%} | {(v - floor) / (ref - floor):.1%}"

    lines = [
        f"# Online learning through HTTP on '{args.world}': {args.customers:,} customers x "
        f"{args.periods} weeks = {budget:,} decisions; window {args.window} s, publish every "
        f"{args.learn_every} s",
        "",
        f"{stats.decisions:,} decisions in {stats.seconds:.1f} s (waits included: "
        f"{sum(waits):.1f} s), {stats.rewards_posted:,} rewards posted, "
        f"{stats.late_rewards} late. Values: profit per customer over {args.periods} weeks on "
        f"{args.eval_customers:,} fixed customers, 95% interval.",
        "",
        "| policy | rows learned | value per customer | of LinUCB | of LinUCB's lift over "
        "no-contact | artifact |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| v{r['version']} | {r['rows']:,} | {cells(r)} | `{r['path']}` |")
    lines.append(
        f"| linucb (offline, {budget:,} customer-steps) | {budget:,} | {cells(linucb)} | |"
    )
    for name, summary in baselines.items():
        lines.append(f"| {name} | - | {cells(summary)} | |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
