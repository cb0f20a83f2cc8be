"""Evaluation during training: the current policy on one fixed population, now and then.

Training campaigns draw new customers every time, so the profit they record mixes the agent's
progress with the luck of each population (and includes its exploration). An evaluator runs
the exported policy, as it would be deployed, on the same simulated customers with the same
random draws at every evaluation (common random numbers), so two points of the curve differ
only because the policy did.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from campaignrl._checks import check_scalar
from campaignrl.policies.base import Policy
from campaignrl.rollout import FeaturePolicy, mean_ci95, run_policy
from campaignrl.simulators.spec import WorldSpec

__all__ = ["EVAL_COLUMNS", "EvaluationSchedule", "PolicyEvaluator"]

EVAL_COLUMNS = ("eval_value", "eval_ci95_low", "eval_ci95_high")
"""learning-curve columns an evaluation fills (NaN on rows without one)"""


@dataclass(frozen=True)
class PolicyEvaluator:
    """Runs a policy for one campaign on a fixed population and summarizes its value.

    Args:
        world: The world trained on.
        horizon: Periods of the campaign.
        every: Customer-steps of training between evaluations (see
            :class:`EvaluationSchedule`).
        n_customers: Size of the evaluation population.
        seed: Seed of the evaluation population and of the policy's sampling.
    """

    world: WorldSpec
    horizon: int
    every: int
    n_customers: int = 5_000
    seed: int = 2_000_003

    def __post_init__(self) -> None:
        check_scalar(self.horizon, "horizon", int, min_val=1)
        check_scalar(self.every, "every", int, min_val=1)
        check_scalar(self.n_customers, "n_customers", int, min_val=2)
        check_scalar(self.seed, "seed", int, min_val=0)

    @classmethod
    def spread(
        cls,
        world: WorldSpec,
        horizon: int,
        *,
        timesteps: int,
        evaluations: int,
        n_customers: int,
        seed: int,
    ) -> PolicyEvaluator | None:
        """``evaluations`` evaluations spread evenly over a ``timesteps`` budget (0: none)."""
        check_scalar(evaluations, "evaluations", int, min_val=0)
        if evaluations == 0:
            return None
        every = max(1, timesteps // evaluations)
        return cls(world, horizon, every, n_customers=n_customers, seed=seed)

    def __call__(self, policy: Policy) -> dict[str, float]:
        """``eval_value`` (profit per customer) and its 95% interval, on the fixed population."""
        res = run_policy(
            self.world,
            FeaturePolicy(policy),
            n_customers=self.n_customers,
            horizon=self.horizon,
            seed=self.seed,
        )
        mean, lo, hi = mean_ci95(res.value_per_customer)
        return dict(zip(EVAL_COLUMNS, (mean, lo, hi), strict=True))


class EvaluationSchedule:
    """When a training loop evaluates.

    At the first campaign's end, then at the first campaign end at least ``every``
    customer-steps after the last evaluation, and at the last campaign's end.

    Args:
        evaluator: The evaluator, or ``None`` for no evaluation (every row gets NaN).
    """

    def __init__(self, evaluator: PolicyEvaluator | None) -> None:
        self.evaluator = evaluator
        self.last: int | None = None

    def due(self, timesteps: int) -> bool:
        """Whether a campaign ending at ``timesteps`` gets an evaluation (it is then counted)."""
        ev = self.evaluator
        if ev is None or (self.last is not None and timesteps - self.last < ev.every):
            return False
        self.last = timesteps
        return True

    def evaluate(self, policy: Callable[[], Policy]) -> dict[str, float]:
        """The evaluation columns for ``policy()``, the policy as it is now."""
        if self.evaluator is None:
            return dict.fromkeys(EVAL_COLUMNS, float("nan"))
        return self.evaluator(policy())

    def at_episode_end(self, timesteps: int, policy: Callable[[], Policy]) -> dict[str, float]:
        """The evaluation columns for a curve row: measured if one is due, else NaN."""
        if self.due(timesteps):
            return self.evaluate(policy)
        return dict.fromkeys(EVAL_COLUMNS, float("nan"))

    def finish(self, rows: list[dict[str, Any]], policy: Callable[[], Policy]) -> None:
        """Evaluate the final policy on the last curve row, if it was not evaluated."""
        if self.evaluator is not None and rows and np.isnan(rows[-1].get("eval_value", np.nan)):
            rows[-1].update(self.evaluate(policy))
