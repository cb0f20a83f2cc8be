"""Bandit agents on MABWiser, with exact propensities from our own seeded sampling.

MABWiser learns (``partial_fit`` on each period's batch) and gives the scores; the
exploration is ours, drawn from a seeded ``numpy.random.Generator``, so every decision
carries its true probability (MABWiser exposes none). To that end MABWiser's own epsilon is
set to 0 and its parameters are read back after each fit:

- ``epsilon-greedy`` and ``ucb1`` learn one context-free bandit per segment (the segment
  model's clusters); their policy is a table segment x action of MABWiser's expectations
  (UCB1's include its confidence bonus), greedy, mixed with ``epsilon`` uniform exploration.
- ``thompson`` learns one context-free Beta-Bernoulli Thompson-sampling bandit per segment.
  Profits are real-valued, so each reward ``r`` becomes a Bernoulli success with probability
  ``(clip(r, reward_min, reward_max) - reward_min) / (reward_max - reward_min)``, drawn from the
  agent's Generator (Agrawal and Goyal, "Analysis of Thompson sampling for the multi-armed
  bandit problem", COLT 2012, Algorithm 2): within the bounds the success rate is an
  increasing affine map of the expected profit, so the best arm is the same. Its policy is
  :class:`~campaignrl.policies.BetaThompsonPolicy` on MABWiser's ``Beta(successes,
  failures)`` posteriors (prior ``Beta(1, 1)``).
- ``linucb`` and ``lingreedy`` learn per-action ridge regressions on the observation; their
  policy is :class:`~campaignrl.policies.LinearPolicy` built from MABWiser's ``beta`` and
  ``A^{-1}`` (LinUCB adds ``alpha * sqrt(x^T A^{-1} x)``), greedy, mixed with ``epsilon``.
- ``lints`` learns the same ridge regressions (MABWiser ``LinTS``: action ``a``'s coefficients
  are ``N(beta_a, alpha^2 A_a^{-1})``; Agrawal and Goyal, "Thompson sampling for contextual
  bandits with linear payoffs", ICML 2013); its policy is
  :class:`~campaignrl.policies.GaussianThompsonPolicy`, which draws the actions independently,
  as LinTS defines. (MABWiser 2.7.4's own ``predict`` does not: ``fit`` deep-copies one RNG
  state into every action's model, so all actions draw the same normals and their scores are
  almost perfectly correlated. We never call it.)

Both Thompson policies give the exact chance that each action's posterior draw is the best
allowed one (computed by quadrature, see :mod:`campaignrl.policies.thompson`), mixed with
``epsilon``; decisions are sampled from those probabilities, not from posterior draws.

The first ``warmup_periods`` periods are uniform over allowed actions, so every arm has data
before the first greedy decision.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from mabwiser.mab import MAB, LearningPolicy
from threadpoolctl import ThreadpoolController

from campaignrl._checks import check_choice, check_scalar
from campaignrl.agents.base import Transition
from campaignrl.agents.training import OnlineAgent
from campaignrl.envs.vector import CampaignVectorEnv
from campaignrl.policies.base import Exploration, Policy
from campaignrl.policies.kinds import TabularPolicy
from campaignrl.policies.linear import LinearPolicy
from campaignrl.policies.sampling import uniform_probabilities
from campaignrl.policies.thompson import BetaThompsonPolicy, GaussianThompsonPolicy

__all__ = ["BANDIT_ALGORITHMS", "BanditAgent", "BanditConfig"]

BANDIT_ALGORITHMS = ("epsilon-greedy", "ucb1", "thompson", "linucb", "lingreedy", "lints")
"""Bandit algorithms by command-line name."""

_CONTEXT_FREE = ("epsilon-greedy", "ucb1", "thompson")
_CLIPPED_WARNING_SHARE = 0.01
"""``thompson`` warns when more than this share of a period's rewards fall outside the bounds"""


@functools.cache
def _blas() -> ThreadpoolController:
    """The loaded thread pools, found once: each lookup scans every library (ms with torch)."""
    return ThreadpoolController()


