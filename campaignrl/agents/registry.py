"""Agents by command-line name: build one from a settings dict on its env, train it."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from campaignrl._checks import check_choice, check_scalar
from campaignrl.agents.bandits import BANDIT_ALGORITHMS, BanditAgent, BanditConfig
from campaignrl.agents.base import MAX_CUSTOMERS, MAX_TIMESTEPS, Agent, TrainingResult
from campaignrl.agents.evaluation import EVAL_COLUMNS, PolicyEvaluator
from campaignrl.agents.qlearning import QLearningAgent, QLearningConfig, check_table_size
from campaignrl.envs.observation import ObservationEncoder
from campaignrl.envs.vector import CampaignVectorEnv
from campaignrl.simulators.spec import WorldSpec

__all__ = [
    "LEARNERS",
    "SettingError",
    "TrainingBudget",
    "build_config",
    "check_sizes",
    "config_class",
    "make_agent",
    "train_agent",
    "training_budget",
]

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


class SettingError(ValueError):
    """A learner's settings refused; ``setting`` names the field (``None``: the set as a whole).

    ``str()`` reads ``agent 'ppo': `learning_rate` must be > 0.0, got -1``.
    """

    def __init__(self, agent: str, setting: str | None, problem: str) -> None:
        self.agent, self.setting, self.problem = agent, setting, problem
        field = f"`{setting}` " if setting else ""
        super().__init__(f"agent {agent!r}: {field}{problem}")


_FIELD_PROBLEM = re.compile(r"^`(?P<setting>[A-Za-z_][\w\[\]]*)` (?P<problem>.*)$", re.DOTALL)


def _setting_error(agent: str, exc: Exception) -> SettingError:
    """``exc`` from a config check (``"`field` must be ..."``) as a :class:`SettingError`."""
    match = _FIELD_PROBLEM.match(str(exc))
    if match is None:
        return SettingError(agent, None, str(exc))
    return SettingError(agent, match["setting"], match["problem"])


def build_config(name: str, params: dict[str, Any]) -> Any:
    """The settings dataclass of learner ``name`` from ``params``, every field checked.

    Raises:
        SettingError: (a ``ValueError``) naming an unknown setting or the field refused.
    """
    cls = config_class(name)
    fields = {f.name for f in dataclasses.fields(cls)}
    if cls is BanditConfig:
        fields.discard("algorithm")
    unknown = sorted(set(params) - fields)
    if unknown:
        raise SettingError(
            name,
            None,
            f"unknown setting(s) {unknown} for agent {name!r}; settings are {sorted(fields)}",
        )
    params = dict(params)
    if cls is BanditConfig:
        params["algorithm"] = name
    for key, value in list(params.items()):
        if isinstance(value, list):  # YAML and JSON give lists where the dataclass has tuples
            params[key] = tuple(value)
    try:
        return cls(**params)
    except (TypeError, ValueError) as exc:
        raise _setting_error(name, exc) from None


def check_sizes(
    name: str, config: Any, *, world: WorldSpec, n_customers: int, horizon: int
) -> None:
    """Refuse settings whose memory cannot fit: a Q-table or a PPO rollout too large.

    Raises:
        SettingError: Naming the settings and the size.
    """
    try:
        if name == "qlearning":
            encoder = ObservationEncoder(world, horizon)
            check_table_size(config, encoder.feature_names, world.catalog.n_actions)
        elif name == "ppo":
            from campaignrl.agents.ppo import check_rollout_size

            check_rollout_size(config, n_customers)
    except ValueError as exc:
        raise _setting_error(name, exc) from None


@dataclass(frozen=True)
class TrainingBudget:
    """A training budget in customer-steps, rounded up to whole campaigns (PPO: rollouts).

    Online learners train whole campaigns (every customer, every period), PPO whole rollouts
    of ``n_steps`` periods, so a budget that is not a multiple is rounded up: this is what
    is trained, counted by the progress bar, spread over by the evaluations and recorded.
    """

    requested: int
    """customer-steps asked for"""
    n_customers: int
    """customers trained on"""
    periods: int
    """periods per unit: the horizon (a campaign) or PPO's ``n_steps`` (a rollout)"""
    unit_name: str = "campaign"
    """``campaign`` or ``rollout``"""

    @property
    def unit(self) -> int:
        """Customer-steps per unit."""
        return self.n_customers * self.periods

    @property
    def units(self) -> int:
        """Units trained: the budget divided by the unit, rounded up."""
        return -(-self.requested // self.unit)

    @property
    def timesteps(self) -> int:
        """Customer-steps trained."""
        return self.units * self.unit

    def describe(self) -> str:
        """One line: the budget, how it is rounded and what is trained."""
        unit = f"{self.n_customers:,} customers x {self.periods} periods"
        if self.unit_name == "rollout":
            unit = f"{self.n_customers:,} customers x {self.periods} steps (n_steps)"
        trained = f"{self.units:,} {self.unit_name}{'s' if self.units != 1 else ''}"
        if self.timesteps == self.requested:
            return f"training {self.timesteps:,} customer-steps = {trained} of {unit}"
        return (
            f"{self.requested:,} customer-steps = {self.requested / self.unit:.2f} "
            f"{self.unit_name}s of {unit}; training whole {self.unit_name}s: {trained} = "
            f"{self.timesteps:,} customer-steps"
        )


def training_budget(
    name: str, config: Any, *, timesteps: int, n_customers: int, horizon: int
) -> TrainingBudget:
    """The budget learner ``name`` (settings ``config``) really trains for ``timesteps``.

    Examples:
        >>> budget = training_budget(
        ...     "ucb1", None, timesteps=100_000, n_customers=10_000, horizon=26
        ... )
        >>> budget.timesteps
        260000
        >>> print(budget.describe())  # doctest: +NORMALIZE_WHITESPACE
        100,000 customer-steps = 0.38 campaigns of 10,000 customers x 26 periods; training
        whole campaigns: 1 campaign = 260,000 customer-steps
    """
    check_scalar(timesteps, "timesteps", int, min_val=1, max_val=MAX_TIMESTEPS)
    check_scalar(n_customers, "n_customers", int, min_val=1, max_val=MAX_CUSTOMERS)
    check_scalar(horizon, "horizon", int, min_val=1)
    if name == "ppo":
        return TrainingBudget(timesteps, n_customers, config.n_steps, "rollout")
    return TrainingBudget(timesteps, n_customers, horizon)


def make_agent(
    name: str,
    env: CampaignVectorEnv,
    *,
    params: dict[str, Any] | None = None,
    total_timesteps: int,
    seed: int,
) -> Agent:
    """A learner called ``name`` with ``params`` (its config fields), seeded by ``seed``.

    The agent learns on ``env`` (``agent.learn(total_timesteps)``): PPO through
    stable-baselines3 on it, the others online, its first reset seeded by ``seed``.
    ``total_timesteps`` is the budget schedules are spread over (Q-learning's epsilon).
    """
    config = build_config(name, params or {})
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[1])
    names, actions = env.encoder.feature_names, env.action_names
    if name == "ppo":
        from campaignrl.agents.ppo import PPOAgent

        return PPOAgent(env, config, seed=seed, rng=rng)
    if name == "qlearning":
        return QLearningAgent(
            names, actions, config, total_timesteps=total_timesteps, rng=rng, env=env, seed=seed
        )
    return BanditAgent(names, actions, config, rng, env=env, seed=seed)


def train_agent(
    agent: Agent,
    env: CampaignVectorEnv,
    *,
    total_timesteps: int,
    seed: int,
    progress: bool,
    evaluator: PolicyEvaluator | None = None,
) -> TrainingResult:
    """``agent.learn(...)`` on the env it was built with (kept for callers of 0.x).

    ``env`` and ``seed`` must be those given to :func:`make_agent`: every agent learns on
    its own env now.

    Raises:
        ValueError: If ``env`` is not the agent's env.
    """
    if agent.env is not None and agent.env is not env:
        raise ValueError("`env` must be the env the agent was built with (make_agent's)")
    del seed  # the agent's own, given when it was built
    return agent.learn(total_timesteps, progress=progress, evaluator=evaluator)


def empty_curve() -> pd.DataFrame:
    """A learning curve with no episodes."""
    return pd.DataFrame(columns=["timesteps", "episode", "value_per_customer", *EVAL_COLUMNS])
