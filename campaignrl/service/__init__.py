"""The decision service: decide in real time, log every decision, join rewards, learn online.

Plain modules with no web-framework import (the HTTP app is a thin layer on top):
:mod:`~campaignrl.service.records` (the stored records), :mod:`~campaignrl.service.store`
(the store interface, :func:`open_store` for the SQLite and PostgreSQL backends, group
commit), :mod:`~campaignrl.service.joiner` (rewards joined to decisions, the decision-log
export), :mod:`~campaignrl.service.privacy` (keyed customer hashes).
"""

from __future__ import annotations

from campaignrl.service.joiner import JoinCounts, JoinedBatch, Joiner, JoinSettings
from campaignrl.service.privacy import CustomerHasher
from campaignrl.service.records import DecisionRecord, RewardRecord
from campaignrl.service.store import (
    DecisionStore,
    GroupCommitStore,
    StoreCounts,
    UnknownDecisionError,
    open_store,
)

__all__ = [
    "CustomerHasher",
    "DecisionRecord",
    "DecisionStore",
    "GroupCommitStore",
    "JoinCounts",
    "JoinSettings",
    "JoinedBatch",
    "Joiner",
    "RewardRecord",
    "StoreCounts",
    "UnknownDecisionError",
    "open_store",
]
