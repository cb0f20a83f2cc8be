"""The joiner: rewards joined to decisions within a wait window; defaults, late rewards, export.

Pure logic over a :class:`~campaignrl.service.store.DecisionStore`. A decision counts once it is
active: at once when it is made, or when a deferred decision is activated. Its wait window runs
``window_seconds`` from then. Rewards that arrive inside the window (or before a deferred
decision's activation) are on time; they are aggregated into one reward (``sum``, ``earliest``
or ``max``). A reward that arrives after the window closed is stored, flagged late and counted,
and never joined. Once the window closed, a decision with no on-time reward gets
``default_reward``. Deferred decisions never activated are never joined. The outcomes a
reward reports (``opened``, ``purchased``, ``basket_value``, ...) are joined the same way, column
by column, for the export (:func:`aggregate_outcomes`, :meth:`Joiner.export_logs`).

The joined rows feed online learning (:meth:`Joiner.joined`) and off-policy evaluation
(:meth:`Joiner.export_logs`, a frame in the decision-log schema of
:mod:`campaignrl.logs.schema`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from campaignrl._checks import check_scalar
from campaignrl.catalog import NO_CONTACT
from campaignrl.logs.schema import (
    BOOL_OUTCOME_COLUMNS,
    OUTCOME_COLUMNS,
    REQUIRED_COLUMNS,
    mask_column,
)
from campaignrl.service.records import DecisionRecord, RewardRecord
from campaignrl.service.store import DecisionStore, StoredDecision, UnknownDecisionError

__all__ = [
    "AGGREGATIONS",
    "JoinCounts",
    "JoinSettings",
    "JoinedBatch",
    "Joiner",
    "aggregate_outcomes",
    "aggregate_rewards",
]

AGGREGATIONS = ("sum", "earliest", "max")
"""how the on-time rewards of one decision combine"""


@dataclass(frozen=True)
class JoinSettings:
    """How rewards are joined to decisions. Changing them never touches what is stored.

    Raises:
        TypeError: If a field has the wrong type (named).
        ValueError: If ``window_seconds`` is not positive, ``settle_seconds`` is negative,
            ``aggregation`` is unknown or ``default_reward`` is not finite.
    """

    window_seconds: float = 3600.0
    """how long after its activation a decision waits for rewards"""
    aggregation: str = "sum"
    """how several on-time rewards of a decision combine: ``sum``, ``earliest`` or ``max``"""
    default_reward: float = 0.0
    """the reward of an active decision whose window closed without an on-time reward"""
    settle_seconds: float = 1.0
    """margin before a closed window is joined, by default: a reward stamped just before the
    close has this long to be committed"""

    def __post_init__(self) -> None:
        check_scalar(self.window_seconds, "window_seconds", (int, float), min_val=0.0)
        if self.window_seconds == 0:
            raise ValueError(f"`window_seconds` must be > 0, got {self.window_seconds!r}")
        check_scalar(self.settle_seconds, "settle_seconds", (int, float), min_val=0.0)
        check_scalar(self.default_reward, "default_reward", (int, float))
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(
                f"`aggregation` must be one of {AGGREGATIONS}, got {self.aggregation!r}"
            )
        object.__setattr__(self, "window_seconds", float(self.window_seconds))
        object.__setattr__(self, "settle_seconds", float(self.settle_seconds))
        object.__setattr__(self, "default_reward", float(self.default_reward))


@dataclass(frozen=True, eq=False)
class JoinedBatch:
    """Joined decisions as arrays: what online learning consumes."""

    decision_ids: tuple[str, ...]
    """(n,) ids"""
    features: np.ndarray
    """(n, d) float64 features in the manifest's order"""
    actions: np.ndarray
    """(n,) int64 flat action index"""
    rewards: np.ndarray
    """(n,) float64 aggregated on-time reward, or the default"""
    propensities: np.ndarray
    """(n,) float64 probability of the action under the served policy"""
    policy_versions: np.ndarray
    """(n,) int64 the version that decided"""
    defaulted: np.ndarray
    """(n,) bool whether the reward is the default (no on-time reward)"""
    masks: np.ndarray
    """(n, A) bool allowed actions (all true where none was logged)"""
    until: float
    """every window closed at or before this time is in (pass it as the next ``since``)"""

    @property
    def n(self) -> int:
        """Number of joined decisions."""
        return len(self.decision_ids)


