"""Running a policy through a simulated population: on-policy values and decision logs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd

from campaignrl._checks import check_scalar
from campaignrl._progress import progress_bar
from campaignrl.envs.vector import CampaignVectorEnv
from campaignrl.logs.schema import OUTCOME_COLUMNS, mask_column
from campaignrl.policies.base import Policy
from campaignrl.policies.sampling import epsilon_mix, sample_actions
from campaignrl.simulators.core import CustomerSimulator
from campaignrl.simulators.presets import load_world
from campaignrl.simulators.spec import WorldSpec

__all__ = [
    "FeaturePolicy",
    "PopulationPolicy",
    "RolloutResult",
    "check_policy_fit",
    "mean_ci95",
    "run_policy",
]

_START = pd.Timestamp("2026-01-05", tz="UTC")
"""calendar date of period 0 in simulated logs (a Monday; one period is one week)"""


class PopulationPolicy(Protocol):
    """Anything that gives ``(n, A)`` action probabilities for a population."""

    def probabilities(
        self, obs: np.ndarray, masks: np.ndarray, sim: CustomerSimulator
    ) -> np.ndarray:
        """``(n, A)`` probabilities, zero on masked actions, for the current population."""
        ...


class FeaturePolicy:
    """Runs a framework-free :class:`~campaignrl.policies.Policy` on a simulated population.

    The policy sees only the observation and masks, as it would in the decision service.
    """

    def __init__(self, policy: Policy, name: str | None = None) -> None:
        self.policy = policy
        self.name = name or policy.kind

    def describe(self) -> str:
        """Name for reports."""
        return self.name

    def probabilities(
        self, obs: np.ndarray, masks: np.ndarray, sim: CustomerSimulator
    ) -> np.ndarray:
        """The policy's probabilities on the observation."""
        return self.policy.probabilities(obs, masks)

    def check_compatible(
        self, feature_names: tuple[str, ...], action_names: tuple[str, ...]
    ) -> None:
        """Refuse a policy trained on other features or actions, naming the difference."""
        if tuple(self.policy.feature_names) != tuple(feature_names):
            raise ValueError(
                f"policy features {list(self.policy.feature_names)} do not match the "
                f"environment's {list(feature_names)}"
            )
        if tuple(self.policy.action_names) != tuple(action_names):
            raise ValueError(
                f"policy actions {list(self.policy.action_names)} do not match the "
                f"environment's {list(action_names)}"
            )


def check_policy_fit(
    training: Mapping[str, Any], world: str | WorldSpec, horizon: int
) -> list[str]:
    """Warnings for a policy used on another world or campaign length than it learned on.

    A policy only knows the customers it was trained on: on another world its values and
    exploration are untested, and its ``periods_left`` feature is a share of the campaign,
    so on a longer (or shorter) campaign the same share falls on other weeks.

    Args:
        training: The ``training`` metadata of the policy's manifest
            (:func:`campaignrl.policies.save_policy`): ``world`` (preset name),
            ``world_overrides`` (WorldSpec fields changed from the preset) and ``periods`` (or
            ``horizon``): the campaign length. Missing keys are not checked.
        world: The world the policy is about to be used on: a preset name or a ``WorldSpec``.
        horizon: The periods of the campaign it is about to be used on.

    Returns:
        One sentence per mismatch (empty when the policy is used as trained).

    Examples:
        >>> check_policy_fit({"world": "retail", "periods": 26}, "retail", 26)  # as trained
        []
        >>> print(*check_policy_fit({"world": "retail"}, "fatigue", 26))
        the policy was trained on world 'retail' and is used on 'fatigue': its value there is ...
    """
    if not isinstance(training, Mapping):
        raise TypeError(f"`training` must be a mapping, got {type(training).__name__}")
    check_scalar(horizon, "horizon", int, min_val=1)
    if not isinstance(world, (str, WorldSpec)):
        raise TypeError(f"`world` must be a preset name or a WorldSpec, got {type(world).__name__}")
    warnings: list[str] = []
    used_name = world if isinstance(world, str) else world.name
    trained_name = training.get("world")
    if isinstance(trained_name, str) and trained_name != used_name:
        warnings.append(
            f"the policy was trained on world {trained_name!r} and is used on {used_name!r}: "
            "its value there is untested"
        )
    elif isinstance(trained_name, str):
        overrides = training.get("world_overrides") or {}
        used = load_world(world) if isinstance(world, str) else world
        try:
            trained = load_world(trained_name, **overrides) if isinstance(overrides, dict) else None
        except (TypeError, ValueError):  # an unknown preset or field: nothing to compare with
            trained = None
        if trained is not None and trained.to_dict() != used.to_dict():
            a, b = trained.to_dict(), used.to_dict()
            changed = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            warnings.append(
                f"the policy was trained on world {trained_name!r} with other parameters "
                f"({', '.join(changed[:5])}{', ...' if len(changed) > 5 else ''} "
                f"{'differs' if len(changed) == 1 else 'differ'}): "
                "its value there is untested"
            )
    periods = training.get("periods", training.get("horizon"))
    if isinstance(periods, int) and not isinstance(periods, bool) and periods != horizon:
        longer = "longer" if horizon > periods else "shorter"
        warnings.append(
            f"the policy was trained on {periods}-period campaigns and is used on a {longer} "
            f"one ({horizon} periods): its `periods_left` feature is a share of the campaign, "
            "so its timing (when to hold back near the end) moves to other weeks"
        )
    return warnings


