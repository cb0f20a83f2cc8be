"""``CampaignEnv``: one customer as a ``gymnasium.Env``, a view of the vectorized core."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from campaignrl._checks import check_scalar
from campaignrl.envs.observation import ObservationEncoder
from campaignrl.envs.vector import CampaignVectorEnv, make_simulator
from campaignrl.simulators.spec import WorldSpec

__all__ = ["CampaignEnv"]


class CampaignEnv(gym.Env[np.ndarray, np.int64]):
    """One customer over a campaign of ``horizon`` periods.

    The same core as :class:`~campaignrl.envs.vector.CampaignVectorEnv` with one customer:
    seeded alike, the two give identical trajectories. The episode ends with
    ``terminated=True`` when the calendar runs out. A masked action is executed as
    ``no_contact`` and flagged in ``info["masked"]``.

    Args:
        world: Preset name or ``WorldSpec``.
        horizon: Periods in a campaign.
        **world_overrides: ``WorldSpec`` fields to override.
    """

    metadata: dict[str, Any] = {  # noqa: RUF012 (gymnasium declares it per instance)
        "render_modes": []
    }

    def __init__(
        self, world: str | WorldSpec = "retail", horizon: int = 26, **world_overrides: Any
    ) -> None:
        check_scalar(horizon, "horizon", (int, np.integer), min_val=1)
        self.simulator = make_simulator(world, 1, int(horizon), **world_overrides)
        self.encoder = ObservationEncoder(self.simulator.spec, int(horizon))
        self.observation_space = self.encoder.space()
        self.action_space = spaces.Discrete(self.simulator.n_actions)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Draw a new customer."""
        super().reset(seed=seed)
        self.simulator.reset(self.np_random)
        return self._observe(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Advance one period."""
        result = self.simulator.step(np.array([action], dtype=np.int64).reshape(1), self.np_random)
        info = {k: v[0].item() for k, v in CampaignVectorEnv.step_info(result).items()}
        return self._observe(), float(result.reward[0]), self.simulator.done, False, info

    def action_masks(self) -> np.ndarray:
        """``(A,)`` allowed actions (sb3-contrib MaskablePPO protocol for a single env)."""
        return self.simulator.action_masks()[0]

    def expected_reward(self) -> np.ndarray:
        """``(A,)`` exact expected immediate profit of every action."""
        return self.simulator.expected_reward()[0]

    def _observe(self) -> np.ndarray:
        st = self.simulator.state
        return self.encoder.encode(st, st.consent & ~st.unsubscribed)[0]
