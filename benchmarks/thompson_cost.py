"""Where the time of a linear Thompson (``lints``) policy goes, and how it depends on overlap.

    python benchmarks/thompson_cost.py [--world retail] [--alphas 1,0.5,0.25,0.1,0.03,0]
        [--seconds 2] [--policy DIR]

Trains ``lints`` as ``benchmarks/agents.py`` does (or loads ``--policy``), then, for the
trained posterior rescaled to each ``alpha``, prints the microseconds per decision of the
posterior (means and standard deviations), of the exact Thompson probabilities, and of the
whole ``sample`` call, with the share of rows that keep three or more candidate actions
after pruning (those need the quadrature), in batches of 1,000.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
from threadpoolctl import threadpool_limits

from campaignrl.agents.registry import make_agent, train_agent
from campaignrl.envs import CampaignVectorEnv
from campaignrl.policies import load_policy
from campaignrl.policies.gaussian_argmax import gaussian_argmax, prune
from campaignrl.policies.thompson import GaussianThompsonPolicy


def per_row(fn: Callable[[int], object], n_rows: int, seconds: float) -> float:
    """Microseconds per row of ``fn(start)`` over batches of 1,000 rows, repeated ``seconds``."""
    fn(0)
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for i in range(0, n_rows, 1000):
            fn(i)
        done += n_rows
    return (time.perf_counter() - start) / done * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", default="retail")
    parser.add_argument("--alphas", default="1,0.5,0.25,0.1,0.03,0")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--policy", default=None, help="a saved lints policy directory")
    args = parser.parse_args()
    env = CampaignVectorEnv(20_000, world=args.world)
    env.reset(seed=99)
    env.step(np.zeros(20_000, dtype=np.int64))
    obs, masks = env.observe(), env.action_masks()
    if args.policy:
        trained = load_policy(args.policy)
    else:
        train_env = CampaignVectorEnv(10_000, world=args.world)
        agent = make_agent("lints", train_env, params={}, total_timesteps=520_000, seed=0)
        train_agent(agent, train_env, total_timesteps=520_000, seed=0, progress=False)
        trained = agent.policy()
    if not isinstance(trained, GaussianThompsonPolicy):
        parser.error(f"--policy: expected a lints (Gaussian Thompson) policy, got {trained.kind}")
    print(f"trained alpha {trained.alpha}; {obs.shape[0]:,} observations of {args.world}")
    header = ("alpha", "rows >= 3 cand", "mean cand", "posterior us", "probs us", "sample us")
    print(" ".join(f"{h:>14}" for h in header), " decisions/s")
    rng = np.random.default_rng(0)
    n = obs.shape[0]
    with threadpool_limits(limits=1):
        for alpha in (float(a) for a in args.alphas.split(",")):
            policy = GaussianThompsonPolicy(
                trained.feature_names,
                trained.action_names,
                trained.beta,
                trained.a_inv,
                alpha,
                interact_with=trained.interact_with,
                exploration=trained.exploration,
            )
            means, sds = policy.posterior(obs)
            count = prune(means, sds, masks)[2].sum(axis=1)
            t_post = per_row(lambda i, p=policy: p.posterior(obs[i : i + 1000]), n, args.seconds)
            t_prob = per_row(
                lambda i, m=means, s=sds: gaussian_argmax(
                    m[i : i + 1000], s[i : i + 1000], masks[i : i + 1000]
                ),
                n,
                args.seconds,
            )
            t_all = per_row(
                lambda i, p=policy: p.sample(obs[i : i + 1000], masks[i : i + 1000], rng),
                n,
                args.seconds,
            )
            cells = (f"{alpha:g}", f"{np.mean(count >= 3):.0%}", f"{count.mean():.1f}")
            times = (f"{t_post:.2f}", f"{t_prob:.2f}", f"{t_all:.2f}")
            print(" ".join(f"{c:>14}" for c in cells + times), f"{1e6 / t_all:>12,.0f}", flush=True)


if __name__ == "__main__":
    main()
