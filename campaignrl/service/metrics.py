"""The service's Prometheus metrics, in a registry of their own (one per app).

**Several workers.** ``campaignrl serve --workers N`` runs prometheus-client's multiprocess
mode: every worker writes its counters, histograms and gauges to memory-mapped files in
``PROMETHEUS_MULTIPROC_DIR`` (a fresh temporary folder unless that variable is set), and
``/metrics``, whichever worker answers it, reads them all with a ``MultiProcessCollector``:
counters and histograms are summed over the workers (those that exited included, so totals
never go back), ``campaignrl_policy_version`` has one sample per live worker (label ``pid``:
a swap has reached every worker when they agree), the learning gauges come from the one
learner. The mode is the process's: prometheus-client picks it when it is first imported,
from the environment. The store's figures (joined, late, defaulted...) are read from the
store at scrape time, so they are the same totals whoever answers.

Customer ids never appear: no label holds request data, and the route label is the route's
template (``/v1/decisions/{decision_id}/activate``), or ``unmatched``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import values as prometheus_values
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

__all__ = ["LATENCY_BUCKETS", "MULTIPROC_ENV", "ServiceMetrics", "multiprocess_dir"]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
"""prometheus-client's variable: the folder of the workers' metric files"""

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.02,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    10.0,
)
"""request latency buckets (seconds): the service aims at p99 under 10 ms"""


def multiprocess_dir() -> str | None:
    """``PROMETHEUS_MULTIPROC_DIR`` if this process's metrics live in its files, else ``None``.

    prometheus-client chooses memory-mapped values once, when it is imported, if the variable
    is set then; a variable set later changes nothing in this process (``campaignrl serve``
    sets it for the workers it starts, after its own import).
    """
    if prometheus_values.ValueClass is prometheus_values.MutexValue:
        return None
    return os.environ.get(MULTIPROC_ENV)


def _forget_dead_workers(folder: str) -> None:
    """Drop the live gauges of workers that are gone without saying so (``kill -9``).

    A worker that stops cleanly drops its own (:meth:`ServiceMetrics.mark_dead`); one that
    was killed would otherwise keep its last policy version in ``/metrics`` forever. The
    folder is this machine's, so its pids are this machine's processes.
    """
    pids = {p.stem.rsplit("_", 1)[-1] for p in Path(folder).glob("gauge_live*_*.db")}
    for text in pids:
        if not text.isdigit():
            continue
        try:
            os.kill(int(text), 0)
        except ProcessLookupError:
            mark_process_dead(int(text), folder)
        except OSError:  # alive, another user's: leave it
            continue


class _StoreCollector(Collector):
    """Gauges read from the joiner at scrape time, cached for ``max_age`` seconds."""

    def __init__(self, read: Callable[[], dict[str, float]] | None, max_age: float) -> None:
        self.read = read
        self.max_age = max_age
        self._cache: tuple[float, dict[str, float]] | None = None
        self._lock = threading.Lock()

    def _values(self) -> dict[str, float] | None:
        if self.read is None:
            return None
        with self._lock:
            now = time.monotonic()
            if self._cache is None or now - self._cache[0] > self.max_age:
                self._cache = (now, self.read())
            return self._cache[1]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            values = self._values()
        except Exception:  # a store that is down must not break /metrics
            values = None
        up = GaugeMetricFamily(
            "campaignrl_store_up", "1 if the store answered the last metrics read, else 0"
        )
        up.add_metric([], 0.0 if values is None else 1.0)
        yield up
        if values is None:
            return
        for name, help_text in _STORE_GAUGES.items():
            gauge = GaugeMetricFamily(f"campaignrl_store_{name}", help_text)
            gauge.add_metric([], float(values.get(name, 0.0)))
            yield gauge


_STORE_GAUGES = {
    "decisions": "decisions in the store",
    "pending_activation": "deferred decisions not activated",
    "rewards": "rewards in the store (late ones included)",
    "late_rewards": "rewards that arrived after their decision's window closed (never joined)",
    "joined": "active decisions whose reward window closed",
    "defaulted": "joined decisions that got the default reward (no on-time reward)",
}


class ServiceMetrics:
    """Every metric of one app, registered in :attr:`registry`.

    Args:
        store_reader: Returns the store's figures (``decisions``, ``rewards``, ``late_rewards``,
            ``joined``, ``defaulted``, ``pending_activation``) for the scrape-time gauges.
        cache_seconds: How long a store read is reused between scrapes (a count scans tables).
    """

    def __init__(
        self,
        store_reader: Callable[[], dict[str, float]] | None = None,
        *,
        cache_seconds: float = 5.0,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.decisions = Counter(
            "campaignrl_decisions",
            "decisions made and committed, by endpoint and whether deferred",
            ["endpoint", "deferred"],
            registry=r,
        )
        self.replayed = Counter(
            "campaignrl_decisions_replayed",
            "decision requests whose event_id was seen before (the first decision returned)",
            registry=r,
        )
        self.activations = Counter(
            "campaignrl_activations", "deferred decisions activated", registry=r
        )
        self.rewards = Counter(
            "campaignrl_rewards",
            "rewards committed, by whether they arrived after the window (late: never joined)",
            ["late"],
            registry=r,
        )
        self.requests = Counter(
            "campaignrl_http_requests",
            "HTTP responses by route template, method and status",
            ["route", "method", "status"],
            registry=r,
        )
        self.errors = Counter(
            "campaignrl_errors",
            "requests refused or failed, by route template and reason",
            ["route", "reason"],
            registry=r,
        )
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any, Any]] = {}
        self.latency = Histogram(
            "campaignrl_request_seconds",
            "request latency from the first byte received to the response sent",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.commit = Histogram(
            "campaignrl_store_commit_seconds",
            "store lag: time to commit a batch of decisions or rewards before acknowledging",
            ["kind"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.policy_version = Gauge(
            "campaignrl_policy_version",
            "the policy version serving now (several workers: one sample per live worker)",
            registry=r,
            multiprocess_mode="liveall",
        )
        self.policy_swaps = Counter(
            "campaignrl_policy_swaps",
            "policy versions swapped in, by cause (put, rollback, learn, refresh)",
            ["cause"],
            registry=r,
        )
        self.policy_refused = Counter(
            "campaignrl_policy_refused",
            "artifacts refused (the old version kept serving), by failed field",
            ["field"],
            registry=r,
        )
        self.learn_rows = Counter(
            "campaignrl_learn_rows", "joined rows learned from online", registry=r
        )
        self.learn_publishes = Counter(
            "campaignrl_learn_publishes", "versions published by online learning", registry=r
        )
        self.learn_errors = Counter(
            "campaignrl_learn_errors", "online-learning steps that failed (logged)", registry=r
        )
        self.learn_lag = Gauge(
            "campaignrl_learn_lag_seconds",
            "time since the last online-learning step read the joined rows",
            registry=r,
            multiprocess_mode="livemax",  # only the elected learner sets it
        )
        self.learn_pending = Gauge(
            "campaignrl_learn_pending_rows",
            "rows learned and not yet published as a version",
            registry=r,
            multiprocess_mode="livesum",  # only the elected learner sets it
        )
        self._store = _StoreCollector(store_reader, cache_seconds)
        r.register(self._store)
        self.multiprocess_dir = multiprocess_dir()
        """the workers' metric files folder, or ``None`` (one process: :attr:`registry`)"""
        self._scrape = r
        if self.multiprocess_dir is not None:
            # What /metrics shows: every worker's files, and the store read by this one.
            # auto_describe off: registering must not read the files (a process may build
            # its metrics before `serve` empties the folder of an earlier run).
            self._scrape = CollectorRegistry(auto_describe=False)
            MultiProcessCollector(self._scrape, path=self.multiprocess_dir)
            self._scrape.register(self._store)

    def set_store_reader(self, read: Callable[[], dict[str, float]] | None) -> None:
        """Read the store's figures with ``read`` from now on (``None``: report it down)."""
        self._store.read = read
        self._store._cache = None

    def render(self) -> bytes:
        """The metrics in Prometheus' text format: every worker's, in multiprocess mode."""
        if self.multiprocess_dir is not None:
            _forget_dead_workers(self.multiprocess_dir)
        return generate_latest(self._scrape)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one answer and time it, labelled by ``route`` (its template, never raw ids).

        The label children are looked up once per (route, method, status): ``labels`` costs
        microseconds on every request of the hottest routes.
        """
        key = (route, method, status)
        children = self._request_children.get(key)
        if children is None:
            code = str(status)
            children = (
                self.latency.labels(route, method),
                self.requests.labels(route, method, code),
                self.errors.labels(route, code) if status >= 400 else None,
            )
            self._request_children[key] = children
        latency, answered, failed = children
        latency.observe(seconds)
        answered.inc()
        if failed is not None:
            failed.inc()

    def mark_dead(self) -> None:
        """Drop this process's live gauges from the workers' files (a worker that stops).

        Its counters and histograms stay in the sums; its ``campaignrl_policy_version``
        sample goes. Nothing to do with one process.
        """
        if self.multiprocess_dir is not None:
            mark_process_dead(os.getpid(), self.multiprocess_dir)

    def value(self, name: str, labels: dict[str, Any] | None = None) -> float:
        """A sample's current value in THIS process (0 if absent), for tests and checks."""
        got = self.registry.get_sample_value(name, labels or {})
        return 0.0 if got is None else float(got)
