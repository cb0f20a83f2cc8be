"""PPO with action masking (sb3-contrib MaskablePPO), exported as a numpy MLP policy.

Trained on the vectorized core through :class:`~campaignrl.envs.CampaignSB3VecEnv` with
rewards scaled by SB3's ``VecNormalize`` (observations are already scaled, so the exported
actor needs no normalization). The actor (``mlp_extractor.policy_net`` then ``action_net``)
is copied into :class:`~campaignrl.policies.MLPPolicy`; masked logits get zero probability,
as in MaskablePPO's own masked categorical distribution. Reference: Schulman et al.,
"Proximal Policy Optimization Algorithms", 2017; Huang and Ontañón, "A Closer Look at
Invalid Action Masking in Policy Gradient Algorithms", 2020.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from stable_baselines3.common.callbacks import BaseCallback

from campaignrl._checks import check_choice, check_scalar
from campaignrl.agents.base import Agent, TrainingResult
from campaignrl.agents.evaluation import EVAL_COLUMNS, EvaluationSchedule, PolicyEvaluator
from campaignrl.envs.vector import CampaignVectorEnv
from campaignrl.policies.base import Exploration, Policy
from campaignrl.policies.kinds import MLPPolicy

__all__ = ["MAX_ROLLOUT", "PPOAgent", "PPOConfig", "check_rollout_size"]


@dataclass(frozen=True)
class PPOConfig:
    """Hyperparameters of MaskablePPO (names as in stable-baselines3)."""

    learning_rate: float = 3e-4
    """Adam step size"""
    n_steps: int = 26
    """periods per customer per rollout (26 = one campaign)"""
    batch_size: int = 4096
    """minibatch size"""
    n_epochs: int = 5
    """passes over each rollout"""
    gamma: float = 0.99
    """discount factor"""
    gae_lambda: float = 0.95
    """GAE lambda"""
    clip_range: float = 0.2
    """PPO clip range"""
    ent_coef: float = 0.01
    """entropy bonus"""
    net_arch: tuple[int, ...] = (64, 64)
    """hidden layer widths of the actor and of the critic"""
    activation: str = "tanh"
    """hidden-layer activation, ``tanh`` (SB3's default) or ``relu`` (cheaper to serve)"""
    normalize_reward: bool = True
    """scale rewards by a running estimate of the return's spread (VecNormalize)"""
    extra: dict[str, Any] = field(default_factory=dict)
    """further MaskablePPO keyword arguments"""

    def __post_init__(self) -> None:
        check_scalar(
            self.learning_rate, "learning_rate", (int, float), min_val=0.0, min_inclusive=False
        )
        check_scalar(self.n_steps, "n_steps", int, min_val=1, max_val=_MAX_N_STEPS)
        check_scalar(self.batch_size, "batch_size", int, min_val=2, max_val=_MAX_BATCH)
        check_scalar(self.n_epochs, "n_epochs", int, min_val=1, max_val=_MAX_EPOCHS)
        check_scalar(self.gamma, "gamma", (int, float), min_val=0.0, max_val=1.0)
        check_scalar(self.gae_lambda, "gae_lambda", (int, float), min_val=0.0, max_val=1.0)
        check_scalar(self.clip_range, "clip_range", (int, float), min_val=0.0, min_inclusive=False)
        check_scalar(self.ent_coef, "ent_coef", (int, float), min_val=0.0)
        check_choice(self.activation, "activation", ("tanh", "relu"))
        if (
            not isinstance(self.net_arch, tuple)
            or not self.net_arch
            or len(self.net_arch) > _MAX_LAYERS
            or any(
                isinstance(w, bool) or not isinstance(w, int) or not 1 <= w <= _MAX_WIDTH
                for w in self.net_arch
            )
        ):
            raise ValueError(
                f"`net_arch` must be 1 to {_MAX_LAYERS} layer widths in [1, {_MAX_WIDTH}], got "
                f"{self.net_arch!r}"
            )
        if not isinstance(self.normalize_reward, bool):
            raise TypeError(
                f"`normalize_reward` must be true or false, got "
                f"{type(self.normalize_reward).__name__} {self.normalize_reward!r}"
            )
        _check_extra(self.extra)


_MAX_N_STEPS = 10_000
_MAX_BATCH = 10_000_000
_MAX_EPOCHS = 1_000
_MAX_LAYERS = 8
_MAX_WIDTH = 4_096
MAX_ROLLOUT = 20_000_000
"""most customer-steps in one rollout (``n_steps`` x customers): SB3's buffer keeps about 130
bytes per customer-step (observation, mask, action, value, log-probability, advantage, return),
2.6 GB at this size"""
_SET_BY_CONFIG = frozenset(
    {
        "policy",
        "env",
        "learning_rate",
        "n_steps",
        "batch_size",
        "n_epochs",
        "gamma",
        "gae_lambda",
        "clip_range",
        "ent_coef",
        "policy_kwargs",
        "seed",
        "device",
        "verbose",
        "_init_setup_model",
    }
)


def _check_extra(extra: object) -> None:
    """``extra``: further MaskablePPO keyword arguments, none that the config already sets."""
    if not isinstance(extra, dict):
        raise TypeError(f"`extra` must be a mapping, got {type(extra).__name__} {extra!r}")
    import inspect

    from sb3_contrib import MaskablePPO

    accepted = set(inspect.signature(MaskablePPO.__init__).parameters) - {"self"}
    for key in extra:
        if not isinstance(key, str) or key not in accepted:
            raise ValueError(
                f"`extra` must hold MaskablePPO keyword arguments, got {key!r}; they are "
                f"{', '.join(sorted(accepted - _SET_BY_CONFIG))}"
            )
        if key in _SET_BY_CONFIG:
            raise ValueError(
                f"`extra` must not set {key!r}: it is a PPOConfig field or set by the agent"
            )


def check_rollout_size(config: PPOConfig, n_customers: int) -> None:
    """Refuse rollouts (``n_steps`` x customers) over :data:`MAX_ROLLOUT` customer-steps."""
    size = config.n_steps * n_customers
    if size > MAX_ROLLOUT:
        raise ValueError(
            f"`n_steps` {config.n_steps} x {n_customers:,} customers make rollouts of "
            f"{size:,} customer-steps, over {MAX_ROLLOUT:,} (about 130 bytes each); train on "
            "fewer customers or lower `n_steps`"
        )


class _CurveCallback(BaseCallback):
    """Mean campaign profit per customer at each episode end (all customers end together).

    Also the evaluation callback: a campaign that is due for an evaluation
    (:class:`EvaluationSchedule`) gets it once PPO has trained on it, at the start of the next
    rollout (or by :meth:`flush` when learning stops), so the figure is the policy after it.
    """

    def __init__(
        self, schedule: EvaluationSchedule, policy: Callable[[], Policy], first_episode: int
    ) -> None:
        super().__init__()
        self.rows: list[dict[str, float]] = []
        self.schedule = schedule
        self.policy = policy
        self.first_episode = first_episode
        self.pending: dict[str, float] | None = None

    def _on_step(self) -> bool:
        infos = self.locals.get("infos", [])
        returns = [info["episode"]["r"] for info in infos if "episode" in info]
        if returns:
            row = {
                "timesteps": float(self.num_timesteps),
                "episode": float(self.first_episode + len(self.rows)),
                "value_per_customer": float(np.mean(returns)),
                **dict.fromkeys(EVAL_COLUMNS, float("nan")),
            }
            self.rows.append(row)
            if self.schedule.due(self.num_timesteps):
                self.pending = row
        return True

    def _on_rollout_start(self) -> None:
        self.flush()

    def flush(self) -> None:
        """Evaluate the policy now for the campaign waiting for it, if any."""
        if self.pending is not None:
            self.pending.update(self.schedule.evaluate(self.policy))
            self.pending = None


class PPOAgent(Agent):
    """MaskablePPO on a population env.

    PPO learns from its own rollouts (:meth:`learn`: collect ``n_steps`` periods of the
    whole population, then train ``n_epochs`` on them). :meth:`act` samples from the live
    network's masked distribution with the agent's seeded Generator, so propensities are
    exact.

    Args:
        env: The population env to train on (its customers are the parallel envs).
        config: Hyperparameters.
        seed: Seed of torch, SB3 and the env.
        rng: Seeded Generator for :meth:`act`.
    """

    name: ClassVar[str] = "ppo"

    def __init__(
        self, env: CampaignVectorEnv, config: PPOConfig, seed: int, rng: np.random.Generator
    ) -> None:
        import torch
        from sb3_contrib import MaskablePPO
        from stable_baselines3.common.vec_env import VecMonitor, VecNormalize

        from campaignrl.envs.sb3 import CampaignSB3VecEnv

        super().__init__(env.encoder.feature_names, env.action_names)
        check_rollout_size(config, env.num_envs)
        torch.set_num_threads(1)  # small networks: one thread is faster on 2 cores
        self.config = config
        self.rng = rng
        self.env = env
        self.curve: list[dict[str, float]] = []
        venv: Any = VecMonitor(CampaignSB3VecEnv(env))
        if config.normalize_reward:
            venv = VecNormalize(venv, norm_obs=False, norm_reward=True, gamma=config.gamma)
        venv.seed(seed)
        self.venv = venv
        batch = min(config.batch_size, config.n_steps * env.num_envs)
        self.model = MaskablePPO(
            "MlpPolicy",
            venv,
            learning_rate=config.learning_rate,
            n_steps=config.n_steps,
            batch_size=batch,
            n_epochs=config.n_epochs,
            gamma=config.gamma,
            gae_lambda=config.gae_lambda,
            clip_range=config.clip_range,
            ent_coef=config.ent_coef,
            policy_kwargs={
                "net_arch": {"pi": list(config.net_arch), "vf": list(config.net_arch)},
                "activation_fn": torch.nn.ReLU if config.activation == "relu" else torch.nn.Tanh,
            },
            seed=seed,
            device="cpu",
            verbose=0,
            **config.extra,
        )

    def learn(
        self,
        total_timesteps: int,
        *,
        progress: bool = False,
        evaluator: PolicyEvaluator | None = None,
    ) -> TrainingResult:
        """Train for ``total_timesteps`` customer-steps (whole rollouts).

        The learning curve has one row per completed campaign since the agent was built:
        ``timesteps``, ``episode`` and ``value_per_customer`` (mean unnormalized profit per
        customer over the campaign, recorded by ``VecMonitor`` while learning), and the
        evaluation columns (:data:`~campaignrl.agents.evaluation.EVAL_COLUMNS`): with
        ``evaluator``, the exported policy on a fixed population now and then, else NaN.
        ``timesteps`` of the result counts every customer-step since the agent was built.
        """
        check_scalar(total_timesteps, "total_timesteps", int, min_val=1)
        start = time.perf_counter()
        schedule = EvaluationSchedule(evaluator)
        callback = _CurveCallback(schedule, self.policy, len(self.curve))
        self.model.learn(
            total_timesteps=total_timesteps,
            callback=callback,
            progress_bar=progress,
            reset_num_timesteps=False,
        )
        callback.flush()
        schedule.finish(callback.rows, self.policy)
        self.curve.extend(callback.rows)
        columns = ["timesteps", "episode", "value_per_customer", *EVAL_COLUMNS]
        return TrainingResult(
            pd.DataFrame(self.curve, columns=columns),
            time.perf_counter() - start,
            int(self.model.num_timesteps),
        )

    def policy(self) -> MLPPolicy:
        """The actor as a numpy MLP (softmax over masked logits, temperature 1)."""
        import torch

        pol = self.model.policy
        layers: list[Any] = [
            m for m in pol.mlp_extractor.policy_net if isinstance(m, torch.nn.Linear)
        ]
        layers.append(pol.action_net)
        weights = [m.weight.detach().cpu().numpy().T.astype(np.float64) for m in layers]
        biases = [m.bias.detach().cpu().numpy().astype(np.float64) for m in layers]
        return MLPPolicy(
            self.feature_names,
            self.action_names,
            weights,
            biases,
            self.config.activation,
            Exploration("softmax", temperature=1.0),
        )

    def probabilities(self, obs: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """The live torch network's masked action probabilities."""
        import torch

        with torch.no_grad():
            dist = self.model.policy.get_distribution(
                torch.as_tensor(np.asarray(obs, dtype=np.float32)), action_masks=masks
            )
            probs: Any = dist.distribution.probs  # type: ignore[union-attr]  # Categorical
        # torch computes in float32; renormalized in float64, rows sum to 1 to machine precision.
        out = np.asarray(probs.cpu().numpy(), dtype=np.float64)
        return out / out.sum(axis=1, keepdims=True)
