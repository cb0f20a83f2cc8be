"""Durability under load: group commit in the running service, ``kill -9``, hot swaps.

The service acknowledges a decision or a reward only after its commit, and concurrent
requests share commits (:class:`GroupCommitStore`, whose async path the HTTP routes await).
First that path, tested without HTTP: merged commits, errors kept with their caller, a
close that waits for queued writes, SQLite's checkpoints off the commit path. Then the real
``campaignrl serve``: a few client threads post decisions (single and batches) and rewards
as fast as it answers and remember every one it acknowledged; ``kill -9`` in the middle of
that, a restart on the same store, and every acknowledged decision and reward must be in the
store (SQLite and PostgreSQL). Policy swaps under the same load fail no request, and a
tampered or unsigned artifact is refused while the old version keeps serving.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import os
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from campaignrl.policies import ConstantPolicy, Exploration, save_policy
from campaignrl.service.records import DecisionRecord, RewardRecord
from campaignrl.service.runtime import DecisionRequest, ServiceRuntime
from campaignrl.service.settings import ServiceSettings
from campaignrl.service.sqlite_store import SQLiteStore
from campaignrl.service.store import (
    DecisionStore,
    GroupCommitStore,
    UnknownDecisionError,
    open_store,
)
from campaignrl.service.versions import sign_artifact

FEATURES = ("recency", "segment=new")
ACTIONS = ("no_contact", "pct10@email", "bundle@sms")
ROW = {"recency": 1.0, "segment=new": 0.0}
HASH_KEY = "hash-key-0123456789abcdef"
ADMIN = "admin-token-0123456789"
SIGNING_KEY = "signing-key-0123456789"
BEARER = {"Authorization": f"Bearer {ADMIN}"}


def _policy(path: Path, scores: tuple[float, ...] = (0.0, 1.0, 2.0), sign: bool = False) -> Path:
    policy = ConstantPolicy(FEATURES, ACTIONS, np.array(scores), Exploration("greedy", epsilon=0.3))
    save_policy(policy, path)
    if sign:
        sign_artifact(path, SIGNING_KEY.encode())
    return path


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


# ------------------------------------------------------------------ the commit path


def _record(i: int, deferred: bool = False, mask: np.ndarray | None = None) -> DecisionRecord:
    return DecisionRecord(
        decision_id=f"d{i:04d}", event_id=None, customer_key="c0", created_at=float(i),
        action=1, action_name="a1", propensity=0.2, probabilities=np.array([0.8, 0.2]),
        features=np.array([float(i), -0.5]), mask=mask, policy_version=1, deferred=deferred,
        activated_at=None,
    )  # fmt: skip


class _Gate:
    """A real store whose first write waits in the commit until :meth:`open` is called."""

    def __init__(self, store: DecisionStore) -> None:
        self.store = store
        self.entered = threading.Event()
        self.released = threading.Event()

    def _hold(self) -> None:
        if not self.entered.is_set():
            self.entered.set()
            if not self.released.wait(30.0):
                raise TimeoutError("the gate was never opened")

    def add_decisions(self, records: list[DecisionRecord]) -> list[DecisionRecord]:
        self._hold()
        return self.store.add_decisions(records)

    def add_rewards(self, rewards: list[RewardRecord]) -> list[RewardRecord]:
        self._hold()
        return self.store.add_rewards(rewards)

    def get_decisions(self, ids: list[str]) -> dict[str, DecisionRecord]:
        return self.store.get_decisions(ids)

    def activation_times(self, ids: list[str]) -> dict[str, float | None]:
        return self.store.activation_times(ids)

    def close(self) -> None:
        self.store.close()


def _gated(tmp_path: Path) -> tuple[GroupCommitStore, _Gate, DecisionStore]:
    inner = open_store(f"sqlite:///{tmp_path / 'd.db'}")
    gate = _Gate(inner)
    return GroupCommitStore(gate), gate, inner  # type: ignore[arg-type]


async def _behind_the_first(
    group: GroupCommitStore, gate: _Gate, first: Any, rest: list[Any]
) -> list[object]:
    """Run ``first`` until it is inside its commit, queue ``rest`` behind it, then let go."""
    head = asyncio.ensure_future(first)
    await asyncio.to_thread(gate.entered.wait, 30.0)
    tail = [asyncio.ensure_future(c) for c in rest]
    while len(group._queue) < len(rest):  # each queues at its first step
        await asyncio.sleep(0.001)
    gate.released.set()
    return await asyncio.gather(head, *tail, return_exceptions=True)


def test_async_writers_share_commits_and_errors_stay_with_their_caller(tmp_path: Path) -> None:
    group, gate, inner = _gated(tmp_path)
    inner.add_decisions([_record(0)])
    rest = [group.add_decisions_async([_record(i)]) for i in range(2, 9)]
    rest.append(group.add_rewards_async([RewardRecord("ghost", 1.0, 1.0)]))
    rest.append(group.add_rewards_async([RewardRecord("d0000", 2.0, 1.0)]))
    first = group.add_decisions_async([_record(1)])
    results = asyncio.run(_behind_the_first(group, gate, first, rest))
    assert results[:8] == [[_record(i)] for i in range(1, 9)]
    assert isinstance(results[8], UnknownDecisionError) and "'ghost'" in str(results[8])
    assert results[9] == [RewardRecord("d0000", 2.0, 1.0)]
    # the first write alone; then 7 decisions in one commit, the good reward retried alone
    assert group.commits == 3
    assert inner.counts().decisions == 9 and inner.rewards_for("d0000")[0].reward == 2.0
    group.close()


def test_threads_and_coroutines_share_one_queue(tmp_path: Path) -> None:
    group, gate, inner = _gated(tmp_path)
    first = group.add_decisions_async([_record(1)])
    rest = [asyncio.to_thread(group.add_decisions, [_record(2), _record(3)])]
    rest += [group.add_decisions_async([_record(i)]) for i in range(4, 8)]
    results = asyncio.run(_behind_the_first(group, gate, first, rest))
    assert [r.decision_id for out in results for r in out] == [f"d{i:04d}" for i in range(1, 8)]
    assert group.commits == 2
    assert inner.counts().decisions == 7
    group.close()


def test_close_waits_for_queued_writes_then_refuses_new_ones(tmp_path: Path) -> None:
    group, gate, _ = _gated(tmp_path)

    async def main() -> None:
        writes = [asyncio.ensure_future(group.add_decisions_async([_record(i)])) for i in range(4)]
        await asyncio.to_thread(gate.entered.wait, 30.0)
        closing = asyncio.ensure_future(asyncio.to_thread(group.close))
        await asyncio.sleep(0.05)
        assert not closing.done()  # a write is still in its commit
        gate.released.set()
        await closing  # returns once all four are committed
        assert [len(w.result()) for w in writes] == [1, 1, 1, 1]
        with pytest.raises(RuntimeError, match="the store is closed"):
            await group.add_decisions_async([_record(9)])

    asyncio.run(main())
    assert group._writer is not None and not group._writer.is_alive()
    reopened = open_store(f"sqlite:///{tmp_path / 'd.db'}")
    assert reopened.counts().decisions == 4
    reopened.close()


def test_the_runtime_commits_concurrent_requests_together(tmp_path: Path) -> None:
    settings = ServiceSettings(
        hash_key=HASH_KEY, policy_dir=_policy(tmp_path / "policy"), seed=0,
        store_url=f"sqlite:///{tmp_path / 'd.db'}",
    )  # fmt: skip
    opened = ServiceRuntime.open(settings)
    assert isinstance(opened.store, GroupCommitStore)  # what `campaignrl serve` runs
    opened.store.close()
    group, gate, inner = _gated(tmp_path)
    runtime = ServiceRuntime(settings, opened.versions, group)
    calls = [
        runtime.decide_async([DecisionRequest(f"c{i}", ROW)], endpoint="single") for i in range(12)
    ]
    answers = asyncio.run(_behind_the_first(group, gate, calls[0], calls[1:]))
    ids = [out[0][0].decision_id for out in answers]  # type: ignore[index]
    assert group.commits == 2  # 12 requests, 2 durable commits
    assert set(inner.get_decisions(ids)) == set(ids)
    labels = {"endpoint": "single", "deferred": "false"}
    assert runtime.metrics.value("campaignrl_decisions_total", labels) == 12
    runtime.close()


def _settings(tmp_path: Path) -> ServiceSettings:
    return ServiceSettings(
        hash_key=HASH_KEY, policy_dir=_policy(tmp_path / "policy"), seed=0,
        store_url=f"sqlite:///{tmp_path / 'd.db'}",
    )  # fmt: skip


def _columns(runtime: ServiceRuntime, masks: list[Any] | None) -> Any:
    features = np.array([[1.0, 0.0], [2.0, 1.0]])
    return runtime.decider.decide_columns(features, masks)


@pytest.mark.parametrize("deferred", [False, True])
@pytest.mark.parametrize("masks", [None, [None, ["no_contact", "bundle@sms"]]])
def test_trusted_records_equal_checked_ones(
    tmp_path: Path, deferred: bool, masks: list[Any] | None
) -> None:
    # The runtime builds its records without the constructor's checks (a third of a batch's
    # time): they must be the records the constructor would build from the same fields.
    runtime = ServiceRuntime.open(_settings(tmp_path), clock=lambda: 7.0)
    try:
        records = runtime._records(
            ["a", "b"], [None, "e1"], [deferred, deferred], _columns(runtime, masks), "batch"
        )
        for record in records:
            fields = {name: getattr(record, name) for name in record.__dataclass_fields__}
            checked = DecisionRecord(**{**fields, "activated_at": None})
            assert record == checked
            assert record.activated_at == checked.activated_at == (None if deferred else 7.0)
        assert records[0].mask is None  # no mask given: none logged
        assert records[1].event_id == "e1"
        if masks is not None:
            assert records[1].mask is not None
            assert records[1].mask.tolist() == [True, False, True]
    finally:
        runtime.close()


@pytest.mark.parametrize(
    ("deferred", "event_id", "message"),
    [
        ("yes", None, "`deferred` must be a bool, got 'yes'"),
        (False, "", "`event_id` must be a non-empty str or None, got ''"),
        (False, 5, "`event_id` must be a non-empty str or None, got 5"),
    ],
)
def test_trusted_records_still_refuse_wrong_types(
    tmp_path: Path, deferred: object, event_id: object, message: str
) -> None:
    runtime = ServiceRuntime.open(_settings(tmp_path))
    try:
        with pytest.raises(TypeError, match=message):
            runtime._records(
                ["a", "b"],
                [None, event_id],  # type: ignore[list-item]
                [False, deferred],  # type: ignore[list-item]
                _columns(runtime, None),
                "batch",
            )
    finally:
        runtime.close()


def test_sqlite_checkpoints_in_its_own_thread(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "d.db", checkpoint_seconds=0.05)
    store.add_decisions([_record(i) for i in range(300)])
    # The commit wrote the WAL only (no automatic checkpoint); the thread copies it over.
    deadline = time.monotonic() + 30.0
    wal = tmp_path / "d.db-wal"
    while (tmp_path / "d.db").stat().st_size < 300 * 100:
        assert time.monotonic() < deadline, "no checkpoint ran"
        time.sleep(0.02)
    assert wal.exists()
    thread = store._checkpointer
    store.close()
    assert thread is not None and not thread.is_alive()


@pytest.mark.parametrize("value", [0, -1.0, float("inf"), float("nan"), True, "1"])
def test_sqlite_refuses_a_bad_checkpoint_interval(tmp_path: Path, value: object) -> None:
    with pytest.raises(ValueError, match="`checkpoint_seconds` must be a positive number"):
        SQLiteStore(tmp_path / "d.db", checkpoint_seconds=value)  # type: ignore[arg-type]


# ------------------------------------------------------------------ the real server


@dataclass
class Server:
    """``campaignrl serve`` as a child process."""

    policy: Path
    store_url: str
    folder: Path
    signing_key: str | None = None
    port: int = field(default_factory=_free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Server:
        env = {**os.environ, "CAMPAIGNRL_HASH_KEY": HASH_KEY, "CAMPAIGNRL_ADMIN_TOKEN": ADMIN}
        env.pop("CAMPAIGNRL_API_KEY", None)
        env.pop("CAMPAIGNRL_SIGNING_KEY", None)
        if self.signing_key is not None:
            env["CAMPAIGNRL_SIGNING_KEY"] = self.signing_key
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "campaignrl.cli", "serve", "--policy", str(self.policy),
             "--store", self.store_url, "--versions-dir", str(self.folder / "versions"),
             "--port", str(self.port), "--seed", "0", "--log-level", "warning"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        deadline = time.monotonic() + 60.0
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                pytest.fail(f"campaignrl serve exited with {self.proc.returncode}: {err}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        pytest.fail("campaignrl serve did not get ready in 60 s")

    def kill(self) -> None:
        """``kill -9``: no draining, no flush, no atexit."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Load:
    """Client threads posting decisions and rewards; what the server acknowledged, kept.

    Each thread alternates a single decision, a batch of 5 and a reward (a value unique in
    the run) for one of its acknowledged decisions. A thread stops at ``stop``, or at its
    first connection error (the server died): an answer that is not a 200 is a failure.
    """

    def __init__(self, url: str, threads: int = 4) -> None:
        self.url = url
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.decisions: dict[str, int] = {}  # acknowledged decision id -> policy version
        self.rewards: list[tuple[str, float]] = []  # acknowledged (decision id, reward)
        self.failures: list[str] = []
        self.cut_off = 0  # requests that got no answer (connection refused or reset)
        self.values = itertools.count(1)
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(threads)]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def acknowledged(self) -> tuple[int, int]:
        with self.lock:
            return len(self.decisions), len(self.rewards)

    def wait_for(self, decisions: int, rewards: int, timeout: float = 30.0) -> None:
        """Until at least this many decisions and rewards were acknowledged."""
        deadline = time.monotonic() + timeout
        while True:
            made, paid = self.acknowledged()
            if made >= decisions and paid >= rewards:
                return
            if time.monotonic() > deadline or self.failures:
                pytest.fail(f"load stalled at {(made, paid)}; failures {self.failures[:5]}")
            time.sleep(0.01)

    def _post(self, client: httpx.Client, path: str, body: object) -> dict | None:
        try:
            answer = client.post(path, json=body)
        except httpx.TransportError:
            with self.lock:
                self.cut_off += 1
            raise
        if answer.status_code != 200:
            with self.lock:
                self.failures.append(f"{path}: {answer.status_code} {answer.text[:200]}")
            return None
        result: dict = answer.json()
        return result

    def _run(self, k: int) -> None:
        mine: list[str] = []
        with httpx.Client(base_url=self.url, timeout=20.0) as client:
            for i in itertools.count():
                if self.stop_event.is_set():
                    return
                try:
                    if i % 3 == 0:
                        one = self._post(
                            client, "/v1/decisions", {"customer_id": f"t{k}-{i}", "features": ROW}
                        )
                        made = [] if one is None else [one]
                    elif i % 3 == 1:
                        batch = [
                            {"customer_id": f"t{k}-{i}-{j}", "features": ROW} for j in range(5)
                        ]
                        out = self._post(client, "/v1/decisions:batch", {"decisions": batch})
                        made = [] if out is None else out["decisions"]
                    else:
                        made = []
                        if mine:
                            target, value = mine[i % len(mine)], float(next(self.values))
                            body = {"decision_id": target, "reward": value}
                            if self._post(client, "/v1/rewards", body) is not None:
                                with self.lock:
                                    self.rewards.append((target, value))
                except httpx.TransportError:
                    return
                with self.lock:
                    for d in made:
                        self.decisions[d["decision_id"]] = d["policy_version"]
                mine += [d["decision_id"] for d in made]


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        server.stop()