def mean_ci95(values: np.ndarray) -> tuple[float, float, float]:
    """Mean and normal 95% interval ``mean +- 1.96 sd / sqrt(n)`` of i.i.d. values.

    Examples:
        >>> mean_ci95(np.array([1.0, 2.0, 3.0, 4.0]))
        (2.5, 1.2348..., 3.7651...)
    """
    n = values.shape[0]
    mean = float(values.mean())
    half = 1.96 * float(values.std(ddof=1)) / float(np.sqrt(n)) if n > 1 else float("inf")
    return mean, mean - half, mean + half


@dataclass(frozen=True)
class RolloutResult:
    """What a policy earned on a simulated population."""

    value_per_customer: np.ndarray
    """(n,) total profit of each customer over the horizon"""
    reward_per_period: np.ndarray
    """(T,) mean profit per customer in each period"""
    contact_rate: float
    """share of decisions that contacted the customer"""
    log: pd.DataFrame | None = None
    """decision log in the :mod:`campaignrl.logs` schema, if recorded"""

    def summary(self) -> dict[str, Any]:
        """Mean value per customer with its 95% interval, as plain JSON types.

        With a single customer there is no interval: ``ci95`` is ``[None, None]``.
        """
        mean, lo, hi = mean_ci95(self.value_per_customer)
        finite = np.isfinite(lo) and np.isfinite(hi)
        return {
            "value_per_customer": mean,
            "ci95": [lo, hi] if finite else [None, None],
            "n_customers": int(self.value_per_customer.shape[0]),
            "periods": int(self.reward_per_period.shape[0]),
            "contact_rate": self.contact_rate,
        }


