"""Framework-free policies (numpy inference): probability tables and sampling."""

from __future__ import annotations

from campaignrl.policies.sampling import (
    epsilon_mix,
    greedy_probabilities,
    sample_actions,
    uniform_probabilities,
)

__all__ = ["epsilon_mix", "greedy_probabilities", "sample_actions", "uniform_probabilities"]