def test_kill_9_under_load_loses_no_acknowledged_decision_or_reward(
    store_url: str, tmp_path: Path, server_factory: list[Server]
) -> None:
    policy = _policy(tmp_path / "policy")
    server = Server(policy, store_url, tmp_path)
    server_factory.append(server.start())
    with Load(server.url) as load:
        load.wait_for(decisions=300, rewards=60)
        server.kill()  # while every thread is posting
        for thread in load.threads:
            thread.join(timeout=30)
    decisions, rewards = dict(load.decisions), list(load.rewards)
    assert not load.failures, load.failures
    assert load.cut_off >= 1  # requests were in flight when it died

    restarted = Server(policy, store_url, tmp_path)
    server_factory.append(restarted.start())
    store = open_store(store_url)
    try:
        stored = store.get_decisions(list(decisions))
        lost = sorted(set(decisions) - set(stored))
        assert not lost, f"{len(lost)} acknowledged decisions lost: {lost[:5]}"
        missing = [
            (d, value)
            for d, value in rewards
            if value not in {r.reward for r in store.rewards_for(d)}
        ]
        assert not missing, f"{len(missing)} acknowledged rewards lost: {missing[:5]}"
        assert store.counts().decisions >= len(decisions)
    finally:
        store.close()
    # The restarted server serves on the same store.
    answer = httpx.post(
        f"{restarted.url}/v1/decisions", json={"customer_id": "after", "features": ROW}, timeout=20
    )
    assert answer.status_code == 200, answer.text


