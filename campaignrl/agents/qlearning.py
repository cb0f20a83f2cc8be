"""Tabular Q-learning over a documented discretization of the observation."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from campaignrl._checks import check_scalar
from campaignrl.agents.base import Transition
from campaignrl.agents.training import OnlineAgent
from campaignrl.envs.vector import CampaignVectorEnv
from campaignrl.policies.base import Exploration
from campaignrl.policies.kinds import TabularPolicy

__all__ = [
    "MAX_TABLE_ENTRIES",
    "QLearningAgent",
    "QLearningConfig",
    "check_table_size",
    "table_entries",
]

MAX_TABLE_ENTRIES = 20_000_000
"""largest Q-table (states x actions) an agent allocates: the table and its visit counts take
16 bytes per entry, 320 MB at this size (the default state on 19 actions: 1.5M entries)"""
_MAX_EDGES = 50
"""most bin edges per feature"""


def _check_bool(value: object, name: str) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"`{name}` must be true or false, got {type(value).__name__} {value!r}")


def _check_edges(value: object, name: str, *, unit_interval: bool = False) -> None:
    """Bin edges: a tuple of finite numbers, strictly increasing (at most 50)."""
    if not isinstance(value, tuple):
        raise TypeError(f"`{name}` must be a list of numbers, got {type(value).__name__} {value!r}")
    if len(value) > _MAX_EDGES:
        raise ValueError(f"`{name}` must have at most {_MAX_EDGES} edges, got {len(value)}")
    for i, edge in enumerate(value):
        check_scalar(edge, f"{name}[{i}]", (int, float), min_val=0.0)
        if unit_interval:
            check_scalar(edge, f"{name}[{i}]", (int, float), max_val=1.0)
        if i and edge <= value[i - 1]:
            raise ValueError(f"`{name}` must be strictly increasing, got {list(value)!r}")


@dataclass(frozen=True)
class QLearningConfig:
    """Settings of tabular Q-learning.

    The state is the observation cut into bins (all edges are on the scaled features of
    :mod:`campaignrl.envs.observation`): segment (one-hot), recency (<= 4, 8, 26 weeks, more),
    fatigue ``F`` (<= 0.5, 1, 2, 4, more), reachable per channel, whether the contact cap is
    reached, periods left (last period, last 20%, last half, earlier) and, with
    ``best_offer``, which offer the recommendation model scores highest for the customer.
    """

    gamma: float = 1.0
    """discount factor; 1 maximizes the campaign's total profit (the horizon is finite)"""
    n_step: int = 1
    """periods of observed rewards in each target before it bootstraps from ``Q`` (1 is
    Watkins's Q-learning). A contact's later cost (fatigue, opt-outs) often leaves the
    customer in the same fatigue bin, where a one-step target cannot see it; an n-step return
    sees the lower rewards themselves. The returns follow the exploring behaviour, so a long
    ``n`` learns the value of exploring instead (on ``fatigue``, seed 0: 32.6, 34.3, 34.8,
    35.2, 33.4 and 32.0 per customer for ``n`` = 1, 2, 3, 4, 8 and 26). On ``retail``'s
    coarse state (``experiments/retail.yaml``) ``n = 4`` lowers it from 45.1 to 42.3, hence
    the default of 1"""
    learning_rate_floor: float = 0.05
    """each (state, action) averages its targets (step size count/visits) until the step
    size reaches this floor, then keeps tracking with it"""
    epsilon_start: float = 1.0
    """exploration share at the start of training"""
    epsilon_end: float = 0.05
    """exploration share at the end of the decay, kept afterwards and in the exported policy"""
    exploration_fraction: float = 0.5
    """share of the training budget over which epsilon decays linearly"""
    recency_weeks: tuple[float, ...] = (4.0, 8.0, 26.0)
    """recency bin edges, in weeks (empty: recency is not part of the state)"""
    fatigue_levels: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
    """fatigue bin edges, in units of F (empty: fatigue is not part of the state)"""
    periods_left_edges: tuple[float, ...] = (0.05, 0.2, 0.5)
    """bin edges of the periods-left share (empty: time is not part of the state; with
    ``gamma = 1`` keep it, or values of the earlier bins grow with every update)"""
    reach_and_cap: bool = True
    """add whether each channel is reachable and whether the contact cap is reached"""
    best_offer: bool = False
    """add the customer's highest-affinity offer to the state: without it the table cannot
    tell customers apart by taste, and picks one offer per segment"""

    def __post_init__(self) -> None:
        check_scalar(self.gamma, "gamma", (int, float), min_val=0.0, max_val=1.0)
        check_scalar(self.n_step, "n_step", int, min_val=1)
        check_scalar(
            self.learning_rate_floor,
            "learning_rate_floor",
            (int, float),
            min_val=0.0,
            max_val=1.0,
            min_inclusive=False,
        )
        check_scalar(self.epsilon_start, "epsilon_start", (int, float), min_val=0.0, max_val=1.0)
        check_scalar(self.epsilon_end, "epsilon_end", (int, float), min_val=0.0, max_val=1.0)
        check_scalar(
            self.exploration_fraction,
            "exploration_fraction",
            (int, float),
            min_val=0.0,
            max_val=1.0,
        )
        _check_edges(self.recency_weeks, "recency_weeks")
        _check_edges(self.fatigue_levels, "fatigue_levels")
        _check_edges(self.periods_left_edges, "periods_left_edges", unit_interval=True)
        _check_bool(self.reach_and_cap, "reach_and_cap")
        _check_bool(self.best_offer, "best_offer")


