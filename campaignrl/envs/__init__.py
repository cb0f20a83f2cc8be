"""Gymnasium environments: one customer, a population, and an SB3 adapter, on one core.

Importing this package registers ``campaignrl/Campaign-v0``; pick the world with
``gymnasium.make("campaignrl/Campaign-v0", world="fatigue")`` or, vectorized,
``gymnasium.make_vec("campaignrl/Campaign-v0", num_envs=10_000, world="fatigue")``.
"""

from __future__ import annotations

from gymnasium.envs.registration import register, registry

from campaignrl.envs.observation import ObservationEncoder
from campaignrl.envs.single import CampaignEnv
from campaignrl.envs.vector import CampaignVectorEnv, make_simulator

__all__ = [
    "ENV_ID",
    "CampaignEnv",
    "CampaignSB3VecEnv",
    "CampaignVectorEnv",
    "ObservationEncoder",
    "make_simulator",
]

ENV_ID = "campaignrl/Campaign-v0"

if ENV_ID not in registry:
    register(
        id=ENV_ID,
        entry_point="campaignrl.envs.single:CampaignEnv",
        vector_entry_point="campaignrl.envs.vector:CampaignVectorEnv",
        kwargs={"world": "retail", "horizon": 26},
    )


def __getattr__(name: str) -> object:
    # The SB3 adapter imports stable-baselines3 (and torch): only load it when asked for.
    if name == "CampaignSB3VecEnv":
        from campaignrl.envs.sb3 import CampaignSB3VecEnv

        return CampaignSB3VecEnv
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
