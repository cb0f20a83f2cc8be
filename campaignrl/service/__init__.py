"""The decision service: decide in real time, log every decision, join rewards, learn online.

Plain modules with no web-framework import (the HTTP app is a thin layer on top):
:mod:`~campaignrl.service.records` (the stored records), :mod:`~campaignrl.service.store`
(the store interface, SQLite and PostgreSQL backends), :mod:`~campaignrl.service.joiner`
(rewards joined to decisions, the decision-log export), :mod:`~campaignrl.service.privacy`
(keyed customer hashes).
"""

from __future__ import annotations

from campaignrl.service.records import DecisionRecord, RewardRecord

__all__ = ["DecisionRecord", "RewardRecord"]