def _state_bins(
    config: QLearningConfig, feature_names: tuple[str, ...]
) -> tuple[list[str], list[list[float]], list[list[str]]]:
    """The binned features with their edges, and the argmax groups, of ``config``'s state."""
    names = feature_names
    # Edges on the scaled features of campaignrl.envs.observation; a feature with no edges
    # is left out of the state.
    binned: list[tuple[str, list[float]]] = [(n, [0.5]) for n in names if n.startswith("segment=")]
    binned += [
        ("recency", [w / 52.0 for w in config.recency_weeks]),
        ("fatigue", [f / (1 + f) for f in config.fatigue_levels]),
    ]
    if config.reach_and_cap:
        binned += [(n, [0.5]) for n in names if n.startswith("reachable=")]
        binned.append(("cap_used", [0.999]))
    binned.append(("periods_left", list(config.periods_left_edges)))
    binned = [(n, e) for n, e in binned if e]
    missing = [n for n, _ in binned if n not in names]
    if missing:
        raise ValueError(f"Q-learning needs observation features {missing}")
    groups: list[list[str]] = []
    if config.best_offer:
        offers = [n for n in names if n.startswith("affinity=")]
        if len(offers) < 2:
            raise ValueError(
                f"`best_offer` needs at least 2 `affinity=<offer>` features, got {offers}"
            )
        groups = [offers]
    return [n for n, _ in binned], [e for _, e in binned], groups


def table_entries(config: QLearningConfig, feature_names: tuple[str, ...], n_actions: int) -> int:
    """States x actions of the Q-table ``config`` makes on these features."""
    _, edges, groups = _state_bins(config, feature_names)
    n_states = math.prod([len(e) + 1 for e in edges] + [len(g) for g in groups])
    return n_states * n_actions


def check_table_size(
    config: QLearningConfig, feature_names: tuple[str, ...], n_actions: int
) -> None:
    """Refuse a discretization whose Q-table exceeds :data:`MAX_TABLE_ENTRIES`."""
    entries = table_entries(config, feature_names, n_actions)
    if entries > MAX_TABLE_ENTRIES:
        raise ValueError(
            f"`recency_weeks`, `fatigue_levels`, `periods_left_edges`, `reach_and_cap` and "
            f"`best_offer` make a Q-table of {entries:,} entries (states x actions), over "
            f"{MAX_TABLE_ENTRIES:,}; use fewer bin edges"
        )


