"""The agent protocol: act on a batch, learn for a budget, hand over a Policy."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, NamedTuple

import numpy as np
import pandas as pd

from campaignrl.policies.base import Policy
from campaignrl.policies.sampling import sample_actions

if TYPE_CHECKING:
    from campaignrl.agents.evaluation import PolicyEvaluator
    from campaignrl.envs.vector import CampaignVectorEnv

__all__ = ["MAX_CUSTOMERS", "MAX_TIMESTEPS", "Agent", "TrainingResult", "Transition"]

MAX_CUSTOMERS = 2_000_000
"""most customers one simulated population may hold (training, evaluation, pilots): a
rollout keeps about 2 KB per customer (4.3 GB at 2M customers, measured on ``retail``)"""
MAX_TIMESTEPS = 10**12
"""largest training budget in customer-steps (about 12 days at 1M customer-steps/s)"""


class Transition(NamedTuple):
    """One period of a population, as an agent learns from it."""

    obs: np.ndarray
    """(n, d) observations the actions were chosen on"""
    masks: np.ndarray
    """(n, A) allowed actions at that time"""
    actions: np.ndarray
    """(n,) actions taken"""
    propensities: np.ndarray
    """(n,) probability the agent gave each taken action"""
    rewards: np.ndarray
    """(n,) profit observed"""
    next_obs: np.ndarray
    """(n, d) observations after the period (the final ones at an episode end)"""
    next_masks: np.ndarray
    """(n, A) allowed actions after the period"""
    terminated: np.ndarray
    """(n,) the campaign ended with this period"""


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


class Agent(ABC):
    """An agent decides for a batch of customers and learns on its own environment.

    ``probabilities`` is what the live agent would do; ``act`` samples from it with the
    agent's seeded Generator and returns each action's exact probability; ``learn`` collects
    experience on the population env the agent was built with and trains on it, as
    stable-baselines3's ``learn`` (collect -> train); ``policy`` returns the framework-free
    :class:`~campaignrl.policies.Policy`, whose probabilities equal the live agent's.
    Agents that learn from each period (bandits, Q-learning) derive from
    :class:`~campaignrl.agents.training.OnlineAgent` and also take ``update``.
    """

    name: ClassVar[str]
    """command-line name of the agent"""

    def __init__(self, feature_names: tuple[str, ...], action_names: tuple[str, ...]) -> None:
        self.feature_names = tuple(feature_names)
        self.action_names = tuple(action_names)

    @property
    def n_actions(self) -> int:
        """Number of actions."""
        return len(self.action_names)

    rng: np.random.Generator

    env: CampaignVectorEnv | None = None
    """the population env :meth:`learn` collects experience on"""

    @abstractmethod
    def probabilities(self, obs: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """``(n, A)`` probabilities the live agent gives each action (zero where masked)."""

    def act(self, obs: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Actions ``(n,)`` and their exact probabilities ``(n,)`` for a batch."""
        return sample_actions(self.probabilities(obs, masks), self.rng)

    @abstractmethod
    def learn(
        self,
        total_timesteps: int,
        *,
        progress: bool = False,
        evaluator: PolicyEvaluator | None = None,
    ) -> TrainingResult:
        """Collect experience and train for ``total_timesteps`` customer-steps.

        Budgets are rounded up to whole campaigns (PPO: rollouts). A second call goes on
        from where the first stopped. With ``evaluator``, the learning curve also holds
        evaluations of the exported policy on a fixed population
        (:mod:`campaignrl.agents.evaluation`).
        """

    @abstractmethod
    def policy(self) -> Policy:
        """The current decision rule as a numpy :class:`Policy`."""
