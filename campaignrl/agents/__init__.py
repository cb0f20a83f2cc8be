"""Agents and baselines that decide which offer to send on which channel."""

from __future__ import annotations

from campaignrl.agents.baselines import (
    BASELINES,
    Baseline,
    MyopicOracle,
    NoContact,
    RandomPolicy,
    RestrainedOracle,
    RFMRules,
    StaticBest,
    baseline_names,
    make_baseline,
)

__all__ = [
    "BASELINES",
    "Baseline",
    "MyopicOracle",
    "NoContact",
    "RFMRules",
    "RandomPolicy",
    "RestrainedOracle",
    "StaticBest",
    "baseline_names",
    "make_baseline",
]
