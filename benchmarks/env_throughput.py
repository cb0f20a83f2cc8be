"""Customer-steps per second of every environment face, in one run.

Measures ``CampaignVectorEnv`` at N = 1, 100, 10,000 and 100,000 customers, the SB3
``VecEnv`` adapter, and gymnasium's ``SyncVectorEnv`` over single-customer ``CampaignEnv``s
(the way a population is simulated without a vectorized core). Actions are drawn up front,
uniformly, so only the environments are timed; episodes run through their autoresets.

    python benchmarks/env_throughput.py [--world retail] [--seconds 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable

import gymnasium as gym
import numpy as np

import campaignrl  # noqa: F401  (registers campaignrl/Campaign-v0)
from campaignrl.envs import CampaignSB3VecEnv, CampaignVectorEnv


def _rate(
    step: Callable[[np.ndarray], object], actions: np.ndarray, n: int, seconds: float
) -> float:
    """Customer-steps per second of ``step`` over at least ``seconds`` (after one warm-up)."""
    step(actions[0])
    done, start = 0, time.perf_counter()
    while True:
        for a in actions:
            step(a)
        done += len(actions)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return done * n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", default="retail")
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    parser.add_argument("--sync-envs", type=int, default=100, help="envs in the SyncVectorEnv")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    results: list[dict[str, object]] = []

    def record(face: str, n: int, rate: float) -> None:
        results.append({"face": face, "customers": n, "customer_steps_per_s": rate})
        print(f"{face:<42} N={n:>7,}  {rate:>14,.0f} customer-steps/s", flush=True)

    for n in (1, 100, 10_000, 100_000):
        env = CampaignVectorEnv(n, world=args.world)
        env.reset(seed=0)
        actions = rng.integers(0, env.single_action_space.n, size=(26, n))
        record("CampaignVectorEnv", n, _rate(env.step, actions, n, args.seconds))

    for n in (10_000, 100_000):
        venv = CampaignSB3VecEnv(CampaignVectorEnv(n, world=args.world))
        venv.seed(0)
        venv.reset()
        actions = rng.integers(0, venv.action_space.n, size=(26, n))
        record(
            "CampaignSB3VecEnv (stable-baselines3)", n, _rate(venv.step, actions, n, args.seconds)
        )

    n = args.sync_envs
    sync = gym.vector.SyncVectorEnv(
        [lambda: gym.make("campaignrl/Campaign-v0", world=args.world) for _ in range(n)]
    )
    sync.reset(seed=0)
    actions = rng.integers(0, 19, size=(26, n))
    sync_rate = _rate(sync.step, actions, n, args.seconds)
    record("gymnasium SyncVectorEnv of CampaignEnv", n, sync_rate)

    best = max(r["customer_steps_per_s"] for r in results if r["face"] == "CampaignVectorEnv")
    ratio = float(best) / sync_rate
    print(f"\nvector env at N=100,000 / SyncVectorEnv: {ratio:,.0f}x")
    if args.json:
        meta = {
            "world": args.world,
            "python": platform.python_version(),
            "machine": platform.machine(),
        }
        with open(args.json, "w") as fh:
            json.dump({"meta": meta, "results": results, "speedup_vs_sync": ratio}, fh, indent=2)


if __name__ == "__main__":
    main()
