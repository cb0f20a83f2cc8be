"""``CampaignSB3VecEnv``: the vectorized core as a stable-baselines3 ``VecEnv``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import VecEnv

from campaignrl.envs.vector import CampaignVectorEnv

__all__ = ["CampaignSB3VecEnv"]


class CampaignSB3VecEnv(VecEnv):
    """Adapts a :class:`CampaignVectorEnv` to SB3's ``VecEnv`` API (no copies of the core).

    SB3 expects ``dones`` and a list of per-env info dicts; the last observation of an
    episode is in ``infos[i]["terminal_observation"]``, and a masked action (executed as no
    contact) is flagged with ``infos[i]["masked"] = True``. Every outcome array of the last
    step (opened, purchased, ...) is in :attr:`last_info`. The horizon end is a termination,
    not a time-limit truncation, so SB3 does not bootstrap there. ``env_method("action_masks")``
    returns one mask row per customer, which is what sb3-contrib's ``get_action_masks`` stacks.

    Args:
        venv: The vector env to adapt.
    """

    def __init__(self, venv: CampaignVectorEnv) -> None:
        if not isinstance(venv, CampaignVectorEnv):
            raise TypeError(f"`venv` must be a CampaignVectorEnv, got {type(venv).__name__}")
        self.venv = venv
        super().__init__(venv.num_envs, venv.single_observation_space, venv.single_action_space)
        self._actions: np.ndarray | None = None
        self._seed: int | None = None
        self.last_info: dict[str, Any] = {}
        """outcome arrays of the last step (``CampaignVectorEnv`` infos), one row per customer"""

    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        """Seed the next :meth:`reset` (the whole population shares one Generator)."""
        self._seed = seed
        return [seed] * self.num_envs

    def reset(self) -> np.ndarray:
        """Reset the population, with the seed given to :meth:`seed` if any."""
        obs, _ = self.venv.reset(seed=self._seed)
        self._seed = None
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        """Store actions for :meth:`step_wait`."""
        self._actions = np.asarray(actions).reshape(self.num_envs)

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        """Step the population with the stored actions."""
        if self._actions is None:
            raise RuntimeError("call step_async(actions) before step_wait()")
        obs, rewards, terminated, truncated, infos = self.venv.step(self._actions)
        self._actions = None
        dones = terminated | truncated
        self.last_info = infos
        if "final_obs" in infos:
            final = infos["final_obs"]
            trunc = truncated.tolist()
            out: list[dict[str, Any]] = [
                {"terminal_observation": final[i], "TimeLimit.truncated": trunc[i]}
                for i in range(self.num_envs)
            ]
        else:
            out = [{} for _ in range(self.num_envs)]
        # Per-customer dicts of every outcome would cost more than the step itself at 100k
        # customers: flag only the masked actions there; all outcomes stay in `last_info`.
        for i in np.flatnonzero(infos["masked"]).tolist():
            out[i]["masked"] = True
            out[i]["executed_action"] = 0
        return obs, rewards.astype(np.float32), dones, out

    def action_masks(self) -> np.ndarray:
        """``(num_envs, A)`` allowed actions."""
        return self.venv.action_masks()

    def close(self) -> None:
        """Close the underlying env."""
        self.venv.close()

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        """The attribute of the (shared) env, once per selected index."""
        value = getattr(self.venv, attr_name)
        return [value for _ in self._indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        """Set an attribute of the shared env (all customers share it)."""
        setattr(self.venv, attr_name, value)

    def env_method(
        self, method_name: str, *method_args: Any, indices: Any = None, **method_kwargs: Any
    ) -> list[Any]:
        """Call a method of the shared env; per-customer results are split by row.

        ``action_masks`` and ``expected_reward`` return one row per selected customer.
        """
        result = getattr(self.venv, method_name)(*method_args, **method_kwargs)
        idx = list(self._indices(indices))
        if method_name in ("action_masks", "expected_reward"):
            return [result[i] for i in idx]
        return [result for _ in idx]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: Any = None) -> list[bool]:
        """Customers are never wrapped individually."""
        return [False for _ in self._indices(indices)]

    def _indices(self, indices: Any) -> Iterable[int]:
        return self._get_indices(indices)