@dataclass(frozen=True)
class JoinCounts:
    """Store counts plus the joiner's view at one time (for metrics)."""

    decisions: int
    """decisions stored"""
    pending_activation: int
    """deferred decisions not activated"""
    rewards: int
    """rewards stored (late ones included)"""
    late_rewards: int
    """rewards that arrived after their window closed (never joined)"""
    joined: int
    """active decisions whose window closed"""
    defaulted: int
    """of which got the default reward"""


def aggregate_rewards(rewards: Sequence[RewardRecord], aggregation: str) -> float | None:
    """Combine the on-time rewards of one decision; ``None`` if it has none.

    Late rewards are left out. ``earliest`` takes the first in the order given (the store's
    order of arrival).

    Examples:
        >>> r = [RewardRecord("d", 2.0, 5.0), RewardRecord("d", 3.0, 4.0),
        ...      RewardRecord("d", 9.0, 6.0, late=True)]
        >>> [aggregate_rewards(r, how) for how in ("sum", "max", "earliest")]
        [5.0, 3.0, 2.0]
    """
    values = [r.reward for r in rewards if not r.late]
    if not values:
        return None
    if aggregation == "sum":
        return math.fsum(values)
    if aggregation == "max":
        return max(values)
    if aggregation == "earliest":
        return values[0]
    raise ValueError(f"`aggregation` must be one of {AGGREGATIONS}, got {aggregation!r}")


def aggregate_outcomes(
    rewards: Sequence[RewardRecord], aggregation: str
) -> dict[str, bool | float]:
    """Combine the outcomes the on-time rewards of one decision reported, column by column.

    Each column is combined over the on-time rewards that reported it (late rewards and
    rewards silent on it are left out), the way the reward is: with ``sum`` a flag is True
    when any report is True and ``basket_value`` is the sum of the reported baskets; with
    ``max`` a flag is any True and the basket the largest; with ``earliest`` each column is
    its first report (the store's order of arrival). A column no on-time reward reported is
    absent: unknown, never False.

    Examples:
        >>> r = [RewardRecord("d", 1.0, 1.0, outcomes={"opened": False, "basket_value": 5}),
        ...      RewardRecord("d", 1.0, 2.0, outcomes={"opened": True, "basket_value": 7}),
        ...      RewardRecord("d", 1.0, 3.0, late=True, outcomes={"churned": True})]
        >>> for how in ("sum", "max", "earliest"):
        ...     print(how, aggregate_outcomes(r, how))
        sum {'opened': True, 'basket_value': 12.0}
        max {'opened': True, 'basket_value': 7.0}
        earliest {'opened': False, 'basket_value': 5.0}
    """
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"`aggregation` must be one of {AGGREGATIONS}, got {aggregation!r}")
    reports: dict[str, list[Any]] = {}
    for reward in rewards:
        if not reward.late and reward.outcomes is not None:
            for column, value in reward.outcomes.items():
                reports.setdefault(column, []).append(value)
    out: dict[str, bool | float] = {}
    for column in OUTCOME_COLUMNS:  # schema order
        values = reports.get(column)
        if not values:
            continue
        if aggregation == "earliest":
            out[column] = values[0]
        elif column in BOOL_OUTCOME_COLUMNS:
            out[column] = any(values)
        elif aggregation == "sum":
            out[column] = math.fsum(values)
        else:
            out[column] = max(values)
    return out


