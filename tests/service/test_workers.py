"""Several workers: ``campaignrl serve --workers 2`` on PostgreSQL and SQLite, for real.

The server runs as a subprocess on 127.0.0.1; clients post decisions, batches and rewards,
each on a new connection (the kernel hands new connections to whichever worker accepts
first, so both answer). Checked: both workers answered (each worker's own counter file in
``PROMETHEUS_MULTIPROC_DIR``); ``/metrics``, from whichever worker, sums every worker's
counters and equals what the clients were acknowledged; every acknowledged decision and
reward is in the store; a policy swapped in through one worker is served by every worker
within ``refresh_seconds``; ``/healthz`` and ``/readyz`` name the served version; SIGTERM
under load drains the requests in flight (each gets its 200), flushes the store and exits 0.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from campaignrl.cli import main
from campaignrl.policies import ConstantPolicy, Exploration, save_policy
from campaignrl.service.app import create_app
from campaignrl.service.metrics import _forget_dead_workers
from campaignrl.service.settings import ServiceSettings
from campaignrl.service.store import open_store

FEATURES = ("recency", "segment=new")
ACTIONS = ("no_contact", "pct10@email", "bundle@sms")
ROW = {"recency": 1.0, "segment=new": 0.0}
HASH_KEY = "hash-key-0123456789abcdef"
ADMIN = "admin-token-0123456789"
BEARER = {"Authorization": f"Bearer {ADMIN}"}
REFRESH_SECONDS = 0.2


def _policy(path: Path, scores: tuple[float, ...] = (0.0, 1.0, 2.0)) -> Path:
    policy = ConstantPolicy(FEATURES, ACTIONS, np.array(scores), Exploration("greedy", epsilon=0.3))
    return save_policy(policy, path)


def _tar_gz(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for file in sorted(folder.iterdir()):
            tar.add(file, arcname=file.name)
    return buffer.getvalue()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ------------------------------------------------------------------ one process


def test_healthz_and_readyz_name_the_served_version(tmp_path: Path) -> None:
    settings = ServiceSettings.load(
        hash_key=HASH_KEY,
        admin_token=ADMIN,
        policy_dir=_policy(tmp_path / "policy"),
        store_url=f"sqlite:///{tmp_path / 'decisions.db'}",
        seed=0,
    )
    with TestClient(create_app(settings)) as client:
        assert client.get("/healthz").json() == {"status": "ok", "policy_version": 1}
        assert client.get("/readyz").json() == {"status": "ready", "policy_version": 1}
        put = client.put("/v1/policy", content=_tar_gz(_policy(tmp_path / "v2")), headers=BEARER)
        assert put.status_code == 200, put.text
        assert client.get("/healthz").json()["policy_version"] == 2
        assert client.get("/readyz").json()["policy_version"] == 2
        assert client.post("/v1/policy/rollback", headers=BEARER).status_code == 200
        assert client.get("/healthz").json()["policy_version"] == 1
        assert client.get("/readyz").json()["policy_version"] == 1


def test_a_metrics_folder_that_is_not_a_folder_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAMPAIGNRL_HASH_KEY", HASH_KEY)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "missing"))
    before = {k: v for k, v in os.environ.items() if k.startswith("CAMPAIGNRL_")}
    code = main(
        ["serve", "--policy", str(_policy(tmp_path / "policy")), "--workers", "2",
         "--store", f"sqlite:///{tmp_path / 'decisions.db'}", "--port", str(_free_port())]
    )  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "PROMETHEUS_MULTIPROC_DIR" in err and "is not a folder" in err, err
    # Nothing was set for workers that never started.
    assert {k: v for k, v in os.environ.items() if k.startswith("CAMPAIGNRL_")} == before


def test_metrics_forget_the_version_of_a_worker_killed_without_notice(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a pid that no process holds any more (reuse within the test: negligible)
    for pid in (gone.pid, os.getpid()):
        for mode in ("liveall", "livemax"):
            (tmp_path / f"gauge_{mode}_{pid}.db").write_bytes(b"")
    (tmp_path / f"counter_{gone.pid}.db").write_bytes(b"")
    _forget_dead_workers(str(tmp_path))
    left = sorted(p.name for p in tmp_path.iterdir())
    alive = os.getpid()
    # The dead worker's counts stay in the sums; only its live gauges go.
    assert left == sorted(
        [f"counter_{gone.pid}.db", f"gauge_liveall_{alive}.db", f"gauge_livemax_{alive}.db"]
    )


# ------------------------------------------------------------------ the real server


class Clients:
    """Threads posting decisions (single, batches of 5) and rewards, each on a new connection.

    What the server acknowledged is kept; an answer that is not a 200 is a failure; a thread
    stops at ``stop`` or at its first connection error (the server is going away).
    """

    def __init__(self, url: str, threads: int = 3) -> None:
        self.url = url
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.decisions: dict[str, int] = {}  # decision id -> policy version
        self.rewards: list[tuple[str, float]] = []
        self.failures: list[str] = []
        self.cut_off = 0
        self.values = itertools.count(1)
        self.threads = [threading.Thread(target=self._run, args=(k,)) for k in range(threads)]

    def __enter__(self) -> Clients:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def counts(self) -> tuple[int, int]:
        with self.lock:
            return len(self.decisions), len(self.rewards)

    def _post(self, path: str, body: object) -> Any:
        try:
            answer = httpx.post(f"{self.url}{path}", json=body, timeout=30.0)
        except httpx.TransportError:
            with self.lock:
                self.cut_off += 1
            raise
        if answer.status_code != 200:
            with self.lock:
                self.failures.append(f"{path}: {answer.status_code} {answer.text[:200]}")
            return None
        return answer.json()

    def _run(self, k: int) -> None:
        mine: list[str] = []
        for i in itertools.count():
            if self.stop.is_set():
                return
            made: list[dict[str, Any]] = []
            try:
                if i % 3 == 0:
                    one = self._post("/v1/decisions", {"customer_id": f"t{k}-{i}", "features": ROW})
                    made = [] if one is None else [one]
                elif i % 3 == 1:
                    batch = [{"customer_id": f"t{k}-{i}-{j}", "features": ROW} for j in range(5)]
                    out = self._post("/v1/decisions:batch", {"decisions": batch})
                    made = [] if out is None else out["decisions"]
                elif mine:
                    target, value = mine[i % len(mine)], float(next(self.values))
                    if self._post("/v1/rewards", {"decision_id": target, "reward": value}):
                        with self.lock:
                            self.rewards.append((target, value))
            except httpx.TransportError:
                return
            with self.lock:
                for d in made:
                    self.decisions[d["decision_id"]] = d["policy_version"]
            mine += [d["decision_id"] for d in made]


def _per_worker(folder: Path, sample: str) -> dict[int, float]:
    """Each worker's own total of ``sample`` (summed over labels), from its counter file."""
    out: dict[int, float] = {}
    for file in folder.glob("counter_*.db"):
        pid = int(file.stem.split("_")[-1])
        total = sum(
            s.value
            for metric in MultiProcessCollector.merge([str(file)])
            for s in metric.samples
            if s.name == sample
        )
        out[pid] = total
    return out