def test_hot_swaps_under_load_fail_no_request_and_bad_artifacts_are_refused(
    tmp_path: Path, server_factory: list[Server]
) -> None:
    policy = _policy(tmp_path / "policy", sign=True)
    server = Server(policy, f"sqlite:///{tmp_path / 'd.db'}", tmp_path, signing_key=SIGNING_KEY)
    server_factory.append(server.start())
    # v2 and v3 always contact (no_contact scores lowest); each swap in turn, under load.
    valid = [_policy(tmp_path / f"v{v}", scores=(-9.0, float(v), 0.0), sign=True) for v in (2, 3)]
    # Signed, then its weights replaced by another policy's: the manifest's checksum fails.
    tampered = _policy(tmp_path / "tampered", scores=(0.0, 0.0, 9.0), sign=True)
    other = _policy(tmp_path / "other", scores=(0.0, 9.0, 0.0))
    (tampered / "weights.npz").write_bytes((other / "weights.npz").read_bytes())
    unsigned = _policy(tmp_path / "unsigned", scores=(0.0, 9.0, 0.0))
    with httpx.Client(base_url=server.url, timeout=30.0) as admin, Load(server.url) as load:
        load.wait_for(decisions=100, rewards=10)
        for version, folder in zip((2, 3), valid, strict=True):
            seen = load.acknowledged()
            answer = admin.put("/v1/policy", content=_tar_gz(folder), headers=BEARER)
            assert answer.status_code == 200, answer.text
            assert answer.json()["version"] == version
            load.wait_for(decisions=seen[0] + 100, rewards=seen[1] + 10)  # the load goes on
        for bad, needle in ((tampered, "sha256"), (unsigned, "is unsigned")):
            answer = admin.put("/v1/policy", content=_tar_gz(bad), headers=BEARER)
            assert answer.status_code == 422, answer.text
            detail = answer.json()["detail"][0]
            assert detail["type"] == "policy_refused"
            assert needle in detail["msg"], detail
            seen = load.acknowledged()
            load.wait_for(decisions=seen[0] + 50, rewards=seen[1] + 5)
        assert admin.get("/v1/policy").json()["version"] == 3  # the refusals changed nothing
        after = admin.post("/v1/decisions", json={"customer_id": "last", "features": ROW})
        assert after.json()["policy_version"] == 3
    assert not load.failures, load.failures[:5]
    assert load.cut_off == 0
    assert set(load.decisions.values()) == {1, 2, 3}  # every version served under load
