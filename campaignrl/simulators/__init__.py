"""The customer world: segments, affinities, response and dynamics, presets."""

from __future__ import annotations

from campaignrl.simulators.core import CustomerSimulator, CustomerState, StepResult
from campaignrl.simulators.presets import WORLDS, get_world, load_world, world_names
from campaignrl.simulators.spec import SegmentSpec, WorldArrays, WorldSpec

__all__ = [
    "WORLDS",
    "CustomerSimulator",
    "CustomerState",
    "SegmentSpec",
    "StepResult",
    "WorldArrays",
    "WorldSpec",
    "get_world",
    "load_world",
    "world_names",
]
