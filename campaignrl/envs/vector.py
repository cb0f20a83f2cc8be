"""``CampaignVectorEnv``: a population of customers stepped in lockstep, one numpy core."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from campaignrl._checks import check_scalar
from campaignrl.envs.observation import ObservationEncoder
from campaignrl.simulators.core import CustomerSimulator, StepResult
from campaignrl.simulators.presets import load_world
from campaignrl.simulators.spec import WorldSpec

__all__ = ["CampaignVectorEnv", "make_simulator"]


def make_simulator(
    world: str | WorldSpec, n_customers: int, horizon: int, **overrides: Any
) -> CustomerSimulator:
    """A simulator for a preset name (with field overrides) or a ``WorldSpec``."""
    if isinstance(world, WorldSpec):
        spec = world.replace(**overrides) if overrides else world
    elif isinstance(world, str):
        spec = load_world(world, **overrides)
    else:
        raise TypeError(f"`world` must be a preset name or a WorldSpec, got {type(world).__name__}")
    return CustomerSimulator(spec, n_customers, horizon)


class CampaignVectorEnv(VectorEnv):
    """``num_envs`` customers of one world, each an independent sub-environment.

    All customers share the campaign calendar, so every episode ends at ``t = horizon``
    (``terminated``; periods left are in the observation). Autoreset is same-step: the step
    that ends the episode returns the first observation of a fresh population and puts the
    last one in ``infos["final_obs"]`` as an ``(n, d)`` array (row ``i`` is customer ``i``'s).

    A masked action (no consent, opted out, contact cap reached) is executed as
    ``no_contact``: it costs nothing, does nothing, and ``infos["masked"]`` flags it.

    Args:
        num_envs: Number of customers.
        world: Preset name (``retail``, ``fatigue``, ``sparse``) or a ``WorldSpec``.
        horizon: Periods in a campaign.
        **world_overrides: ``WorldSpec`` fields to override.
    """

    metadata: dict[str, Any] = {  # noqa: RUF012 (gymnasium declares it per instance)
        "autoreset_mode": AutoresetMode.SAME_STEP,
        "render_modes": [],
    }

    def __init__(
        self,
        num_envs: int = 1,
        world: str | WorldSpec = "retail",
        horizon: int = 26,
        **world_overrides: Any,
    ) -> None:
        check_scalar(num_envs, "num_envs", (int, np.integer), min_val=1)
        check_scalar(horizon, "horizon", (int, np.integer), min_val=1)
        self.simulator = make_simulator(world, int(num_envs), int(horizon), **world_overrides)
        self.encoder = ObservationEncoder(self.simulator.spec, int(horizon))
        self.num_envs = int(num_envs)
        self.single_observation_space = self.encoder.space()
        self.single_action_space = spaces.Discrete(self.simulator.n_actions)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._np_random: np.random.Generator | None = None

    @property
    def action_names(self) -> tuple[str, ...]:
        """Stable action names, index order."""
        return self.simulator.spec.catalog.action_names

    def reset(
        self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Draw a new population. ``seed`` seeds the env's Generator (a list uses its first)."""
        if isinstance(seed, (list, tuple)):
            seed = seed[0] if seed else None
        if seed is not None or self._np_random is None:
            self._np_random, self._np_random_seed = seeding.np_random(seed)
        self.simulator.reset(self.np_random)
        return self._observe(), {}

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Advance every customer one period; see the class docstring for masked actions."""
        if self._np_random is None:
            raise RuntimeError("call reset() before step()")
        result = self.simulator.step(actions, self.np_random)
        obs = self._observe()
        terminated = np.full(self.num_envs, self.simulator.done)
        truncated = np.zeros(self.num_envs, dtype=bool)
        infos = self.step_info(result)
        if self.simulator.done:
            infos["final_obs"] = obs
            infos["_final_obs"] = np.ones(self.num_envs, dtype=bool)
            self.simulator.reset(self.np_random)
            obs = self._observe()
        return obs, result.reward, terminated, truncated, infos

    @staticmethod
    def step_info(result: StepResult) -> dict[str, Any]:
        """Per-customer outcome arrays of one step, for infos."""
        return {
            "executed_action": result.action,
            "masked": result.masked,
            "opened": result.opened,
            "purchased": result.purchased,
            "basket": result.basket,
            "redeemed": result.redeemed,
            "unsubscribed": result.unsubscribed,
            "churned": result.churned,
        }

    def action_masks(self) -> np.ndarray:
        """``(num_envs, A)`` allowed actions (sb3-contrib MaskablePPO protocol)."""
        return self.simulator.action_masks()

    def expected_reward(self) -> np.ndarray:
        """``(num_envs, A)`` exact expected immediate profit of every action (the truth)."""
        return self.simulator.expected_reward()

    def observe(self) -> np.ndarray:
        """Current ``(num_envs, d)`` observation, without stepping."""
        return self._observe()

    def _observe(self) -> np.ndarray:
        sim = self.simulator
        st = sim.state
        return self.encoder.encode(st, st.consent & ~st.unsubscribed)
