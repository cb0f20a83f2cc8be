"""campaignrl: a reinforcement-learning campaign optimizer.

Importing the package registers the Gymnasium environment ``campaignrl/Campaign-v0``.
"""

from __future__ import annotations

from campaignrl import envs as envs

__version__ = "0.1.0"
__all__ = ["__version__", "envs"]
