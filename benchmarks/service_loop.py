"""The loop closes: OPE of a candidate from decisions served over HTTP, against its truth.

    python benchmarks/service_loop.py [--world retail] [--epsilon 0.3] [--customers 12500]
        [--periods 8] [--seeds 0,1,2] [--truth-customers 400000] [--bootstrap 1000]
        [--policy-a DIR --policy-b DIR] [--out DIR] [--json out.json]

Issue #11's first "done when": serve policy A with exploration in the ``retail`` world, send
simulated customers through HTTP (``/v1/decisions:batch``) for a campaign, post their rewards
(``/v1/rewards:batch``), ``campaignrl logs export``; DR's estimate of a different policy B from
100,000 of those decisions (12,500 customers x 8 weeks) must be within 10% of B's true value,
with the truth inside its 95% interval. Each seed runs :func:`campaignrl.service.loop.run_loop`
(a fresh ``campaignrl serve``, population and exploration seed).

A and B (unless given): ``epsilon-greedy`` (tabular, per segment) and ``lingreedy`` (linear,
per segment), trained once in simulation (:func:`~campaignrl.service.loop.train_demo_policies`).
Targets:

- ``B served``: B as the service would serve it after the swap (its parameters with the
  service's ``--epsilon``): the estimate the loop's swap decision uses;
- ``B own``: B's artifact as trained (greedy, its own epsilon 0.05): a nearly deterministic
  target, harder for importance weighting.

Truths (``bandit_truth``, the definition of ``benchmarks/ope_accuracy.py``): each target's mean
profit per decision in the states A's logging visits, with the simulator's exact expected
rewards, over ``--truth-customers`` customers simulated once (seeds never used by a loop).
B's on-policy profit per decision (its own states) is printed for reference.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from campaignrl.policies import load_policy
from campaignrl.service.loop import (
    LoopConfig,
    bandit_truth,
    on_policy_value,
    ope_estimate,
    run_loop,
    served_policy,
    train_demo_policies,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--world", default="retail")
    parser.add_argument("--epsilon", type=float, default=0.3)
    parser.add_argument("--customers", type=int, default=12_500)
    parser.add_argument("--periods", type=int, default=8)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--truth-customers", type=int, default=400_000)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--window", type=float, default=2.0, help="reward window, seconds")
    parser.add_argument("--policy-a", type=Path)
    parser.add_argument("--policy-b", type=Path)
    parser.add_argument("--out", type=Path, help="keep every run here (default: temporary)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    start = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - start:7.1f}s] {msg}", file=sys.stderr, flush=True)

    root = args.out or Path(tempfile.mkdtemp(prefix="service-loop-"))
    root.mkdir(parents=True, exist_ok=True)
    policy_a, policy_b = args.policy_a, args.policy_b
    if policy_a is None or policy_b is None:
        log("training A (epsilon-greedy) and B (lingreedy)")
        policy_a, policy_b = train_demo_policies(args.world, args.periods, root / "policies")
    a, b = load_policy(policy_a), load_policy(policy_b)
    a_served, b_served = served_policy(a, args.epsilon), served_policy(b, args.epsilon)
    log(f"truths: {args.truth_customers:,} customers")
    truth = bandit_truth(
        args.world,
        a_served,
        {"A": a_served, "B": b_served, "B own": b},
        n_customers=args.truth_customers,
        periods=args.periods,
    )
    truth["B on-policy"] = on_policy_value(
        args.world, b_served, n_customers=args.truth_customers, periods=args.periods
    )
    truth["B own on-policy"] = on_policy_value(
        args.world, b, n_customers=args.truth_customers, periods=args.periods
    )
    log(f"truths: {json.dumps(truth)}")
    b_own_dir = root / "B-own"
    if not b_own_dir.exists():
        import shutil

        shutil.copytree(policy_b, b_own_dir)
    rows: list[dict[str, Any]] = []
    for seed in [int(s) for s in args.seeds.split(",") if s]:
        config = LoopConfig(
            world=args.world, policy_a=Path(policy_a), policy_b=Path(policy_b),
            epsilon=args.epsilon, customers=args.customers, periods=args.periods, seed=seed,
            window_seconds=args.window, bootstrap=args.bootstrap, out=root / f"seed{seed}",
        )  # fmt: skip

        def say(line: str, seed: int = seed) -> None:
            log(f"seed {seed}: {line}")

        result = run_loop(config, say=say, truths=truth)
        assert result.log_path is not None
        _, own = ope_estimate(result.log_path, b_own_dir, seed=seed, bootstrap=args.bootstrap)
        for target, est in (
            ("B served", result.estimate_b),
            ("B own", own),
            ("A", result.estimate_a),
        ):
            value = truth["B" if target == "B served" else target][0]
            rows.append(
                {
                    "seed": seed,
                    "target": target,
                    "decisions": result.decisions,
                    "exported": result.exported,
                    "late_rewards": result.late_rewards,
                    "decisions_per_second": result.decisions_per_second,
                    "estimate": est["value"],
                    "ci_low": est["ci_low"],
                    "ci_high": est["ci_high"],
                    "truth": value,
                    "relative_error": abs(est["value"] - value) / abs(value),
                    "covered": bool(est["ci_low"] <= value <= est["ci_high"]),
                    "ess": est["diagnostics"]["effective_sample_size"],
                    "swapped": result.swapped,
                }
            )
    print(report(rows, truth, args, str(policy_a), str(policy_b)))
    if args.json:
        args.json.write_text(
            json.dumps(
                {"args": {k: str(v) for k, v in vars(args).items()}, "truth": truth, "rows": rows},
                indent=2,
            )
        )
    log("done")
    return 0


def report(rows: list[dict[str, Any]], truth: dict[str, Any], args: Any, pa: str, pb: str) -> str:
    lines = [
        f"# The loop on '{args.world}': {args.customers:,} customers x {args.periods} weeks "
        f"through HTTP, A served with epsilon {args.epsilon}",
        "",
        f"A: {pa}; B: {pb}",
        "",
        "| target | truth per decision (se) |",
        "|---|---|",
    ]
    for name, (value, se) in truth.items():
        lines.append(f"| {name} | {value:.4f} ({se:.4f}) |")
    lines += [
        "",
        "| seed | target | decisions exported | DR estimate | 95% interval | truth | rel. error "
        "| truth inside | ESS | swapped | decisions/s (with the simulation) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['seed']} | {r['target']} | {r['exported']:,} | {r['estimate']:.4f} "
            f"| [{r['ci_low']:.4f}, {r['ci_high']:.4f}] | {r['truth']:.4f} "
            f"| {r['relative_error']:.1%} | {'yes' if r['covered'] else 'NO'} | {r['ess']:,.0f} "
            f"| {'yes' if r['swapped'] else 'no'} | {r['decisions_per_second']:,.0f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
