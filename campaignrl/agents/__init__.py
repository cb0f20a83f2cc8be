"""Agents and baselines that decide which offer to send on which channel.

``PPOAgent`` and ``PPOConfig`` import torch: they load on first use.
"""

from __future__ import annotations

from typing import Any

from campaignrl.agents.bandits import BANDIT_ALGORITHMS, BanditAgent, BanditConfig
from campaignrl.agents.base import Agent, TrainingResult, Transition
from campaignrl.agents.baselines import (
    BASELINES,
    Baseline,
    MyopicOracle,
    NoContact,
    RandomPolicy,
    RestrainedOracle,
    RFMRules,
    StaticBest,
    baseline_names,
    make_baseline,
)
from campaignrl.agents.qlearning import QLearningAgent, QLearningConfig
from campaignrl.agents.registry import LEARNERS, make_agent, train_agent
from campaignrl.agents.training import OnlineAgent, train_online

__all__ = [
    "BANDIT_ALGORITHMS",
    "BASELINES",
    "LEARNERS",
    "Agent",
    "BanditAgent",
    "BanditConfig",
    "Baseline",
    "MyopicOracle",
    "NoContact",
    "OnlineAgent",
    "PPOAgent",
    "PPOConfig",
    "QLearningAgent",
    "QLearningConfig",
    "RFMRules",
    "RandomPolicy",
    "RestrainedOracle",
    "StaticBest",
    "TrainingResult",
    "Transition",
    "baseline_names",
    "make_agent",
    "make_baseline",
    "train_agent",
    "train_online",
]


def __getattr__(name: str) -> Any:
    if name in ("PPOAgent", "PPOConfig"):
        from campaignrl.agents import ppo

        return getattr(ppo, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
