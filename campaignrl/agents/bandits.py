"""Bandit agents on MABWiser, with exact propensities from our own seeded sampling.

MABWiser learns (``partial_fit`` on each period's batch) and gives the scores; the
exploration is ours, drawn from a seeded ``numpy.random.Generator``, so every decision
carries its true probability (MABWiser exposes none). To that end MABWiser's own epsilon is
set to 0 and its scores are read back from its fitted parameters:

- ``epsilon-greedy`` and ``ucb1`` learn one context-free bandit per segment (the segment
  model's clusters); their policy is a table segment x action of MABWiser's expectations
  (UCB1's include its confidence bonus), greedy, mixed with ``epsilon`` uniform exploration.
- ``linucb`` and ``lingreedy`` learn per-action ridge regressions on the observation; their
  policy is :class:`~campaignrl.policies.LinearPolicy` built from MABWiser's ``beta`` and
  ``A^{-1}`` (LinUCB adds ``alpha * sqrt(x^T A^{-1} x)``), greedy, mixed with ``epsilon``.

The first ``warmup_periods`` periods are uniform over allowed actions, so every arm has data
before the first greedy decision.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from mabwiser.mab import MAB, LearningPolicy
from threadpoolctl import threadpool_limits

from campaignrl._checks import check_choice, check_scalar
from campaignrl.agents.base import Agent, Transition
from campaignrl.policies.base import Exploration, Policy
from campaignrl.policies.kinds import LinearPolicy, TabularPolicy
from campaignrl.policies.sampling import uniform_probabilities

__all__ = ["BANDIT_ALGORITHMS", "BanditAgent", "BanditConfig"]

BANDIT_ALGORITHMS = ("epsilon-greedy", "ucb1", "linucb", "lingreedy")
"""Bandit algorithms by command-line name."""

_CONTEXT_FREE = ("epsilon-greedy", "ucb1")


@dataclass(frozen=True)
class BanditConfig:
    """Settings of a bandit agent."""

    algorithm: str = "linucb"
    """one of ``epsilon-greedy``, ``ucb1``, ``linucb``, ``lingreedy``"""
    epsilon: float = 0.05
    """share of uniform exploration over allowed actions (all algorithms), in [0, 1]"""
    alpha: float = 1.0
    """UCB width (``ucb1``, ``linucb``), >= 0"""
    l2_lambda: float = 1.0
    """ridge penalty of the linear models, > 0"""
    warmup_periods: int = 1
    """periods of uniform exploration before the first fit, >= 1"""
    per_segment: bool = True
    """linear models: cross the observation with the segment one-hot, i.e. one linear model
    per segment and action (context-free algorithms are always per segment)"""

    def __post_init__(self) -> None:
        check_choice(self.algorithm, "algorithm", BANDIT_ALGORITHMS)
        check_scalar(self.epsilon, "epsilon", (int, float), min_val=0.0, max_val=1.0)
        check_scalar(self.alpha, "alpha", (int, float), min_val=0.0)
        check_scalar(self.l2_lambda, "l2_lambda", (int, float), min_val=0.0, min_inclusive=False)
        check_scalar(self.warmup_periods, "warmup_periods", int, min_val=1)


class BanditAgent(Agent):
    """A MABWiser bandit that learns the immediate profit of each action.

    Args:
        feature_names: Observation feature names (segment one-hot columns are named
            ``segment=<name>``).
        action_names: Action names.
        config: Algorithm and hyperparameters.
        rng: Seeded Generator for exploration; MABWiser's own seed is drawn from it.
    """

    name: ClassVar[str] = "bandit"

    def __init__(
        self,
        feature_names: tuple[str, ...],
        action_names: tuple[str, ...],
        config: BanditConfig,
        rng: np.random.Generator,
    ) -> None:
        super().__init__(feature_names, action_names)
        self.config = config
        self.rng = rng
        self.periods_seen = 0
        arms = list(range(self.n_actions))
        seed = int(rng.integers(2**31 - 1))
        self._segment_cols = [
            i for i, n in enumerate(self.feature_names) if n.startswith("segment=")
        ]
        if config.algorithm in _CONTEXT_FREE and not self._segment_cols:
            raise ValueError("context-free bandits need `segment=<name>` feature columns")
        lp: Any
        if config.algorithm == "epsilon-greedy":
            lp = LearningPolicy.EpsilonGreedy(epsilon=0.0)
        elif config.algorithm == "ucb1":
            lp = LearningPolicy.UCB1(alpha=config.alpha)
        elif config.algorithm == "linucb":
            lp = LearningPolicy.LinUCB(alpha=config.alpha, l2_lambda=config.l2_lambda)
        else:
            lp = LearningPolicy.LinGreedy(epsilon=0.0, l2_lambda=config.l2_lambda)
        n_models = len(self._segment_cols) if config.algorithm in _CONTEXT_FREE else 1
        self.mabs = [MAB(arms, lp, seed=seed + i) for i in range(n_models)]
        self._fitted = False
        self._fitted_models: set[int] = set()
        self._policy: Policy | None = None
        self._map: LinearPolicy | None = None

    @property
    def exploration(self) -> Exploration:
        """Greedy on the scores, mixed with ``epsilon``."""
        return Exploration("greedy", epsilon=self.config.epsilon)

    def probabilities(self, obs: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """Uniform during warm-up, then the policy's probabilities."""
        if self.periods_seen < self.config.warmup_periods or not self._fitted:
            return uniform_probabilities(masks)
        return self.policy().probabilities(obs, masks)

    def update(self, transition: Transition) -> None:
        """``partial_fit`` MABWiser on the period's (context, action, reward) batch."""
        obs, actions, rewards = transition.obs, transition.actions, transition.rewards
        if self.config.algorithm in _CONTEXT_FREE:
            segment = obs[:, self._segment_cols].argmax(axis=1)
            for s in range(len(self.mabs)):
                rows = segment == s
                if rows.any():
                    self._fit(s, actions[rows], rewards[rows], None)
        else:
            self._fit(0, actions, rewards, self._linear_map().feature_map(obs))
        self._fitted = True
        self.periods_seen += 1
        self._policy = None

    def _fit(
        self, i: int, actions: np.ndarray, rewards: np.ndarray, ctx: np.ndarray | None
    ) -> None:
        # MABWiser inverts a small matrix per arm on every fit: multi-threaded BLAS makes that
        # ~100x slower on 2 busy cores than one thread does.
        with threadpool_limits(limits=1):
            # MABWiser wants fit() first; partial_fit() then adds to what it learned.
            if i in self._fitted_models:
                self.mabs[i].partial_fit(actions, rewards, ctx)
            else:
                self.mabs[i].fit(actions, rewards, ctx)
                self._fitted_models.add(i)

    def policy(self) -> Policy:
        """The current scores as a numpy policy (cached until the next update)."""
        if self._policy is None:
            self._policy = self._build_policy()
        return self._policy

    def _interactions(self) -> tuple[str, ...]:
        if not self.config.per_segment:
            return ()
        return tuple(self.feature_names[c] for c in self._segment_cols)

    def _linear_map(self) -> LinearPolicy:
        """A zero policy whose only use is the feature map the models are fitted on."""
        if self._map is None:
            k = len(self.feature_names) * max(1, len(self._interactions()))
            self._map = LinearPolicy(
                self.feature_names,
                self.action_names,
                np.zeros((self.n_actions, k)),
                interact_with=self._interactions(),
            )
        return self._map

    def _build_policy(self) -> Policy:
        if self.config.algorithm in _CONTEXT_FREE:
            return self._table_policy()
        imp = self.mabs[0]._imp
        models = [imp.arm_to_model[a] for a in range(self.n_actions)]
        beta = np.stack([m.beta for m in models])
        ucb = self.config.algorithm == "linucb"
        return LinearPolicy(
            self.feature_names,
            self.action_names,
            beta,
            a_inv=np.stack([m.A_inv for m in models]) if ucb else None,
            alpha=self.config.alpha if ucb else 0.0,
            interact_with=self._interactions(),
            exploration=self.exploration,
        )

    def _table_policy(self) -> TabularPolicy:
        # One binary feature per segment column: the state is the one-hot pattern, and the
        # pattern of segment s (bit s set) holds that segment's bandit expectations.
        names = [self.feature_names[c] for c in self._segment_cols]
        k = len(names)
        table = np.zeros((2**k, self.n_actions))
        for s, mab in enumerate(self.mabs):
            exp = mab._imp.arm_to_expectation
            table[1 << (k - 1 - s)] = [float(exp[a]) for a in range(self.n_actions)]
        return TabularPolicy(
            self.feature_names, self.action_names, names, [[0.5]] * k, table, self.exploration
        )