def _scrape(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    text = httpx.get(f"{url}/metrics", timeout=30.0).text
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((dict(s.labels), float(s.value)))
    return out


def _total(scraped: dict[str, list[tuple[dict[str, str], float]]], name: str) -> float:
    return sum(value for _, value in scraped.get(name, []))


def _in_flight(port: int, customer: str) -> tuple[socket.socket, bytes]:
    """A decision request with half its body sent: in flight until the rest is sent."""
    body = json.dumps({"customer_id": customer, "features": ROW}).encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(
        b"POST /v1/decisions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body[:10]
    )
    return sock, body[10:]


def _finish(sock: socket.socket, rest: bytes) -> tuple[bytes, dict[str, Any] | None]:
    """Send the rest of the body; the status line and the JSON answer (if any)."""
    with sock:
        sock.sendall(rest)
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0], (json.loads(body) if body.strip() else None)


@pytest.fixture
def serve_workers(tmp_path: Path) -> Iterator[Any]:
    """Start ``campaignrl serve --workers N``; yield a starter; kill what is left after."""
    started: list[subprocess.Popen[bytes]] = []

    def start(
        store_url: str, workers: int, metrics_dir: Path | None = None
    ) -> tuple[str, subprocess.Popen[bytes]]:
        port = _free_port()
        env = {
            **os.environ,
            "CAMPAIGNRL_HASH_KEY": HASH_KEY,
            "CAMPAIGNRL_ADMIN_TOKEN": ADMIN,
        }
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        if metrics_dir is not None:
            env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
        env.pop("CAMPAIGNRL_API_KEY", None)
        env.pop("CAMPAIGNRL_SIGNING_KEY", None)
        proc = subprocess.Popen(
            [sys.executable, "-m", "campaignrl.cli", "serve",
             "--policy", str(_policy(tmp_path / "policy")), "--store", store_url,
             "--versions-dir", str(tmp_path / "versions"), "--port", str(port),
             "--workers", str(workers), "--refresh-seconds", str(REFRESH_SECONDS),
             "--seed", "0", "--log-level", "warning"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        started.append(proc)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90.0
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                err = proc.stderr.read().decode() if proc.stderr else ""
                pytest.fail(f"campaignrl serve exited with {proc.returncode}: {err}")
            try:
                if httpx.get(f"{url}/readyz", timeout=1.0).status_code == 200:
                    return url, proc
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        pytest.fail("campaignrl serve --workers did not get ready in 90 s")

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _wait_until(what: str, check: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting until {what}")
        time.sleep(0.05)


def _sigterm_under_load(
    url: str,
    proc: subprocess.Popen[bytes],
    store_url: str,
    decisions: dict[str, int],
    rewards: list[tuple[str, float]],
) -> None:
    """SIGTERM under load with requests in flight: each gets its 200, the store has all.

    ``decisions`` and ``rewards`` (acknowledged before) are checked in the store too.
    """
    port = int(url.rsplit(":", 1)[1])
    with Clients(url) as clients:
        seen = clients.counts()[0]
        _wait_until("the load runs", lambda: clients.counts()[0] >= seen + 30)
        flying = [_in_flight(port, f"flying-{i}") for i in range(4)]
        time.sleep(1.0)  # accepted by the workers, their bodies awaited
        proc.send_signal(signal.SIGTERM)
        time.sleep(1.5)  # several workers: the parent passes it on (it polls every 0.5 s)
        for sock, rest in flying:
            status, body = _finish(sock, rest)
            assert status == b"HTTP/1.1 200 OK", status
            assert body is not None
            decisions[body["decision_id"]] = body["policy_version"]
        assert proc.wait(timeout=60) == 0
        for thread in clients.threads:  # each stops at its first refused connection
            thread.join(timeout=60)
    assert not clients.failures, clients.failures[:5]
    assert clients.counts()[0] > seen
    decisions.update(clients.decisions)
    rewards += clients.rewards
    store = open_store(store_url)
    try:
        lost = set(decisions) - set(store.get_decisions(list(decisions)))
        assert not lost, f"{len(lost)} acknowledged decisions lost"
        stored = {(d, r.reward) for d in {d for d, _ in rewards} for r in store.rewards_for(d)}
        assert set(rewards) <= stored
    finally:
        store.close()


def test_one_worker_drains_on_sigterm_under_load(tmp_path: Path, serve_workers: Any) -> None:
    # PROMETHEUS_MULTIPROC_DIR set for one worker: emptied at start, then used.
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_1.db").write_bytes(b"left over from an earlier run")
    store_url = f"sqlite:///{tmp_path / 'decisions.db'}"
    url, proc = serve_workers(store_url, 1, metrics_dir)
    assert not (metrics_dir / "counter_1.db").exists()
    assert _scrape(url)["campaignrl_policy_version"] == [({"pid": str(proc.pid)}, 1.0)]
    _sigterm_under_load(url, proc, store_url, {}, [])


def test_two_workers_share_the_store_metrics_and_versions_and_drain_on_sigterm(
    store_url: str, tmp_path: Path, serve_workers: Any
) -> None:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_1.db").write_bytes(b"left over from an earlier run")
    url, proc = serve_workers(store_url, 2, metrics_dir)
    assert not (metrics_dir / "counter_1.db").exists()  # serve empties the folder first

    # Load until both workers have answered decisions.
    with Clients(url) as clients:

        def both_answered() -> bool:
            assert not clients.failures, clients.failures[:5]
            per = _per_worker(metrics_dir, "campaignrl_decisions_total")
            return clients.counts()[0] >= 60 and len([v for v in per.values() if v > 0]) == 2

        # The second worker may still be starting when the first one answers /readyz.
        _wait_until("both workers answered decisions", both_answered, timeout=120.0)
    assert not clients.failures, clients.failures[:5]
    assert clients.cut_off == 0
    decisions, rewards = dict(clients.decisions), list(clients.rewards)
    assert set(decisions.values()) == {1}
    assert rewards

    # /metrics sums every worker's counters, whichever worker answers.
    per_worker = _per_worker(metrics_dir, "campaignrl_decisions_total")
    assert len(per_worker) == 2 and all(v > 0 for v in per_worker.values()), per_worker
    for _ in range(4):
        scraped = _scrape(url)
        assert _total(scraped, "campaignrl_decisions_total") == len(decisions)
        assert _total(scraped, "campaignrl_rewards_total") == len(rewards)
        assert _total(scraped, "campaignrl_store_decisions") == len(decisions)
        versions = scraped["campaignrl_policy_version"]
        assert {labels["pid"] for labels, _ in versions} == {str(p) for p in per_worker}
        assert {value for _, value in versions} == {1.0}
    assert sum(per_worker.values()) == len(decisions)

    # Every acknowledged decision and reward is in the store.
    store = open_store(store_url)
    try:
        assert set(store.get_decisions(list(decisions))) == set(decisions)
        stored = {(d, r.reward) for d in {d for d, _ in rewards} for r in store.rewards_for(d)}
        assert set(rewards) <= stored
    finally:
        store.close()

    # A swap through one worker: every worker serves it within refresh_seconds.
    put = httpx.put(
        f"{url}/v1/policy", content=_tar_gz(_policy(tmp_path / "v2", (5.0, 0.0, 0.0))),
        headers=BEARER, timeout=30.0,
    )  # fmt: skip
    assert put.status_code == 200, put.text
    assert put.json()["version"] == 2
    swapped = time.monotonic()

    def everyone_on_v2() -> bool:
        versions = _scrape(url)["campaignrl_policy_version"]
        return len(versions) == 2 and {value for _, value in versions} == {2.0}

    _wait_until("every worker serves version 2", everyone_on_v2, timeout=30.0)
    # Generous for a busy CI machine; a worker checks every REFRESH_SECONDS.
    assert time.monotonic() - swapped < 20 * REFRESH_SECONDS + 5.0
    for i in range(6):  # new connections: either worker
        answer = httpx.post(
            f"{url}/v1/decisions", json={"customer_id": f"after-{i}", "features": ROW}, timeout=30
        ).json()
        assert answer["policy_version"] == 2
        decisions[answer["decision_id"]] = 2
        assert httpx.get(f"{url}/healthz", timeout=30).json()["policy_version"] == 2
        assert httpx.get(f"{url}/readyz", timeout=30).json()["policy_version"] == 2

    _sigterm_under_load(url, proc, store_url, decisions, rewards)
    # Each worker dropped its version sample as it stopped.
    assert not list(metrics_dir.glob("gauge_liveall_*.db"))
