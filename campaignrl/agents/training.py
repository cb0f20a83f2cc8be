"""Online training of an agent on a simulated population, with a learning curve."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from campaignrl._checks import check_scalar
from campaignrl._progress import progress_bar
from campaignrl.agents.base import Agent, Transition
from campaignrl.agents.evaluation import EvaluationSchedule, PolicyEvaluator
from campaignrl.envs.vector import CampaignVectorEnv

__all__ = ["TrainingResult", "train_online"]


@dataclass(frozen=True)
class TrainingResult:
    """What training produced besides the agent itself."""

    learning_curve: pd.DataFrame
    """one row per episode: ``timesteps`` (customer-steps so far), ``episode``,
    ``value_per_customer`` (profit per customer over that campaign, while learning) and, with
    an evaluator, ``eval_value``, ``eval_ci95_low``, ``eval_ci95_high`` (the policy so far on
    the evaluator's fixed population; NaN between evaluations)"""
    seconds: float
    """wall time of training"""
    timesteps: int
    """customer-steps taken"""


def train_online(
    agent: Agent,
    env: CampaignVectorEnv,
    *,
    total_timesteps: int,
    seed: int,
    progress: bool = False,
    evaluator: PolicyEvaluator | None = None,
) -> TrainingResult:
    """Let ``agent`` decide for the whole population every period and learn as it goes.

    Training stops at the first episode end at or after ``total_timesteps`` customer-steps,
    so every episode in the curve is complete. With ``evaluator``, the exported policy is
    evaluated on its fixed population now and then (:class:`EvaluationSchedule`).
    """
    check_scalar(total_timesteps, "total_timesteps", int, min_val=1)
    check_scalar(seed, "seed", int, min_val=0)
    start = time.perf_counter()
    obs, _ = env.reset(seed=seed)
    masks = env.action_masks()
    n = env.num_envs
    steps, episode, running = 0, 0, np.zeros(n)
    rows: list[dict[str, Any]] = []
    schedule = EvaluationSchedule(evaluator)
    with progress_bar(f"training {agent.name}", total_timesteps, progress) as advance:
        while True:
            actions, props = agent.act(obs, masks)
            next_obs, rewards, terminated, _, infos = env.step(actions)
            next_masks = env.action_masks()
            final = infos["final_obs"] if "final_obs" in infos else next_obs
            agent.update(
                Transition(obs, masks, actions, props, rewards, final, next_masks, terminated)
            )
            running += rewards
            steps += n
            advance(n)
            obs, masks = next_obs, next_masks
            if terminated.all():
                rows.append(
                    {
                        "timesteps": steps,
                        "episode": episode,
                        "value_per_customer": float(running.mean()),
                        **schedule.at_episode_end(steps, agent.policy),
                    }
                )
                episode += 1
                running[:] = 0.0
                if steps >= total_timesteps:
                    break
    schedule.finish(rows, agent.policy)
    return TrainingResult(pd.DataFrame(rows), time.perf_counter() - start, steps)
