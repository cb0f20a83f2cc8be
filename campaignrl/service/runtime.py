"""The service's plain objects wired together from settings (no web framework here).

:class:`ServiceRuntime` holds the store, the policy versions, the decider, the joiner, the
customer hasher and, with ``learn``, the online learning; the HTTP routes only parse a request,
call one of its methods and answer. Everything here is callable and tested without HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import json
import logging
import operator
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, NamedTuple

import numpy as np

from campaignrl.policies import Exploration
from campaignrl.service.decider import Decider, DecisionColumns, DecisionInputError
from campaignrl.service.joiner import Joiner, JoinSettings
from campaignrl.service.metrics import ServiceMetrics
from campaignrl.service.online import LearningSettings, OnlineLearning, learner_for
from campaignrl.service.privacy import CustomerHasher
from campaignrl.service.records import DecisionRecord, RewardRecord
from campaignrl.service.settings import ServiceSettings
from campaignrl.service.store import (
    DecisionStore,
    GroupCommitStore,
    open_store,
)
from campaignrl.service.versions import PolicyRefused, PolicyVersion, PolicyVersions

try:  # POSIX: several worker processes share one versions folder
    import fcntl
except ImportError:  # pragma: no cover - Windows: one worker
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "CURSOR_FILE",
    "GC_YOUNG_THRESHOLD",
    "SWITCH_INTERVAL",
    "DecisionRequest",
    "LearningLoop",
    "ServiceRuntime",
    "freeze_startup_objects",
    "open_versions",
]

log = logging.getLogger("campaignrl.service")

SWITCH_INTERVAL = 0.0002
"""seconds (``sys.setswitchinterval``) a thread waits for the GIL before the running one must
hand it over. The store's writer thread gives the GIL up for every row it inserts and for
every commit's disk flush; with Python's default of 5 ms each time it wants it back it may
wait that long behind the busy event loop (the "convoy effect"), and commits, so answers,
fall behind: 0.2 ms measured 20% more single decisions per second at saturation."""
GC_YOUNG_THRESHOLD = 50_000
"""allocations of GC-tracked objects (net of those freed) that start a collection of the
youngest generation (``gc.set_threshold``; Python's default is 700). A batch of 100
decisions allocates a few thousand objects (request models, records, answers) that live
until its commit, so with 700 the cycle collector ran about once per batch, traversed every
batch in flight and promoted them to the older generations, whose collections then ran
often too: a quarter of the server's CPU per batch, measured. Nearly everything the service
allocates is freed by reference counting; the collector is only for rare cycles, and
50,000 objects of those wait at most a few batches."""
CURSOR_FILE = "learning-cursor.json"
"""in the versions folder: the joiner time up to which online learning has published"""
_BOOTSTRAP_LOCK = ".bootstrap.lock"
_LEARNER_LOCK = ".learner.lock"


class DecisionRequest(NamedTuple):
    """One decision asked for (already parsed from JSON).

    A named tuple: the batch route makes one per customer, and a frozen dataclass costs ten
    times as much to build.
    """

    customer_id: str | int
    """the raw customer id (hashed before anything is stored)"""
    features: Mapping[str, Any] | np.ndarray
    """``name -> number``, exactly the policy's features; or a ``(d,)`` float array of them in
    the policy's order (the HTTP routes pass the values pydantic checked)"""
    event_id: str | None = None
    """the client's idempotency key"""
    deferred: bool = False
    """whether the decision waits for an activation before it counts"""
    mask: Sequence[bool] | Sequence[str] | None = None
    """allowed actions: ``A`` booleans or a list of names; ``None``: all"""


# ---------------------------------------------------------------------------- versions


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (blocking) across processes, where the OS has one."""
    with path.open("a") as fh:
        if fcntl is not None:
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(fh, fcntl.LOCK_UN)


def _manifest_digest(directory: Path) -> str | None:
    try:
        return hashlib.sha256((directory / "manifest.json").read_bytes()).hexdigest()
    except OSError:
        return None


def open_versions(settings: ServiceSettings) -> PolicyVersions:
    """The policy versions, with ``settings.policy_dir`` proposed if it is new.

    ``policy_dir`` becomes a new version unless a stored version has the very same
    ``manifest.json`` (the manifest holds the sha256 of every other file): restarting with the
    same ``--policy`` resumes at the version that was serving, learned versions included, so
    a restart never resets what was learned. Several workers starting together take turns (a
    file lock), so one artifact is proposed once.

    Raises:
        ValueError: If there is no policy to serve, or ``policy_dir`` is refused (naming
            ``--policy`` and the failed check); the versions stay as they were.
    """
    root = settings.resolved_versions_dir
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"`versions_dir` {str(root)!r}: cannot create it ({exc})") from None
    with _file_lock(root / _BOOTSTRAP_LOCK):
        try:
            versions = PolicyVersions(root, signing_key=settings.secret("signing_key"))
        except PolicyRefused as exc:
            raise ValueError(f"`versions_dir` {str(root)!r}: {exc}") from None
        policy_dir = settings.policy_dir
        if policy_dir is not None:
            digest = _manifest_digest(policy_dir)
            known = [
                info.version
                for info in versions.list()
                if digest is not None and _manifest_digest(info.path) == digest
            ]
            if known and not versions.empty:
                log.info(
                    "--policy %s is stored as version(s) %s; serving v%06d",
                    policy_dir,
                    known,
                    versions.current.version,
                )
            else:
                try:
                    if known:
                        versions.activate(known[-1])
                    else:
                        entry = versions.propose(policy_dir)
                        log.info("--policy %s stored as version %d", policy_dir, entry.version)
                except PolicyRefused as exc:
                    raise ValueError(f"argument --policy: {exc}") from None
    if versions.empty:
        raise ValueError(
            f"no policy to serve: pass --policy DIR (a policy artifact); {str(root)!r} holds "
            f"no version yet"
        )
    return versions


# ---------------------------------------------------------------------------- learning


class LearningLoop:
    """One online-learning step at a time: joined rows -> learner -> (on schedule) a version.

    Joined rows are read once each (the joiner's ``since`` cursor). The cursor is saved in
    the versions folder only when a version is published, so rows learned but not yet
    published are read again after a restart, never lost and never counted twice (except if
    the process dies between publishing a version and saving the cursor: that one batch is
    then learned twice).

    Args:
        learning: The online learning over the policy versions.
        joiner: Where joined rows come from.
        every_seconds: Publish when this long passed since the last publish and rows are
            pending.
        every_rows: Publish as soon as this many rows are pending (``None``: time only).
        metrics: Where to count rows and publishes.
        clock: Current unix time.
    """

    def __init__(
        self,
        learning: OnlineLearning,
        joiner: Joiner,
        *,
        every_seconds: float,
        every_rows: int | None,
        metrics: ServiceMetrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.learning = learning
        self.joiner = joiner
        self.every_seconds = float(every_seconds)
        self.every_rows = every_rows
        self.metrics = metrics
        self.clock = clock
        self.cursor_path = learning.versions.root / CURSOR_FILE
        saved = self._read_cursor()
        # A first start learns from windows that close from now on: what the store held
        # before may already be in the artifact (trained offline on an export).
        self.since: float = saved if saved is not None else clock() - joiner.settings.settle_seconds
        self.last_publish = clock()
        self.last_step: float | None = None
        self._lock = threading.Lock()

    def _read_cursor(self) -> float | None:
        try:
            data = json.loads(self.cursor_path.read_text())
            value = float(data["until"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{str(self.cursor_path)!r} is not a valid cursor ({exc})") from None
        return value if np.isfinite(value) else None

    def _write_cursor(self, until: float, version: int) -> None:
        root = self.cursor_path.parent
        fd, tmp = tempfile.mkstemp(prefix=f".{CURSOR_FILE}.", dir=root)
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump({"until": until, "version": version}, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.cursor_path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def step(self) -> PolicyVersion | None:
        """Learn from the rows joined since the last step; publish if due. Thread-safe.

        Returns:
            The version published, or ``None``.
        """
        with self._lock:
            batch = self.joiner.joined(since=self.since)
            if batch.n:
                self.learning.update(
                    batch.features, batch.actions, batch.rewards, batch.propensities
                )
                self.metrics.learn_rows.inc(batch.n)
            self.since = batch.until
            now = self.clock()
            self.last_step = now
            self.metrics.learn_lag.set(0.0)
            pending = self.learning.pending
            self.metrics.learn_pending.set(pending)
            due = pending > 0 and (
                (self.every_rows is not None and pending >= self.every_rows)
                or now - self.last_publish >= self.every_seconds
            )
            if not due:
                return None
            entry = self.learning.publish()
            self._write_cursor(batch.until, entry.version)
            self.last_publish = now
            self.metrics.learn_publishes.inc()
            self.metrics.learn_pending.set(0)
            self.metrics.policy_swaps.labels("learn").inc()
            self.metrics.policy_version.set(entry.version)
            log.info("online learning published version %d (%d rows)", entry.version, pending)
            return entry


class LearnerElection:
    """At most one process of those sharing a versions folder learns: whoever holds a lock.

    :meth:`try_acquire` never blocks; a worker that does not hold the lock tries again at its
    next step, so when the learning worker dies another one takes over.
    """

    def __init__(self, root: Path) -> None:
        self.path = root / _LEARNER_LOCK
        self._fh: IO[str] | None = None

    @property
    def held(self) -> bool:
        """Whether this process holds the learner lock."""
        return self._fh is not None

    def try_acquire(self) -> bool:
        """Take the lock if it is free; True if this process holds it."""
        if self._fh is not None:
            return True
        fh = self.path.open("a")
        if fcntl is None:  # pragma: no cover - no file locks: a single worker is assumed
            self._fh = fh
            return True
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            return False
        self._fh = fh
        return True

    def release(self) -> None:
        """Let another process learn."""
        if self._fh is not None:
            if fcntl is not None:
                fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


# ---------------------------------------------------------------------------- the runtime


def _decision_ids(n: int) -> list[str]:
    """``n`` new decision ids, 32 hex digits: UUIDv7s, ascending (RFC 9562, section 5.7).

    The first 48 bits are the unix time in milliseconds, then 74 random bits (from
    ``os.urandom``, drawn together for the batch: ten times faster than one call each), so
    ids are unique (two of the same millisecond collide with odds 2^-74) and nearly sorted
    by time. That is for the store: the primary-key b-tree of ``decisions`` then grows at
    its end, touching a page or two per commit, where random ids (uuid4) dirtied one page
    per row, each written to the WAL and fsynced: a third of the store's CPU per batch.

    Examples:
        >>> import uuid
        >>> ids = _decision_ids(3)
        >>> [uuid.UUID(i).version for i in ids], ids == sorted(ids)
        ([7, 7, 7], True)
    """
    if n <= 0:
        return []
    # Every id's bytes at once in one buffer, set with strided slices and byte tables (C
    # loops), without numpy's per-call overhead: a third less CPU for 100 ids, most of it
    # for one.
    raw = bytearray(os.urandom(16 * n))
    stamp = (time.time_ns() // 1_000_000).to_bytes(8, "big")[2:]
    for i in range(6):
        raw[i::16] = stamp[i : i + 1] * n
    raw[6::16] = raw[6::16].translate(_UUID_VERSION_7)
    raw[8::16] = raw[8::16].translate(_UUID_VARIANT)
    text = raw.hex()
    if n == 1:
        return [text]
    return sorted([text[i : i + 32] for i in range(0, 32 * n, 32)])


_UUID_VERSION_7 = bytes((b & 0x0F) | 0x70 for b in range(256))
"""a UUID's byte 6 with its high nibble set to version 7, by its random value"""
_UUID_VARIANT = bytes((b & 0x3F) | 0x80 for b in range(256))
"""a UUID's byte 8 with its two high bits set to the RFC 9562 variant, by its random value"""


def freeze_startup_objects() -> None:
    """Move every object alive now out of the cycle collector's sight (``gc.freeze``).

    For a serving process, once its app is built: the modules, classes and the policy it
    imported (about 120,000 objects) live as long as the process, and each collection of
    the oldest generation would traverse them all again (a pause of tens of milliseconds).
    What is garbage now is collected first.
    """
    gc.collect()
    gc.freeze()


def _seed_sequence(settings: ServiceSettings) -> np.random.SeedSequence:
    """The exploration seed: the setting's, or fresh entropy from the OS (logged).

    With several workers each process mixes its pid into the seed, so the workers do not
    draw the same sequence (every draw's propensity is exact either way).
    """
    if settings.seed is None:
        sequence = np.random.SeedSequence()
        log.info("exploration seed drawn from the OS: %d", sequence.entropy)
        return sequence
    if settings.workers > 1:
        return np.random.SeedSequence(settings.seed, spawn_key=(os.getpid(),))
    return np.random.SeedSequence(settings.seed)


_BOOL = {bool}
_EVENT_ID_TYPES = {str, type(None)}
_DEFERRED = operator.attrgetter("deferred")


class ServiceRuntime:
    """The decider, the store, the joiner and the versions of one service process.

    Args:
        settings: The service settings.
        versions: The policy versions (from :func:`open_versions`).
        store: An open store (closed by :meth:`close`).
        metrics: The app's metrics.
        clock: Current unix time (a fake one in tests).

    Raises:
        ValueError: If ``learn`` is on and the serving policy's kind does not learn online.
    """

    def __init__(
        self,
        settings: ServiceSettings,
        versions: PolicyVersions,
        store: DecisionStore,
        *,
        metrics: ServiceMetrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.versions = versions
        self.store = store
        self.metrics = metrics or ServiceMetrics()
        self.clock = clock
        hash_key = settings.secret("hash_key")
        if hash_key is None:  # ServiceSettings refuses this already
            raise ValueError("setting `hash_key` is required")
        self.hasher = CustomerHasher(hash_key, setting="hash_key")
        self.decider = Decider(
            versions,
            exploration_epsilon=settings.exploration_epsilon,
            seed=_seed_sequence(settings),
        )
        policy = versions.current.policy
        self.joiner = Joiner(
            store,
            JoinSettings(
                window_seconds=settings.reward_window_seconds,
                aggregation=settings.aggregation,
                default_reward=settings.default_reward,
            ),
            action_names=policy.action_names,
            feature_names=policy.feature_names,
            clock=clock,
        )
        self.learning_settings = LearningSettings(
            exploration=Exploration(
                "greedy",
                epsilon=0.1
                if settings.exploration_epsilon is None
                else settings.exploration_epsilon,
            )
        )
        if settings.learn:
            try:
                learner_for(policy, self.learning_settings)
            except ValueError as exc:
                raise ValueError(str(exc)) from None
        self.election = LearnerElection(versions.root)
        self.loop: LearningLoop | None = None
        self._learn_lock = threading.Lock()
        self.metrics.policy_version.set(versions.current.version)
        self.metrics.set_store_reader(self._store_figures)

    @classmethod
    def open(
        cls,
        settings: ServiceSettings,
        *,
        metrics: ServiceMetrics | None = None,
        versions: PolicyVersions | None = None,
        clock: Callable[[], float] = time.time,
    ) -> ServiceRuntime:
        """Open the versions (unless given) and the store, and wire everything.

        The store is behind a :class:`~campaignrl.service.store.GroupCommitStore`: the
        requests that arrive while one commit is flushed to disk share the next commit, and
        each is answered only once its own records are committed. The process's GIL switch
        interval is lowered to :data:`SWITCH_INTERVAL` and its cycle collector's youngest
        threshold raised to :data:`GC_YOUNG_THRESHOLD` (never lowered).

        Raises:
            ValueError: A bad store URL or policy, naming the setting or flag.
        """
        versions = versions if versions is not None else open_versions(settings)
        if sys.getswitchinterval() > SWITCH_INTERVAL:
            sys.setswitchinterval(SWITCH_INTERVAL)
        young, *older = gc.get_threshold()
        if 0 < young < GC_YOUNG_THRESHOLD:  # 0: collection is off, left so
            gc.set_threshold(GC_YOUNG_THRESHOLD, *older)
        store = GroupCommitStore(open_store(settings.store_url))
        try:
            return cls(settings, versions, store, metrics=metrics, clock=clock)
        except BaseException:
            store.close()
            raise

    # ------------------------------------------------------------------ decisions

    def _records(
        self,
        customer_ids: Sequence[str | int],
        event_ids: Sequence[str | None],
        deferred: Sequence[bool],
        columns: DecisionColumns,
        endpoint: str,
    ) -> list[DecisionRecord]:
        """The records to store for the decider's ``columns``, one per customer.

        Built without re-checking every field (``DecisionRecord(...)`` copies and checks
        every array and number: tens of microseconds a row, a third of a batch's time): the
        decider's output is checked here for the whole batch at once (finite probabilities, a
        propensity in (0, 1]) and the drawn action is allowed by the mask. The fields are
        those the constructor would set: ``activated_at`` is ``created_at`` for a decision
        that is not deferred. Caller values of other types (not from the HTTP routes, whose
        models check them) go through the constructor, which refuses them naming the field.
        """
        now = float(self.clock())
        n = len(columns)
        probs, propensities = columns.probabilities, columns.propensities
        chances = propensities.tolist()
        # The whole batch at once; only when it fails are the rows checked one by one.
        if not (np.isfinite(probs).all() and all(0.0 < p <= 1.0 for p in chances)):
            self._refuse_unfit(probs, propensities, endpoint)
        names, version, x = columns.action_names, columns.policy_version, columns.features
        # Type by type in C: whether every flag is a bool and every event id None or a
        # non-empty str.
        trusted = (
            probs.dtype == np.float64
            and x.dtype == np.float64
            and set(map(type, deferred)) <= _BOOL
            and set(map(type, event_ids)) <= _EVENT_ID_TYPES
            and "" not in event_ids
        )
        if columns.masks is None:
            masks: list[np.ndarray | None] = [None] * n
        else:
            masks = [m if g else None for m, g in zip(columns.masks, columns.given, strict=True)]
        out: list[DecisionRecord] = []
        new = object.__new__
        # Row views of the arrays come out of list(array) in C, cheaper than indexing in a loop.
        for decision_id, customer_key, event_id, defer, action, propensity, prob, row, mask in zip(
            _decision_ids(n),
            self.hasher.many(customer_ids),
            event_ids,
            deferred,
            columns.actions.tolist(),
            chances,
            list(probs),
            list(x),
            masks,
            strict=True,
        ):
            fields = {
                "decision_id": decision_id,
                "event_id": event_id,
                "customer_key": customer_key,
                "created_at": now,
                "action": action,
                "action_name": names[action],
                "propensity": propensity,
                "probabilities": prob,
                "features": row,
                "mask": mask,
                "policy_version": version,
                "deferred": defer,
                "activated_at": None if defer else now,
            }
            if trusted:
                record: DecisionRecord = new(DecisionRecord)
                record.__dict__.update(fields)
            else:
                fields["activated_at"] = None
                record = DecisionRecord(**fields)
            out.append(record)
        return out

    @staticmethod
    def _refuse_unfit(probs: np.ndarray, propensities: np.ndarray, endpoint: str) -> None:
        """Refuse the first row with a non-finite probability or a propensity outside (0, 1].

        A policy may overflow on huge (finite) features; they are refused rather than a
        vector logged that is not a probability distribution.
        """
        fine = np.isfinite(probs).all(axis=1) & (propensities > 0.0) & (propensities <= 1.0)
        if not fine.all():
            i = int(np.argmin(fine))
            raise DecisionInputError(
                (i, "features") if endpoint != "single" else ("features",),
                "(values)",
                "give the policy non-finite scores: use values on the scale it was trained on",
            )

    def _decide_records(
        self, requests: Sequence[DecisionRequest], endpoint: str
    ) -> list[DecisionRecord]:
        single = endpoint == "single" and len(requests) == 1
        arrays = all(isinstance(r.features, np.ndarray) for r in requests)
        features: Any
        if single:
            r = requests[0]
            features = np.asarray(r.features)[None, :] if arrays else r.features
            masks: Any = r.mask
        else:
            features = (
                np.array([r.features for r in requests])
                if arrays
                else [r.features for r in requests]
            )
            masks = [r.mask for r in requests]
            masks = None if all(m is None for m in masks) else masks
        columns = self.decider.decide_columns(features, masks, single=single)
        return self._records(
            [r.customer_id for r in requests],
            [r.event_id for r in requests],
            [r.deferred for r in requests],
            columns,
            endpoint,
        )

    def decide(
        self, requests: Sequence[DecisionRequest], *, endpoint: str = "batch"
    ) -> list[tuple[DecisionRecord, bool]]:
        """Decide, commit, and return each stored decision with whether it was replayed.

        A request whose ``event_id`` was stored before returns that first decision (and
        ``True``): nothing new is logged. Returns only after the store committed.

        Raises:
            DecisionInputError: Naming the field (row first for a batch of several).
        """
        requests = list(requests)
        if not requests:
            return []
        records = self._decide_records(requests, endpoint)
        started = time.perf_counter()
        stored = self.store.add_decisions(records)
        self.metrics.commit.labels("decisions").observe(time.perf_counter() - started)
        return self._acknowledged(records, stored, endpoint)

    async def decide_async(
        self, requests: Sequence[DecisionRequest], *, endpoint: str = "batch"
    ) -> list[tuple[DecisionRecord, bool]]:
        """:meth:`decide` for the event loop: the commit is awaited, never blocking the loop.

        The decisions are drawn in the calling thread (microseconds); the records join the
        group commit under way (:meth:`GroupCommitStore.add_decisions_async`), or a worker
        thread commits them for a store without an async path. Answered only after the
        commit, as :meth:`decide`.

        Raises:
            DecisionInputError: Naming the field (row first for a batch of several).
        """
        requests = list(requests)
        if not requests:
            return []
        return await self._commit_async(self._decide_records(requests, endpoint), endpoint)

    async def decide_columns_async(
        self,
        customer_ids: Sequence[str | int],
        features: np.ndarray,
        *,
        event_ids: Sequence[str | None],
        deferred: Sequence[bool],
        masks: Sequence[Any] | None = None,
        endpoint: str = "batch",
    ) -> list[tuple[DecisionRecord, bool]]:
        """:meth:`decide_async` for requests given column by column (the HTTP routes).

        Args:
            customer_ids: The raw customer ids, one per row.
            features: ``(n, d)`` float64 features in the policy's order.
            event_ids: Idempotency keys (``None`` for none), one per row.
            deferred: Per row, whether the decision waits for an activation.
            masks: ``None`` (all allowed) or one mask per row (see
                :meth:`Decider.mask_matrix`).
            endpoint: ``"single"`` for one customer (errors name no row), else ``"batch"``.

        Raises:
            DecisionInputError: Naming the field (row first for a batch).
        """
        if len(customer_ids) == 0:
            return []
        single = endpoint == "single"
        columns = self.decider.decide_columns(
            features, masks[0] if single and masks is not None else masks, single=single
        )
        records = self._records(customer_ids, event_ids, deferred, columns, endpoint)
        return await self._commit_async(records, endpoint)

    async def _commit_async(
        self, records: list[DecisionRecord], endpoint: str
    ) -> list[tuple[DecisionRecord, bool]]:
        started = time.perf_counter()
        add = getattr(self.store, "add_decisions_async", None)
        if add is not None:
            stored = await add(records)
        else:
            stored = await asyncio.to_thread(self.store.add_decisions, records)
        self.metrics.commit.labels("decisions").observe(time.perf_counter() - started)
        return self._acknowledged(records, stored, endpoint)

    def _acknowledged(
        self, records: list[DecisionRecord], stored: list[DecisionRecord], endpoint: str
    ) -> list[tuple[DecisionRecord, bool]]:
        if len(stored) == len(records) and all(map(operator.is_, stored, records)):
            # Nothing replayed (the store returned every record it was given): counted with
            # C loops instead of one Python step per row.
            n = len(records)
            later = sum(map(_DEFERRED, records))
            if later:
                self.metrics.decisions.labels(endpoint, "true").inc(later)
            if n - later:
                self.metrics.decisions.labels(endpoint, "false").inc(n - later)
            return list(zip(records, [False] * n, strict=True))
        out = []
        counts = {True: 0, False: 0}  # deferred or not; one metric update per batch
        replays = 0
        for made, kept in zip(records, stored, strict=True):
            # The store returns the record it was given unless the event_id was seen before.
            replayed = kept is not made and kept.decision_id != made.decision_id
            if replayed:
                replays += 1
            else:
                counts[kept.deferred] += 1
            out.append((kept, replayed))
        if replays:
            self.metrics.replayed.inc(replays)
        for deferred, label in ((True, "true"), (False, "false")):
            if counts[deferred]:
                self.metrics.decisions.labels(endpoint, label).inc(counts[deferred])
        return out

    def activate(self, decision_id: str) -> DecisionRecord:
        """Activate a deferred decision (idempotent); return it.

        Raises:
            UnknownDecisionError: If the store holds no such decision.
        """
        before = self.store.get_decision(decision_id)
        record = self.store.activate(decision_id, self.clock())
        if before.activated_at is None:
            self.metrics.activations.inc()
        return record

    def record_rewards(
        self,
        pairs: Sequence[tuple[str, float]],
        outcomes: Sequence[Mapping[str, bool | float] | None] | None = None,
    ) -> list[RewardRecord]:
        """Store rewards (all or nothing), flagged late after their window; return them.

        ``outcomes``: one entry per pair, the outcomes that reward reports (or ``None``).

        Raises:
            UnknownDecisionError: Naming the unknown ids (nothing is stored).
        """
        started = time.perf_counter()
        stored = self.joiner.record_rewards(pairs, outcomes=outcomes)
        self.metrics.commit.labels("rewards").observe(time.perf_counter() - started)
        self._count_rewards(stored)
        return stored

    async def record_rewards_async(
        self,
        pairs: Sequence[tuple[str, float]],
        outcomes: Sequence[Mapping[str, bool | float] | None] | None = None,
    ) -> list[RewardRecord]:
        """:meth:`record_rewards` for the event loop (the store read and commit are awaited).

        Raises:
            UnknownDecisionError: Naming the unknown ids (nothing is stored).
        """
        pairs = list(pairs)
        add = getattr(self.store, "add_rewards_async", None)
        if add is None:
            return await asyncio.to_thread(self.record_rewards, pairs, outcomes)
        started = time.perf_counter()
        records = await asyncio.to_thread(self._reward_records, pairs, self.clock(), outcomes)
        stored: list[RewardRecord] = await add(records)
        self.metrics.commit.labels("rewards").observe(time.perf_counter() - started)
        self._count_rewards(stored)
        return stored

    def _reward_records(
        self,
        pairs: Sequence[tuple[str, float]],
        received_at: float,
        outcomes: Sequence[Mapping[str, bool | float] | None] | None = None,
    ) -> list[RewardRecord]:
        """The rewards stamped ``received_at`` and flagged late by the joiner's window."""
        return self.joiner.stamped(pairs, received_at, outcomes)

    def _count_rewards(self, stored: Sequence[RewardRecord]) -> None:
        late = sum(1 for reward in stored if reward.late)
        if late:
            self.metrics.rewards.labels("true").inc(late)
        if len(stored) > late:
            self.metrics.rewards.labels("false").inc(len(stored) - late)

    # ------------------------------------------------------------------ policy

    def propose(self, artifact_dir: Path) -> PolicyVersion:
        """Validate an artifact and swap it in.

        Raises:
            PolicyRefused: Naming the failed check; the old version keeps serving.
        """
        try:
            entry = self.versions.propose(artifact_dir)
        except PolicyRefused as exc:
            self.metrics.policy_refused.labels(exc.field).inc()
            raise
        self.metrics.policy_swaps.labels("put").inc()
        self.metrics.policy_version.set(entry.version)
        return entry

    def rollback(self) -> PolicyVersion:
        """Serve the previous version again.

        Raises:
            PolicyRefused: If there is none.
        """
        entry = self.versions.rollback()
        self.metrics.policy_swaps.labels("rollback").inc()
        self.metrics.policy_version.set(entry.version)
        return entry

    def refresh(self) -> bool:
        """Pick up a version another process swapped in; True if it changed."""
        swapped = self.versions.refresh()
        if swapped:
            self.metrics.policy_swaps.labels("refresh").inc()
            self.metrics.policy_version.set(self.versions.current.version)
        return swapped

    # ------------------------------------------------------------------ learning

    def learn_step(self) -> PolicyVersion | None:
        """One online-learning step if this process is the elected learner (else nothing).

        Raises:
            Whatever the step raises (the caller logs it and counts it; serving goes on).
        """
        if not self.settings.learn:
            return None
        with self._learn_lock:  # the background task and a caller may step at once
            return self._learn_step_locked()

    def _learn_step_locked(self) -> PolicyVersion | None:
        if self.loop is None:
            if not self.election.try_acquire():
                return None
            learning = OnlineLearning(
                self.versions,
                settings=self.learning_settings,
                signing_key=self.settings.secret("signing_key"),
            )
            self.loop = LearningLoop(
                learning,
                self.joiner,
                every_seconds=self.settings.learn_every_seconds,
                every_rows=self.settings.learn_every_rewards,
                metrics=self.metrics,
                clock=self.clock,
            )
        return self.loop.step()

    # ------------------------------------------------------------------ operations

    def _store_figures(self) -> dict[str, float]:
        counts = self.joiner.counts()
        return {
            "decisions": counts.decisions,
            "pending_activation": counts.pending_activation,
            "rewards": counts.rewards,
            "late_rewards": counts.late_rewards,
            "joined": counts.joined,
            "defaulted": counts.defaulted,
        }

    def ready(self) -> tuple[bool, str]:
        """Whether the store answers and a policy serves, with the reason if not."""
        try:
            self.store.get_decisions(["readiness-check"])
        except Exception as exc:  # any store failure means not ready
            return False, f"store not answering ({type(exc).__name__})"
        if self.versions.empty:  # pragma: no cover - open_versions refuses this
            return False, "no policy version"
        return True, "ready"

    def close(self) -> None:
        """Release the learner lock and close the store (every commit is already durable)."""
        self.election.release()
        self.metrics.set_store_reader(None)
        self.store.close()