class QLearningAgent(OnlineAgent):
    """Epsilon-greedy tabular Q-learning, updated on each period's whole batch.

    ``Q(s_t, a_t) <- Q(s_t, a_t) + lr * (mean target over the batch's (s, a) rows - Q)`` with
    the n-step target

    ``G = r_t + gamma r_{t+1} + ... + gamma^{n-1} r_{t+n-1} + gamma^n max_{a' allowed}
    Q(s_{t+n}, a')``

    computed once ``s_{t+n}`` is seen; at the campaign's end the pending targets are the
    rewards alone. ``n = 1`` is one-step Q-learning. The n-step returns are not corrected for
    exploration (as in Rainbow).
    References: Watkins and Dayan, "Q-learning", Machine Learning 8, 1992; Sutton and Barto,
    "Reinforcement Learning: An Introduction", 2nd ed., 2018, section 7.3; Hessel et al.,
    "Rainbow: Combining Improvements in Deep Reinforcement Learning", AAAI 2018.

    Args:
        feature_names: Observation feature names.
        action_names: Action names.
        config: Hyperparameters and discretization.
        total_timesteps: Training budget in customer-steps (for the epsilon schedule).
        rng: Seeded Generator for exploration.
        env: The population env :meth:`learn` trains on (``None``: only ``update``).
        seed: Seed of the env's first reset in :meth:`learn`.
    """

    name: ClassVar[str] = "qlearning"

    def __init__(
        self,
        feature_names: tuple[str, ...],
        action_names: tuple[str, ...],
        config: QLearningConfig,
        total_timesteps: int,
        rng: np.random.Generator,
        *,
        env: CampaignVectorEnv | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(feature_names, action_names, env=env, seed=seed)
        check_scalar(total_timesteps, "total_timesteps", int, min_val=1)
        self.config = config
        self.total_timesteps = total_timesteps
        self.rng = rng
        self.timesteps = 0
        check_table_size(config, self.feature_names, self.n_actions)
        state_features, edges, argmax_over = _state_bins(config, self.feature_names)
        n_states = math.prod([len(e) + 1 for e in edges] + [len(g) for g in argmax_over])
        self._table = TabularPolicy(
            self.feature_names,
            self.action_names,
            state_features,
            edges,
            np.zeros((n_states, self.n_actions)),
            argmax_over=argmax_over,
        )
        self.q = self._table.table  # shared: the policy sees every update
        self.visits = np.zeros(self.q.shape, dtype=np.int64)
        self._pending: deque[_Pending] = deque()

    @property
    def epsilon(self) -> float:
        """Current exploration share (linear decay, then flat)."""
        cfg = self.config
        span = cfg.exploration_fraction * self.total_timesteps
        frac = 1.0 if span == 0 else min(1.0, self.timesteps / span)
        return cfg.epsilon_start + frac * (cfg.epsilon_end - cfg.epsilon_start)

    def probabilities(self, obs: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """Epsilon-greedy on Q at the current epsilon."""
        return Exploration("greedy", epsilon=self.epsilon).probabilities(
            self._table.scores(obs), masks
        )

    def update(self, transition: Transition) -> None:
        """Add a period of the population; update every target it completes."""
        tr = transition
        gamma = self.config.gamma
        n = tr.actions.shape[0]
        if self._pending and self._pending[0].states.shape[0] != n:
            raise ValueError(
                f"`n_step` {self.config.n_step} needs the same customers in every period "
                f"until the campaign ends, got {n} rows after {self._pending[0].states.shape[0]}"
            )
        self._pending.append(_Pending(self._table.states(tr.obs), tr.actions, np.zeros(n)))
        for entry in self._pending:
            entry.returns[entry.open] += gamma**entry.age * tr.rewards[entry.open]
            entry.age += 1
        states: list[np.ndarray] = []
        actions: list[np.ndarray] = []
        targets: list[np.ndarray] = []
        ended = np.asarray(tr.terminated, dtype=bool)
        if ended.any():  # the campaign's end: pending targets are the rewards alone
            for entry in self._pending:
                rows = np.flatnonzero(entry.open & ended)
                states.append(entry.states[rows])
                actions.append(entry.actions[rows])
                targets.append(entry.returns[rows])
                entry.open[rows] = False
        oldest = self._pending[0]
        if oldest.age == self.config.n_step:
            rows = np.flatnonzero(oldest.open)
            s_next = self._table.states(tr.next_obs[rows])
            best_next = np.where(tr.next_masks[rows], self.q[s_next], -np.inf).max(axis=1)
            states.append(oldest.states[rows])
            actions.append(oldest.actions[rows])
            targets.append(oldest.returns[rows] + gamma**oldest.age * best_next)
            oldest.open[:] = False
        while self._pending and not self._pending[0].open.any():
            self._pending.popleft()
        if states:
            self._learn(np.concatenate(states), np.concatenate(actions), np.concatenate(targets))
        self.timesteps += n

    def _learn(self, states: np.ndarray, actions: np.ndarray, targets: np.ndarray) -> None:
        """Move each visited ``Q(s, a)`` towards the mean of its targets."""
        q = self.q
        idx = states * self.n_actions + actions
        size = q.size
        counts = np.bincount(idx, minlength=size)
        sums = np.bincount(idx, weights=targets, minlength=size)
        hit = np.flatnonzero(counts)
        flat_q, flat_v = q.reshape(-1), self.visits.reshape(-1)
        flat_v[hit] += counts[hit]
        # Sample-average step sizes (count / visits) until the floor: early targets are
        # averaged, later ones tracked, as the bootstrapped targets keep moving.
        lr = np.maximum(counts[hit] / flat_v[hit], self.config.learning_rate_floor)
        flat_q[hit] += lr * (sums[hit] / counts[hit] - flat_q[hit])

    def policy(self) -> TabularPolicy:
        """Greedy on a copy of Q, with the final epsilon."""
        return TabularPolicy(
            self.feature_names,
            self.action_names,
            self._table.state_features,
            [e.tolist() for e in self._table.edges],
            self.q.copy(),
            Exploration("greedy", epsilon=self.config.epsilon_end),
            argmax_over=self._table.argmax_over,
        )


class _Pending:
    """A period's decisions whose n-step targets are not complete yet."""

    def __init__(self, states: np.ndarray, actions: np.ndarray, returns: np.ndarray) -> None:
        self.states = states
        self.actions = actions
        self.returns = returns
        """discounted rewards seen so far, per row"""
        self.open = np.ones(states.shape[0], dtype=bool)
        """rows still waiting for their target"""
        self.age = 0
        """periods of rewards in ``returns``"""
