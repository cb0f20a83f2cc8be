"""Online training of an agent on a simulated population, with a learning curve."""

from __future__ import annotations

import time
from abc import abstractmethod
from typing import Any

import numpy as np
import pandas as pd

from campaignrl._checks import check_scalar
from campaignrl._progress import progress_bar
from campaignrl.agents.base import Agent, TrainingResult, Transition
from campaignrl.agents.evaluation import EvaluationSchedule, PolicyEvaluator
from campaignrl.envs.vector import CampaignVectorEnv

__all__ = ["OnlineAgent", "TrainingResult", "train_online"]


class OnlineAgent(Agent):
    """An agent that learns from every period it decides (bandits, Q-learning).

    ``learn`` is :func:`train_online` on the population env given at construction (or by
    :meth:`set_env`): the first call resets it with ``seed``; later calls reset it unseeded,
    so they draw new customers from the same stream instead of replaying the first ones.

    Args:
        feature_names: Observation feature names.
        action_names: Action names.
        env: The population env :meth:`learn` trains on (``None``: only ``update``).
        seed: Seed of the env's first reset in :meth:`learn`.
    """

    def __init__(
        self,
        feature_names: tuple[str, ...],
        action_names: tuple[str, ...],
        *,
        env: CampaignVectorEnv | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(feature_names, action_names)
        self.env = None
        self._reset_seed: int | None = None
        if env is not None:
            self.set_env(env, seed=seed)

    def set_env(self, env: CampaignVectorEnv, *, seed: int) -> None:
        """Train on ``env`` from now on; its first reset in :meth:`learn` uses ``seed``."""
        check_scalar(seed, "seed", int, min_val=0)
        names, actions = tuple(env.encoder.feature_names), tuple(env.action_names)
        if names != self.feature_names or actions != self.action_names:
            raise ValueError(
                "`env` must have the agent's features and actions, got features "
                f"{list(names)} and actions {list(actions)}"
            )
        self.env, self._reset_seed = env, seed

    @abstractmethod
    def update(self, transition: Transition) -> None:
        """Learn from one period of the population."""

    def learn(
        self,
        total_timesteps: int,
        *,
        progress: bool = False,
        evaluator: PolicyEvaluator | None = None,
    ) -> TrainingResult:
        """:func:`train_online` on the agent's env for ``total_timesteps`` customer-steps."""
        if self.env is None:
            raise ValueError(
                f"{type(self).__name__} has no env to learn on: pass `env` when building it "
                "(make_agent does) or call set_env(env, seed=...)"
            )
        result = train_online(
            self,
            self.env,
            total_timesteps=total_timesteps,
            seed=self._reset_seed,
            progress=progress,
            evaluator=evaluator,
        )
        self._reset_seed = None  # the next call continues the env's stream
        return result


def train_online(
    agent: OnlineAgent,
    env: CampaignVectorEnv,
    *,
    total_timesteps: int,
    seed: int | None,
    progress: bool = False,
    evaluator: PolicyEvaluator | None = None,
) -> TrainingResult:
    """Let ``agent`` decide for the whole population every period and learn as it goes.

    Training stops at the first episode end at or after ``total_timesteps`` customer-steps,
    so every episode in the curve is complete. With ``evaluator``, the exported policy is
    evaluated on its fixed population now and then (:class:`EvaluationSchedule`).
    ``seed`` seeds the env's reset (``None``: it continues its random stream).
    """
    check_scalar(total_timesteps, "total_timesteps", int, min_val=1)
    if seed is not None:
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
