"""Training throughput of every learner and batch-inference speed of every exported policy.

    python benchmarks/agents.py [--world retail] [--seconds 2] [--agents thompson,lints]
        [--json out.json]

Training: customer-steps per second while learning on a 10,000-customer population (PPO on
4,096). Inference: decisions per second of each exported numpy policy, in batches of 1,000
(probabilities and the sampled action with its propensity), on observations and masks from
the simulator.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from campaignrl.agents.registry import make_agent, train_agent
from campaignrl.envs import CampaignVectorEnv
from campaignrl.policies import ConstantPolicy, Exploration, Policy

TRAINING = {
    "epsilon-greedy": (10_000, 520_000, {}),
    "ucb1": (10_000, 520_000, {}),
    "thompson": (10_000, 520_000, {}),
    "linucb": (10_000, 520_000, {"alpha": 5.0}),
    "lingreedy": (10_000, 520_000, {}),
    "lints": (10_000, 520_000, {}),
    "qlearning": (10_000, 1_040_000, {}),
    "ppo": (4096, 425_984, {"ent_coef": 0.0, "n_epochs": 10}),
}


def inference_rate(policy: Policy, obs: np.ndarray, masks: np.ndarray, seconds: float) -> float:
    """Decisions per second in batches of 1,000."""
    rng = np.random.default_rng(0)
    batches = [(obs[i : i + 1000], masks[i : i + 1000]) for i in range(0, len(obs), 1000)]
    policy.sample(*batches[0], rng)
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for x, m in batches:
            policy.sample(x, m, rng)
        done += len(obs)
    return done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", default="retail")
    parser.add_argument("--seconds", type=float, default=2.0, help="time per inference figure")
    parser.add_argument("--agents", default=",".join(TRAINING), help="comma-separated subset")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    agents = args.agents.split(",")
    unknown = sorted(set(agents) - set(TRAINING))
    if unknown:
        parser.error(f"--agents: unknown {unknown}; known: {', '.join(TRAINING)}")
    torch.set_num_threads(1)
    eval_env = CampaignVectorEnv(20_000, world=args.world)
    eval_env.reset(seed=99)
    eval_env.step(np.zeros(20_000, dtype=np.int64))
    obs, masks = eval_env.observe(), eval_env.action_masks()
    results = []
    print(f"{'agent':<16} {'train steps/s':>14} {'policy kind':>12} {'decisions/s':>14}")
    with threadpool_limits(limits=1):  # single-threaded BLAS: fastest for these sizes here
        for name in agents:
            customers, steps, params = TRAINING[name]
            env = CampaignVectorEnv(customers, world=args.world)
            agent = make_agent(name, env, params=params, total_timesteps=steps, seed=0)
            res = train_agent(agent, env, total_timesteps=steps, seed=0, progress=False)
            policy = agent.policy()
            rate = inference_rate(policy, obs, masks, args.seconds)
            results.append(
                {
                    "agent": name,
                    "train_steps_per_s": res.timesteps / res.seconds,
                    "policy_kind": policy.kind,
                    "decisions_per_s": rate,
                }
            )
            speed = res.timesteps / res.seconds
            print(f"{name:<16} {speed:>14,.0f} {policy.kind:>12} {rate:>14,.0f}", flush=True)
        const = ConstantPolicy(
            eval_env.encoder.feature_names,
            eval_env.action_names,
            np.zeros(eval_env.simulator.n_actions),
            Exploration("softmax"),
        )
        rate = inference_rate(const, obs, masks, args.seconds)
        results.append(
            {
                "agent": "random (baseline)",
                "train_steps_per_s": None,
                "policy_kind": const.kind,
                "decisions_per_s": rate,
            }
        )
        print(f"{'random baseline':<16} {'-':>14} {const.kind:>12} {rate:>14,.0f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"world": args.world, "results": results}, fh, indent=2)


if __name__ == "__main__":
    main()