def run_policy(
    world: str | WorldSpec,
    policy: PopulationPolicy,
    *,
    n_customers: int,
    horizon: int,
    seed: int,
    epsilon: float = 0.0,
    record: bool = False,
    policy_version: str | None = None,
    progress: bool = False,
) -> RolloutResult:
    """Run ``policy`` (epsilon-mixed with uniform over allowed actions) for one campaign.

    The env is seeded with ``seed`` and the policy's sampling Generator with a stream spawned
    from the same seed, so a seed fixes the whole run.

    Args:
        world: Preset name or ``WorldSpec``.
        policy: Gives action probabilities.
        n_customers: Population size.
        horizon: Periods in the campaign.
        seed: Seed of the run.
        epsilon: Share of uniformly random exploration, in [0, 1].
        record: Keep a decision log with exact propensities, the allowed actions and the
            outcome columns (:data:`~campaignrl.logs.schema.OUTCOME_COLUMNS`) of what the
            simulator drew.
        policy_version: Written to the log's ``policy_version`` column (default: the
            policy's ``name``, else its class name).
        progress: Show a progress bar.
    """
    check_scalar(n_customers, "n_customers", int, min_val=1)
    check_scalar(horizon, "horizon", int, min_val=1)
    check_scalar(seed, "seed", int, min_val=0)
    check_scalar(epsilon, "epsilon", (int, float), min_val=0.0, max_val=1.0)
    env = CampaignVectorEnv(n_customers, world=world, horizon=horizon)
    if isinstance(policy, FeaturePolicy):
        policy.check_compatible(env.encoder.feature_names, env.action_names)
    policy_rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])
    obs, _ = env.reset(seed=seed)
    sim = env.simulator
    names = np.asarray(sim.spec.catalog.action_names, dtype=object)
    totals = np.zeros(n_customers)
    per_period = np.zeros(horizon)
    contacts = 0
    chunks: list[dict[str, np.ndarray]] = []
    with progress_bar(f"simulating {n_customers:,} customers", horizon, progress) as advance:
        for t in range(horizon):
            masks = env.action_masks()
            probs = epsilon_mix(policy.probabilities(obs, masks, sim), masks, float(epsilon))
            actions, propensities = sample_actions(probs, policy_rng)
            pre_obs = obs
            obs, reward, _, _, info = env.step(actions)
            totals += reward
            per_period[t] = reward.mean()
            contacts += int((info["executed_action"] > 0).sum())
            if record:
                chunks.append(
                    {
                        "step": np.full(n_customers, t),
                        "action": actions,
                        "propensity": propensities,
                        "reward": reward,
                        "obs": pre_obs,
                        "masks": masks,
                        # what the simulator drew: the log's outcome columns
                        "opened": info["opened"],
                        "purchased": info["purchased"],
                        "basket_value": info["basket"],
                        "unsubscribed": info["unsubscribed"],
                        "churned": info["churned"],
                    }
                )
            advance(1)

    version = policy_version or str(getattr(policy, "name", type(policy).__name__))
    log = _log_frame(chunks, env, seed, version, names) if record else None
    return RolloutResult(totals, per_period, contacts / (n_customers * horizon), log)


def _log_frame(
    chunks: list[dict[str, np.ndarray]],
    env: CampaignVectorEnv,
    seed: int,
    policy_version: str,
    names: np.ndarray,
) -> pd.DataFrame:
    n = env.num_envs
    step = np.concatenate([c["step"] for c in chunks])
    customer = np.tile(np.arange(n), len(chunks))
    # Zero-padded ids sort like the numbers; the seed prefix keeps runs apart when concatenated.
    ids = pd.Series(customer).astype(str).str.zfill(len(str(n - 1)))
    frame = pd.DataFrame(
        {
            "decision_id": f"s{seed}-c" + ids + "-t" + pd.Series(step).astype(str),
            "timestamp": _START + pd.to_timedelta(step * 7, unit="D"),
            "customer_id": f"s{seed}-c" + ids,
            "episode_id": f"s{seed}-e" + ids,
            "step": step,
            "action": names[np.concatenate([c["action"] for c in chunks])],
            "propensity": np.concatenate([c["propensity"] for c in chunks]),
            "reward": np.concatenate([c["reward"] for c in chunks]),
            "policy_version": policy_version,
        }
    )
    for col in OUTCOME_COLUMNS:
        frame[col] = np.concatenate([c[col] for c in chunks])
    masks = np.concatenate([c["masks"] for c in chunks])
    allowed = pd.DataFrame(masks, columns=[mask_column(str(a)) for a in names])
    features = np.concatenate([c["obs"] for c in chunks])
    feats = pd.DataFrame(features, columns=list(env.encoder.feature_names))
    return pd.concat([frame, allowed, feats], axis=1)