@dataclass(frozen=True)
class BanditConfig:
    """Settings of a bandit agent."""

    algorithm: str = "linucb"
    """one of ``epsilon-greedy``, ``ucb1``, ``thompson``, ``linucb``, ``lingreedy``, ``lints``"""
    epsilon: float = 0.05
    """share of uniform exploration over allowed actions (all algorithms), in [0, 1]"""
    alpha: float = 1.0
    """UCB width (``ucb1``, ``linucb``), >= 0; posterior scale of ``lints``, > 0: the
    coefficients' covariance is ``alpha^2 A^{-1}`` (Bayesian ridge with noise sd ``alpha``)"""
    l2_lambda: float = 1.0
    """ridge penalty of the linear models, > 0"""
    warmup_periods: int = 1
    """periods of uniform exploration before the first fit, >= 1"""
    per_segment: bool = True
    """linear models: cross the observation with the segment one-hot, i.e. one linear model
    per segment and action (context-free algorithms are always per segment)"""
    reward_min: float = -6.02
    """``thompson``: the profit rescaled to 0 (a lower one is clipped to it). The default is
    the preset worlds' exact minimum: free shipping's $6 fixed cost on a near-empty basket
    plus an SMS ($0.02)"""
    reward_max: float = 60.0
    """``thompson``: the profit rescaled to 1 (a higher one is clipped to it), > ``reward_min``.
    Profits have no upper bound (lognormal baskets); 60 is about their 99.7th percentile on
    ``retail`` (0.3-0.6% of a period's rewards clipped on ``retail`` and ``fatigue``). A wider
    range loses information (each reward becomes a coarser coin flip), clipping lowers an
    arm's mean by ``E[(r - reward_max)+] / (reward_max - reward_min)``: on ``retail`` (3 seeds,
    5.2M steps) 50 and 60 earned 43.6 per customer, 75 43.3, 100 43.1. The agent counts
    clipped rewards and warns when a period clips more than 1%"""

    def __post_init__(self) -> None:
        check_choice(self.algorithm, "algorithm", BANDIT_ALGORITHMS)
        check_scalar(self.epsilon, "epsilon", (int, float), min_val=0.0, max_val=1.0)
        check_scalar(self.alpha, "alpha", (int, float), min_val=0.0)
        if self.algorithm == "lints" and self.alpha == 0:
            # MABWiser's LinTS needs a proper covariance; alpha 0 would be lingreedy.
            raise ValueError(f"`alpha` must be > 0 for lints (0 is lingreedy), got {self.alpha!r}")
        check_scalar(self.l2_lambda, "l2_lambda", (int, float), min_val=0.0, min_inclusive=False)
        check_scalar(self.warmup_periods, "warmup_periods", int, min_val=1)
        if not isinstance(self.per_segment, bool):
            raise TypeError(
                f"`per_segment` must be true or false, got {type(self.per_segment).__name__} "
                f"{self.per_segment!r}"
            )
        check_scalar(self.reward_min, "reward_min", (int, float))
        check_scalar(self.reward_max, "reward_max", (int, float))
        if self.reward_max <= self.reward_min:
            raise ValueError(
                f"`reward_max` must be > `reward_min` ({self.reward_min!r}), got "
                f"{self.reward_max!r}"
            )


