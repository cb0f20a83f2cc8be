"""Agents by command-line name: build one from a settings dict, train it, get its curve."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd

from campaignrl._checks import check_choice
from campaignrl.agents.bandits import BANDIT_ALGORITHMS, BanditAgent, BanditConfig
from campaignrl.agents.base import Agent
from campaignrl.agents.evaluation import EVAL_COLUMNS, PolicyEvaluator
from campaignrl.agents.qlearning import QLearningAgent, QLearningConfig
from campaignrl.agents.training import TrainingResult, train_online
from campaignrl.envs.vector import CampaignVectorEnv

__all__ = ["LEARNERS", "config_class", "make_agent", "train_agent"]

LEARNERS: tuple[str, ...] = (*BANDIT_ALGORITHMS, "qlearning", "ppo")
"""Learning agents by command-line name."""


def config_class(name: str) -> type:
    """The settings dataclass of a learner."""
    check_choice(name, "agent", LEARNERS)
    if name == "qlearning":
        return QLearningConfig
    if name == "ppo":
        from campaignrl.agents.ppo import PPOConfig

        return PPOConfig
    return BanditConfig


def _build_config(name: str, params: dict[str, Any]) -> Any:
    cls = config_class(name)
    fields = {f.name for f in dataclasses.fields(cls)}
    if cls is BanditConfig:
        fields.discard("algorithm")
    unknown = sorted(set(params) - fields)
    if unknown:
        raise ValueError(
            f"unknown setting(s) {unknown} for agent {name!r}; settings are {sorted(fields)}"
        )
    params = dict(params)
    if cls is BanditConfig:
        params["algorithm"] = name
    for key, value in list(params.items()):
        if isinstance(value, list):  # YAML and JSON give lists where the dataclass has tuples
            params[key] = tuple(value)
    try:
        return cls(**params)
    except TypeError as exc:
        raise ValueError(f"agent {name!r}: {exc}") from None


def make_agent(
    name: str,
    env: CampaignVectorEnv,
    *,
    params: dict[str, Any] | None = None,
    total_timesteps: int,
    seed: int,
) -> Agent:
    """A learner called ``name`` with ``params`` (its config fields), seeded by ``seed``."""
    config = _build_config(name, params or {})
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[1])
    names, actions = env.encoder.feature_names, env.action_names
    if name == "ppo":
        from campaignrl.agents.ppo import PPOAgent

        return PPOAgent(env, config, seed=seed, rng=rng)
    if name == "qlearning":
        return QLearningAgent(names, actions, config, total_timesteps=total_timesteps, rng=rng)
    return BanditAgent(names, actions, config, rng)


def train_agent(
    agent: Agent,
    env: CampaignVectorEnv,
    *,
    total_timesteps: int,
    seed: int,
    progress: bool,
    evaluator: PolicyEvaluator | None = None,
) -> TrainingResult:
    """Train any learner: PPO through stable-baselines3, the others online.

    With ``evaluator`` the learning curve also holds evaluations of the policy so far on a
    fixed population (:mod:`campaignrl.agents.evaluation`).
    """
    from campaignrl.agents.ppo import PPOAgent

    if isinstance(agent, PPOAgent):
        import time

        start = time.perf_counter()
        curve = agent.learn(total_timesteps, progress_bar=progress, evaluator=evaluator)
        return TrainingResult(curve, time.perf_counter() - start, int(agent.model.num_timesteps))
    return train_online(
        agent,
        env,
        total_timesteps=total_timesteps,
        seed=seed,
        progress=progress,
        evaluator=evaluator,
    )


def empty_curve() -> pd.DataFrame:
    """A learning curve with no episodes."""
    return pd.DataFrame(columns=["timesteps", "episode", "value_per_customer", *EVAL_COLUMNS])