def _outcome_frame(
    rows: Sequence[StoredDecision], aggregation: str, feature_names: Sequence[str]
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The export's outcome columns, and why each column that was reported is not written.

    See :meth:`Joiner.export_logs` for the rule. Returns ``(columns, left_out)``.
    """
    n = len(rows)
    known = [aggregate_outcomes(s.rewards, aggregation) for s in rows]
    reported = {c: sum(c in k for k in known) for c in OUTCOME_COLUMNS}
    for k, stored in zip(known, rows, strict=True):
        # What the schema defines needs no report: nothing to open without a contact, and
        # no basket without a purchase.
        if stored.record.action_name == NO_CONTACT:
            k.setdefault("opened", False)
        if k.get("purchased") is False:
            k.setdefault("basket_value", 0.0)
    columns: dict[str, np.ndarray] = {}
    left_out: dict[str, str] = {}
    for c in OUTCOME_COLUMNS:
        if not reported[c]:
            continue  # nobody reported it: nothing to say
        if c in feature_names:
            left_out[c] = "a feature of the policy has its name"
            continue
        unknown = sum(c not in k for k in known)
        if unknown:
            left_out[c] = f"{unknown} of {n} exported decisions have no on-time report of it"
            continue
        dtype = bool if c in BOOL_OUTCOME_COLUMNS else np.float64
        columns[c] = np.array([k[c] for k in known], dtype=dtype)
    ids = [s.record.decision_id for s in rows]
    # The rules read_logs checks, broken by reports of separate rewards: which report is
    # wrong cannot be told, so the columns involved are not written.
    if "basket_value" in columns and "purchased" in columns:
        bad = (columns["basket_value"] > 0.0) & ~columns["purchased"]
        if bad.any():
            shown = [ids[i] for i in np.flatnonzero(bad)[:3]]
            for c in ("purchased", "basket_value"):
                del columns[c]
                left_out[c] = f"a basket above 0 without a purchase is reported for {shown}"
    if "opened" in columns:
        bad = columns["opened"] & np.array([s.record.action_name == NO_CONTACT for s in rows])
        if bad.any():
            del columns["opened"]
            shown = [ids[i] for i in np.flatnonzero(bad)[:3]]
            left_out["opened"] = f"`opened` True is reported for no_contact decisions {shown}"
    return columns, left_out


class Joiner:
    """Joins rewards to decisions over a store, under :class:`JoinSettings`.

    Args:
        store: Where decisions and rewards are.
        settings: The window, aggregation and default reward.
        action_names: The served policy's actions, in index order (names the mask columns).
        feature_names: The served policy's features, in order (names the feature columns).
        clock: Current unix time (inject a fake one in tests).

    Raises:
        ValueError: If ``action_names`` or ``feature_names`` is empty, repeats a name, or a
            feature is named like a schema column.
    """

    def __init__(
        self,
        store: DecisionStore,
        settings: JoinSettings | None = None,
        *,
        action_names: Sequence[str],
        feature_names: Sequence[str],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.settings = JoinSettings() if settings is None else settings
        if not isinstance(self.settings, JoinSettings):
            raise TypeError(f"`settings` must be JoinSettings, got {type(settings).__name__}")
        self.action_names = tuple(str(a) for a in action_names)
        self.feature_names = tuple(str(f) for f in feature_names)
        for name, names in (
            ("action_names", self.action_names),
            ("feature_names", self.feature_names),
        ):
            if not names:
                raise ValueError(f"`{name}` must not be empty, got {list(names)}")
            if len(set(names)) != len(names):
                raise ValueError(f"`{name}` must be unique, got {list(names)}")
        clash = sorted(set(self.feature_names) & set(REQUIRED_COLUMNS))
        if clash:
            raise ValueError(f"`feature_names` must not reuse log schema columns, got {clash}")
        self.clock = clock

    @classmethod
    def from_store(
        cls,
        store: DecisionStore,
        settings: JoinSettings | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> Joiner:
        """A joiner with the names of the newest policy version registered in ``store``.

        The action and feature names come from the store, so ``campaignrl logs export`` needs
        no policy artifact.

        Raises:
            ValueError: If no policy version is registered in the store.
        """
        versions = store.policy_versions()
        if not versions:
            raise ValueError(
                "the store has no registered policy version (its action and feature names): "
                "nothing was served from it"
            )
        newest = versions[-1]
        return cls(
            store,
            settings,
            action_names=newest.action_names,
            feature_names=newest.feature_names,
            clock=clock,
        )

    # ---------------------------------------------------------------------------- rewards

    def is_late(self, decision: DecisionRecord, received_at: float) -> bool:
        """Whether a reward received at ``received_at`` misses ``decision``'s window.

        A reward for a deferred decision not yet activated is not late: its window has not
        started.
        """
        return _late(decision.activated_at, received_at, self.settings.window_seconds)

    def stamped(
        self,
        pairs: Sequence[tuple[str, float]],
        received_at: float,
        outcomes: Sequence[Mapping[str, bool | float] | None] | None = None,
    ) -> list[RewardRecord]:
        """``(decision_id, reward)`` pairs as rewards received at ``received_at``, late or not.

        Reads only the decisions' activation times (:meth:`DecisionStore.activation_times`).

        Raises:
            UnknownDecisionError: If a ``decision_id`` is unknown.
            TypeError, ValueError: If a reward is not a finite number, an outcome is refused,
                or ``outcomes`` is not one per pair.
        """
        reports = _outcomes_per_pair(outcomes, len(pairs))
        activated = self.store.activation_times([d for d, _ in pairs])
        missing = [d for d, _ in pairs if d not in activated]
        if missing:
            raise UnknownDecisionError(list(dict.fromkeys(missing)))
        window = self.settings.window_seconds
        return [
            RewardRecord(d, r, received_at, _late(activated[d], received_at, window), o)
            for (d, r), o in zip(pairs, reports, strict=True)
        ]

    def record_rewards(
        self,
        rewards: Iterable[tuple[str, float]],
        *,
        now: float | None = None,
        outcomes: Sequence[Mapping[str, bool | float] | None] | None = None,
    ) -> list[RewardRecord]:
        """Stamp ``(decision_id, reward)`` pairs with the time, flag the late ones, store them.

        Returns after the rewards are committed. All or nothing.

        Args:
            rewards: ``(decision_id, reward)`` pairs.
            now: The arrival time (default: the clock).
            outcomes: For each pair, the outcomes it reports (see
                :class:`~campaignrl.service.records.RewardRecord`) or ``None``; ``None``
                for none reported by any.

        Raises:
            UnknownDecisionError: If a ``decision_id`` is unknown (nothing is stored).
            TypeError, ValueError: If a reward is not a finite number, an outcome is refused,
                or ``outcomes`` is not one per pair.
        """
        received_at = self.clock() if now is None else now
        return self.store.add_rewards(self.stamped(list(rewards), received_at, outcomes))

    # --------------------------------------------------------------------------- joining

    def _until(self, until: float | None) -> float:
        return self.clock() - self.settings.settle_seconds if until is None else float(until)

    def _reward_of(self, stored: StoredDecision) -> tuple[float, bool]:
        value = aggregate_rewards(stored.rewards, self.settings.aggregation)
        if value is None:
            return self.settings.default_reward, True
        return value, False

    def _check_record(self, record: DecisionRecord) -> None:
        n_actions = len(self.action_names)
        if not record.action < n_actions or self.action_names[record.action] != record.action_name:
            served = self.action_names[record.action] if record.action < n_actions else None
            raise ValueError(
                f"decision {record.decision_id!r} logged action {record.action_name!r} at index "
                f"{record.action}, but the policy's action {record.action} is {served!r}"
            )
        if record.features.shape != (len(self.feature_names),):
            raise ValueError(
                f"decision {record.decision_id!r} has {record.features.size} features, "
                f"the policy has {len(self.feature_names)}"
            )
        if record.probabilities.shape != (n_actions,):
            raise ValueError(
                f"decision {record.decision_id!r} has {record.probabilities.size} "
                f"probabilities, the policy has {n_actions} actions"
            )

    def joined(self, until: float | None = None, *, since: float | None = None) -> JoinedBatch:
        """The active decisions whose window closed in ``(since, until]``, with their reward.

        Call it again with ``since=previous.until`` to get only what closed since: each
        decision is joined exactly once over a sequence of calls.

        Args:
            until: Windows closed at or before this time. Default: the clock minus
                ``settle_seconds``.
            since: Windows closed after this time, or ``None`` for all.

        Raises:
            ValueError: If a stored decision does not match the policy's actions or features.
        """
        until_ = self._until(until)
        window = self.settings.window_seconds
        rows = list(
            self.store.iter_active(
                activated_until=until_ - window,
                activated_after=None if since is None else float(since) - window,
            )
        )
        n, d, a = len(rows), len(self.feature_names), len(self.action_names)
        features = np.empty((n, d), dtype=np.float64)
        masks = np.ones((n, a), dtype=bool)
        rewards = np.empty(n, dtype=np.float64)
        defaulted = np.zeros(n, dtype=bool)
        for i, stored in enumerate(rows):
            record = stored.record
            self._check_record(record)
            features[i] = record.features
            if record.mask is not None:
                masks[i] = record.mask
            rewards[i], defaulted[i] = self._reward_of(stored)
        return JoinedBatch(
            decision_ids=tuple(s.record.decision_id for s in rows),
            features=features,
            actions=np.array([s.record.action for s in rows], dtype=np.int64),
            rewards=rewards,
            propensities=np.array([s.record.propensity for s in rows], dtype=np.float64),
            policy_versions=np.array([s.record.policy_version for s in rows], dtype=np.int64),
            defaulted=defaulted,
            masks=masks,
            until=until_,
        )

    def export_logs(
        self, since: float | None = None, *, until: float | None = None
    ) -> pd.DataFrame:
        """The joined decisions as a decision log (:mod:`campaignrl.logs.schema`).

        One row per active decision whose window closed at or before ``until``, made at or
        after ``since``: ``customer_id`` and ``episode_id`` are the customer's hash, ``step``
        the decision's rank among the customer's decisions, ``reward`` the aggregated
        on-time reward or the default; then the outcome columns (below), an
        ``allowed=<action>`` column per action (all true where no mask was logged) and the
        feature columns. ``write_logs`` writes it and ``read_logs`` reads it back.

        Outcome columns (``opened``, ``purchased``, ``basket_value``, ``unsubscribed``,
        ``churned``): each decision's value is combined over its on-time rewards that
        reported it (:func:`aggregate_outcomes`: with the default ``sum``, a flag is True if
        any report is, and the basket is the sum of the reported baskets). Unlike the reward,
        an outcome has no default: a decision without an on-time report of it is *unknown*,
        and writing False or 0.0 there would bias every rate fitted from the log (no reward
        often only means the client did not post one). So a column is written only when it
        is known for EVERY exported decision, and it is never written with gaps
        (``read_logs`` refuses missing outcome values; dropping the rows would bias OPE). Two
        values need no report, as the schema defines them: ``opened`` is False for a
        ``no_contact`` decision, and ``basket_value`` is 0.0 where ``purchased`` is False.
        A column nobody reported is not written; nor is one that breaks a rule
        ``read_logs`` checks once combined across rewards (a basket without a purchase: both
        columns; an opened ``no_contact``). Why each reported column is not written is in
        ``frame.attrs["outcomes_left_out"]`` (column -> reason; empty when all are).

        Args:
            since: Unix time: only decisions made at or after it; ``None`` for all.
            until: Windows closed at or before this time. Default: the clock minus
                ``settle_seconds``.

        Raises:
            ValueError: If a stored decision does not match the policy's actions or features.
        """
        until_ = self._until(until)
        rows = list(
            self.store.iter_active(
                activated_until=until_ - self.settings.window_seconds,
                created_since=None if since is None else float(since),
                steps=True,
            )
        )
        n, a = len(rows), len(self.action_names)
        masks = np.ones((n, a), dtype=bool)
        features = np.empty((n, len(self.feature_names)), dtype=np.float64)
        rewards = np.empty(n, dtype=np.float64)
        for i, stored in enumerate(rows):
            self._check_record(stored.record)
            if stored.record.mask is not None:
                masks[i] = stored.record.mask
            features[i] = stored.record.features
            rewards[i] = self._reward_of(stored)[0]
        outcomes, left_out = _outcome_frame(rows, self.settings.aggregation, self.feature_names)
        records = [s.record for s in rows]
        keys = [r.customer_key for r in records]
        columns: dict[str, object] = {
            "decision_id": pd.Series([r.decision_id for r in records], dtype=object),
            "timestamp": pd.to_datetime(
                np.array([r.created_at for r in records], dtype=np.float64), unit="s", utc=True
            ),
            "customer_id": pd.Series(keys, dtype=object),
            "episode_id": pd.Series(keys, dtype=object),
            "step": np.array([s.step for s in rows], dtype=np.int64),
            "action": pd.Series([r.action_name for r in records], dtype=object),
            "propensity": np.array([r.propensity for r in records], dtype=np.float64),
            "reward": rewards,
            "policy_version": np.array([r.policy_version for r in records], dtype=np.int64),
            **outcomes,
        }
        for j, action in enumerate(self.action_names):
            columns[mask_column(action)] = masks[:, j]
        for j, feature in enumerate(self.feature_names):
            columns[feature] = features[:, j]
        frame = pd.DataFrame(columns)
        frame.attrs["outcomes_left_out"] = left_out
        return frame

    def counts(self, now: float | None = None) -> JoinCounts:
        """Counts for metrics at ``now`` (default: the clock), windows closed by ``now``."""
        stored = self.store.counts()
        moment = self.clock() if now is None else float(now)
        joined, defaulted = self.store.closed_counts(moment - self.settings.window_seconds)
        return JoinCounts(
            decisions=stored.decisions,
            pending_activation=stored.pending_activation,
            rewards=stored.rewards,
            late_rewards=stored.late_rewards,
            joined=joined,
            defaulted=defaulted,
        )


def _late(activated_at: float | None, received_at: float, window_seconds: float) -> bool:
    """Whether a reward received at ``received_at`` misses its decision's window.

    Never for a decision not activated yet (``activated_at`` is ``None``): its window has not
    started.
    """
    return activated_at is not None and received_at > activated_at + window_seconds


def _outcomes_per_pair(
    outcomes: Sequence[Mapping[str, bool | float] | None] | None, n: int
) -> list[Mapping[str, bool | float] | None]:
    """``outcomes`` as one entry per reward (all ``None`` when not given)."""
    if outcomes is None:
        return [None] * n
    reports = list(outcomes)
    if len(reports) != n:
        raise ValueError(f"`outcomes` must have one entry per reward ({n}), got {len(reports)}")
    return reports