class BanditAgent(OnlineAgent):
    """A MABWiser bandit that learns the immediate profit of each action.

    Args:
        feature_names: Observation feature names (segment one-hot columns are named
            ``segment=<name>``).
        action_names: Action names.
        config: Algorithm and hyperparameters.
        rng: Seeded Generator for exploration; MABWiser's own seed is drawn from it.
        env: The population env :meth:`learn` trains on (``None``: only ``update``).
        seed: Seed of the env's first reset in :meth:`learn`.
    """

    name: ClassVar[str] = "bandit"

    def __init__(
        self,
        feature_names: tuple[str, ...],
        action_names: tuple[str, ...],
        config: BanditConfig,
        rng: np.random.Generator,
        *,
        env: CampaignVectorEnv | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(feature_names, action_names, env=env, seed=seed)
        self.config = config
        self.rng = rng
        self.periods_seen = 0
        self.rewards_clipped = 0
        """``thompson``: rewards seen outside ``[reward_min, reward_max]`` (clipped)"""
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
        elif config.algorithm == "thompson":
            lp = LearningPolicy.ThompsonSampling()
        elif config.algorithm == "linucb":
            lp = LearningPolicy.LinUCB(alpha=config.alpha, l2_lambda=config.l2_lambda)
        elif config.algorithm == "lints":
            lp = LearningPolicy.LinTS(alpha=config.alpha, l2_lambda=config.l2_lambda)
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
        """Greedy on the scores (Thompson: on posterior draws), mixed with ``epsilon``."""
        return Exploration("greedy", epsilon=self.config.epsilon)

    def probabilities(self, obs: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """Uniform during warm-up, then the policy's probabilities."""
        if self.periods_seen < self.config.warmup_periods or not self._fitted:
            return uniform_probabilities(masks)
        return self.policy().probabilities(obs, masks)

    def update(self, transition: Transition) -> None:
        """``partial_fit`` MABWiser on the period's (context, action, reward) batch."""
        obs, actions, rewards = transition.obs, transition.actions, transition.rewards
        if self.config.algorithm == "thompson":
            rewards = self._bernoulli_rewards(rewards)
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

    def _bernoulli_rewards(self, rewards: np.ndarray) -> np.ndarray:
        """Agrawal and Goyal's trick: a 0/1 reward whose mean is the rescaled profit.

        ``P(1) = (clip(r) - reward_min) / (reward_max - reward_min)``, drawn from the agent's
        Generator; ``E[1 | arm] = (E[clip(r) | arm] - reward_min) / (reward_max - reward_min)``.
        """
        lo, hi = self.config.reward_min, self.config.reward_max
        outside = int(np.count_nonzero((rewards < lo) | (rewards > hi)))
        self.rewards_clipped += outside
        if outside > _CLIPPED_WARNING_SHARE * rewards.size:
            warnings.warn(
                f"thompson clipped {outside} of {rewards.size} rewards to [reward_min, "
                f"reward_max] = [{lo}, {hi}] this period; widen the bounds to cover the "
                f"profits (clipping biases the arms' means)",
                RuntimeWarning,
                stacklevel=3,
            )
        success = (np.clip(rewards, lo, hi) - lo) / (hi - lo)
        return (self.rng.random(rewards.shape[0]) < success).astype(np.float64)

    def _fit(
        self, i: int, actions: np.ndarray, rewards: np.ndarray, ctx: np.ndarray | None
    ) -> None:
        # MABWiser inverts a small matrix per arm on every fit: multi-threaded BLAS makes that
        # ~100x slower on 2 busy cores than one thread does.
        with _blas().limit(limits=1, user_api="blas"):
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
        if self.config.algorithm == "thompson":
            return self._beta_policy()
        if self.config.algorithm in _CONTEXT_FREE:
            return self._table_policy()
        imp = self.mabs[0]._imp
        models = [imp.arm_to_model[a] for a in range(self.n_actions)]
        beta = np.stack([m.beta for m in models])
        if self.config.algorithm == "lints":
            return GaussianThompsonPolicy(
                self.feature_names,
                self.action_names,
                beta,
                np.stack([m.A_inv for m in models]),
                self.config.alpha,
                interact_with=self._interactions(),
                exploration=self.exploration,
            )
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

    def _beta_policy(self) -> BetaThompsonPolicy:
        # The same state index as _table_policy; states that are no single segment (no bit or
        # several) keep the prior Beta(1, 1) on every arm.
        names = [self.feature_names[c] for c in self._segment_cols]
        k = len(names)
        beta_a = np.ones((2**k, self.n_actions))
        beta_b = np.ones((2**k, self.n_actions))
        for s, mab in enumerate(self.mabs):
            imp = mab._imp
            beta_a[1 << (k - 1 - s)] = [imp.arm_to_success_count[a] for a in range(self.n_actions)]
            beta_b[1 << (k - 1 - s)] = [imp.arm_to_fail_count[a] for a in range(self.n_actions)]
        return BetaThompsonPolicy(
            self.feature_names,
            self.action_names,
            names,
            [[0.5]] * k,
            beta_a,
            beta_b,
            self.exploration,
        )
