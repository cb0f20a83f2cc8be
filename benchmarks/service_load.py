"""Throughput and latency of the decision service under a bounded open-loop load.

    python benchmarks/service_load.py [--stores sqlite,postgres] [--duration 10]
        [--single-rates 500] [--max-rates 1000,1500,2000,2500,3000]
        [--batch-rates 150,200,250,300] [--batch-size 100]
        [--reward-rates 500,1000] [--reward-batch-rates 100,200]
        [--connections 64] [--slo-ms 10] [--pin | --no-pin] [--json out.json]
        [--cpu-singles 0] [--cpu-batches 0] [--cpu-workers 8]

The server reads batch bodies with msgspec when it is installed (see
``campaignrl.service.routers.decisions.lean_batch_reader``), else with pydantic; the header
line and each result's ``batch_reader`` say which.

For each store, the real ``campaignrl serve`` runs as a subprocess (one uvicorn worker,
127.0.0.1, a free port, a temporary folder) serving a linear policy on the ``retail`` world's
20 features and 19 actions (per-segment models, seeded random weights, 10% exploration).
Durability is on: SQLite in WAL with ``synchronous=FULL`` (every acknowledged commit
fsynced), PostgreSQL with its defaults (``fsync=on``, ``synchronous_commit=on``), started as a
throwaway cluster on loopback (``_pg.py``).

The load generator runs in its own process (asyncio, uvloop when installed, a pool of
keep-alive HTTP/1.1 connections, requests written by hand). It is OPEN-LOOP, as wrk2: request
``i`` of a phase is due at ``start + i / rate`` and is sent then whether or not earlier ones
were answered (a new connection is opened when every open one is busy, up to
``--connections``; past that a request waits for one, and that wait counts); its latency is
measured from its DUE time, not from when it was sent, so a server that stalls is charged for
every request it held up (no coordinated omission). Every phase is bounded: ``rate x
duration`` requests, and at most ``duration + 30`` seconds.

Phases, in order: a warm-up; single decisions at each ``--single-rates``; single decisions at
each ``--max-rates`` ascending, stopping after the first rate not sustained (the "max
sustainable" rate is the highest that completed every request without error, kept up with the
offered rate (throughput >= 95% of it) and kept p99 under ``--slo-ms``); batches of
``--batch-size`` decisions at each ``--batch-rates`` (requests/s); single rewards at each
``--reward-rates`` and reward batches at each ``--reward-batch-rates``, for decisions made
earlier in the run. The bodies are real observations of a ``retail`` population. With
``--cpu-batches N``, after the batch phases, ``N`` batches go out closed-loop from
``--cpu-workers`` senders and the server's CPU time (user + system, all threads, from
``/proc/<pid>/stat``) per batch is reported: on a shared machine it is steadier than the
wall-clock rate, and one worker's ceiling is about ``1 / (CPU per batch)`` batches/s. The
event loop's thread is reported apart (it bounds one worker), and the load generator's own CPU.
``--cpu-singles N`` does the same with single decisions, after the single phases.

On 2 cores the client competes with the server. With ``--pin`` the server runs on CPU 0, the
client and PostgreSQL on CPU 1 (``taskset``); by default nothing is pinned, which measured
better here (the server's commit thread runs its SQLite work beside the event loop). After
the run the server is stopped (SIGTERM, drained) and the store is counted: every acknowledged
decision and reward must be there.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

HASH_KEY = "benchmark-hash-key-0123456789abcdef"
HOST = "127.0.0.1"
_RESPONSE_END = b"\r\n\r\n"


# ----------------------------------------------------------------------------- the client


class Connection:
    """One keep-alive HTTP/1.1 connection; requests written and responses read by hand."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.last_used = time.perf_counter()

    @classmethod
    async def open(cls, port: int) -> Connection:
        """A new connection to ``HOST:port`` (Nagle off)."""
        reader, writer = await asyncio.open_connection(HOST, port)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer)

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        """Send one request, read its whole response: ``(status, body)``."""
        self.writer.write(raw)
        head = await self.reader.readuntil(_RESPONSE_END)
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        body = await self.reader.readexactly(length) if length else b""
        self.last_used = time.perf_counter()
        return status, body

    def close(self) -> None:
        """Close the socket."""
        self.writer.close()


class Pool:
    """Keep-alive connections, most recently used first; new ones up to ``limit``.

    A connection idle for over 2 s is replaced (uvicorn closes idle ones after 5 s).
    """

    def __init__(self, port: int, limit: int) -> None:
        self.port = port
        self.limit = limit
        self.idle: list[Connection] = []
        self.count = 0
        self.waiters: list[asyncio.Future[Connection]] = []

    async def acquire(self) -> Connection:
        """An idle connection, a new one, or (at the limit) the next one released."""
        while self.idle:
            conn = self.idle.pop()
            if time.perf_counter() - conn.last_used < 2.0:
                return conn
            conn.close()
            self.count -= 1
        if self.count < self.limit:
            self.count += 1
            try:
                return await Connection.open(self.port)
            except BaseException:
                self.count -= 1
                raise
        waiter: asyncio.Future[Connection] = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            # handed a connection just before the cancel: pass it on, or it is lost for good
            if waiter.done() and not waiter.cancelled():
                self.release(waiter.result())
            raise

    def release(self, conn: Connection) -> None:
        """Give ``conn`` to the oldest waiter, or keep it idle."""
        while self.waiters:
            waiter = self.waiters.pop(0)
            if not waiter.done():
                waiter.set_result(conn)
                return
        self.idle.append(conn)

    def discard(self, conn: Connection) -> None:
        """Drop a broken connection."""
        conn.close()
        self.count -= 1

    def close(self) -> None:
        """Close the idle connections."""
        for conn in self.idle:
            conn.close()
        self.idle.clear()


def _post(path: str, body: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def open_loop(
    pool: Pool,
    name: str,
    rate: float,
    n: int,
    make: Callable[[int], bytes],
    *,
    items: int,
    on_body: Callable[[bytes], None] | None = None,
    timeout: float = 30.0,
) -> dict[str, Any]:
    """Send ``n`` requests at ``rate``/s, each at its due time; latencies from the due time."""
    requests = [make(i) for i in range(n)]  # built before the clock starts
    latency = np.full(n, np.nan)
    errors: dict[str, int] = {}
    finished = [0.0]

    async def fire(i: int, due: float) -> None:
        conn: Connection | None = None
        try:
            conn = await pool.acquire()
            status, body = await conn.request(requests[i])
        except asyncio.CancelledError:
            # Timed out at the phase's end. A request may still be in flight on the
            # connection, so it is never reused; without this the pool leaked every such
            # connection and the next phase waited forever for one.
            if conn is not None:
                pool.discard(conn)
            raise
        except Exception as exc:  # a refused or reset connection: counted, never retried
            if conn is not None:
                pool.discard(conn)
            key = type(exc).__name__
            errors[key] = errors.get(key, 0) + 1
            return
        pool.release(conn)
        done = time.perf_counter()
        finished[0] = max(finished[0], done)
        if status != 200:
            errors[f"HTTP {status}"] = errors.get(f"HTTP {status}", 0) + 1
            return
        latency[i] = done - due
        if on_body is not None:
            on_body(body)

    tasks: set[asyncio.Task[None]] = set()
    start = time.perf_counter() + 0.01
    i = 0
    while i < n:
        now = time.perf_counter()
        while i < n and start + i / rate <= now:
            task = asyncio.create_task(fire(i, start + i / rate))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            i += 1
        if i < n:
            await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
    sent = time.perf_counter()
    if tasks:
        _, late = await asyncio.wait(set(tasks), timeout=timeout)
        for task in late:
            task.cancel()
        if late:
            errors["timeout"] = errors.get("timeout", 0) + len(late)
    ok = np.isfinite(latency)
    ms = latency[ok] * 1e3
    elapsed = max(finished[0], sent) - start
    throughput = float(ok.sum()) / elapsed if elapsed > 0 else 0.0
    return {
        "phase": name,
        "offered_rps": rate,
        "requests": n,
        "ok": int(ok.sum()),
        "errors": errors,
        "items_per_request": items,
        "throughput_rps": throughput,
        "items_per_s": throughput * items,
        "p50_ms": float(np.percentile(ms, 50)) if ms.size else float("nan"),
        "p90_ms": float(np.percentile(ms, 90)) if ms.size else float("nan"),
        "p99_ms": float(np.percentile(ms, 99)) if ms.size else float("nan"),
        "max_ms": float(ms.max()) if ms.size else float("nan"),
    }


def _cpu_seconds(pid: int, tid: int | None = None) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux ``/proc``).

    All its threads, or only thread ``tid`` (the main thread's id is ``pid``).
    """
    stat = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    fields = Path(stat).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def closed_loop(
    pool: Pool, name: str, n: int, make: Callable[[int], bytes], *, items: int, workers: int,
    server_pid: int,
) -> dict[str, Any]:  # fmt: skip
    """Send ``n`` requests from ``workers`` concurrent senders; the server's CPU per request.

    The machine is shared (the client runs beside the server), so wall-clock throughput is
    noisy; the server's own CPU time per request is what one worker's ceiling follows from:
    ``1 / cpu_per_request`` requests/s on one core.
    """
    requests = [make(i) for i in range(n)]
    errors: dict[str, int] = {}
    ok = [0]
    nxt = [0]

    async def sender() -> None:
        conn = await pool.acquire()
        try:
            while nxt[0] < n:
                i, nxt[0] = nxt[0], nxt[0] + 1
                status, _ = await conn.request(requests[i])
                if status == 200:
                    ok[0] += 1
                else:
                    errors[f"HTTP {status}"] = errors.get(f"HTTP {status}", 0) + 1
        finally:
            pool.release(conn)

    cpu0, t0 = _cpu_seconds(server_pid), time.perf_counter()
    loop0 = _cpu_seconds(server_pid, server_pid)  # uvicorn's event loop runs in the main thread
    own0 = _cpu_seconds(os.getpid())
    await asyncio.gather(*(sender() for _ in range(workers)))
    cpu1, t1 = _cpu_seconds(server_pid), time.perf_counter()
    loop1 = _cpu_seconds(server_pid, server_pid)
    own1 = _cpu_seconds(os.getpid())
    return {
        "phase": name,
        "offered_rps": float("nan"),
        "requests": n,
        "ok": ok[0],
        "errors": errors,
        "items_per_request": items,
        "throughput_rps": ok[0] / (t1 - t0),
        "items_per_s": ok[0] * items / (t1 - t0),
        "server_cpu_ms_per_request": (cpu1 - cpu0) * 1e3 / max(1, n),
        "server_loop_cpu_ms_per_request": (loop1 - loop0) * 1e3 / max(1, n),
        "server_cpu_share": (cpu1 - cpu0) / (t1 - t0),
        # The load generator shares the machine's two cores with the server.
        "client_cpu_ms_per_request": (own1 - own0) * 1e3 / max(1, n),
        "p50_ms": float("nan"),
        "p90_ms": float("nan"),
        "p99_ms": float("nan"),
        "max_ms": float("nan"),
    }


def _sustained(result: dict[str, Any], slo_ms: float) -> bool:
    return (
        not result["errors"]
        and result["ok"] == result["requests"]
        and result["throughput_rps"] >= 0.95 * result["offered_rps"]
        and result["p99_ms"] < slo_ms
    )


async def run_client(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Every phase of ``spec`` against the server on ``spec['port']``."""
    names: list[str] = spec["feature_names"]
    rows = np.asarray(spec["observations"], dtype=float)
    features = [
        json.dumps({name: round(float(v), 6) for name, v in zip(names, row, strict=True)})
        for row in rows
    ]
    counter = [0]

    def decision(i: int) -> str:
        counter[0] += 1
        c = counter[0]
        return f'{{"customer_id":"c{c}","features":{features[c % len(features)]}}}'

    ids: list[str] = []

    def single(i: int) -> bytes:
        return _post("/v1/decisions", decision(i).encode())

    def batch(i: int) -> bytes:
        body = '{"decisions":[' + ",".join(decision(i) for _ in range(size)) + "]}"
        return _post("/v1/decisions:batch", body.encode())

    def keep_id(body: bytes) -> None:
        ids.append(json.loads(body)["decision_id"])

    def keep_ids(body: bytes) -> None:
        ids.extend(d["decision_id"] for d in json.loads(body)["decisions"])

    used = [0]

    def next_id() -> str:
        used[0] += 1
        return ids[used[0] % len(ids)]

    def reward(i: int) -> bytes:
        return _post("/v1/rewards", f'{{"decision_id":"{next_id()}","reward":1.5}}'.encode())

    def reward_batch(i: int) -> bytes:
        items = ",".join(f'{{"decision_id":"{next_id()}","reward":1.5}}' for _ in range(size))
        return _post("/v1/rewards:batch", f'{{"rewards":[{items}]}}'.encode())

    size = int(spec["batch_size"])
    duration = float(spec["duration"])
    slo = float(spec["slo_ms"])
    pool = Pool(int(spec["port"]), int(spec["connections"]))
    results: list[dict[str, Any]] = []

    async def phase(name: str, rate: float, make: Any, items: int, keep: Any) -> dict[str, Any]:
        n = max(1, round(rate * duration))
        result = await open_loop(pool, name, rate, n, make, items=items, on_body=keep)
        result["decisions_acknowledged"] = (
            result["ok"] * items if name.startswith(("single", "batch", "warm")) else 0
        )
        result["rewards_acknowledged"] = result["ok"] * items if name.startswith("reward") else 0
        results.append(result)
        print(json.dumps(result), file=sys.stderr, flush=True)
        await asyncio.sleep(0.5)
        return result

    async def cpu_phase(name: str, n: int, make: Any, items: int) -> None:
        result = await closed_loop(
            pool, name, n, make, items=items, workers=spec["cpu_workers"],
            server_pid=spec["server_pid"],
        )  # fmt: skip
        result["decisions_acknowledged"] = result["ok"] * items
        result["rewards_acknowledged"] = 0
        results.append(result)
        print(json.dumps(result), file=sys.stderr, flush=True)

    try:
        warm = await open_loop(pool, "warm-up", 200.0, 400, single, items=1, on_body=keep_id)
        warm["decisions_acknowledged"] = warm["ok"]
        warm["rewards_acknowledged"] = 0
        results.append(warm)
        for rate in spec["single_rates"]:
            await phase("single", rate, single, 1, keep_id)
        for rate in sorted(spec["max_rates"]):
            result = await phase("single (max search)", rate, single, 1, keep_id)
            result["sustained"] = _sustained(result, slo)
            if not result["sustained"]:
                break
        if spec.get("cpu_singles"):
            await cpu_phase("single, closed loop (server CPU)", spec["cpu_singles"], single, 1)
        for rate in spec["batch_rates"]:
            await phase(f"batch of {size}", rate, batch, size, keep_ids)
        if spec["cpu_batches"]:
            name = f"batch of {size}, closed loop (server CPU)"
            await cpu_phase(name, spec["cpu_batches"], batch, size)
        for rate in spec["reward_rates"]:
            await phase("reward", rate, reward, 1, None)
        for rate in spec["reward_batch_rates"]:
            await phase(f"reward batch of {size}", rate, reward_batch, size, None)
    finally:
        pool.close()
    return results


def client_main(spec_path: str) -> int:
    """The client process: run the phases, print the results as JSON on stdout."""
    spec = json.loads(Path(spec_path).read_text())
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    results = asyncio.run(run_client(spec))
    print(json.dumps(results))
    return 0


# ----------------------------------------------------------------------------- the server


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def make_policy(folder: Path, seed: int = 0) -> tuple[Path, list[str], np.ndarray]:
    """A linear policy on the retail world, and real observations of a retail population."""
    from campaignrl.envs import CampaignVectorEnv
    from campaignrl.policies import Exploration, LinearPolicy, save_policy
    from campaignrl.service.online import uniform_linear_policy_for_world

    start = uniform_linear_policy_for_world("retail")
    rng = np.random.default_rng(seed)
    policy = LinearPolicy(
        start.feature_names,
        start.action_names,
        rng.normal(0.0, 1.0, start.beta.shape),
        interact_with=start.interact_with,
        exploration=Exploration("greedy", epsilon=0.1),
    )
    env = CampaignVectorEnv(2048, world="retail")
    obs, _ = env.reset(seed=seed)
    return save_policy(policy, folder), list(policy.feature_names), np.asarray(obs, dtype=float)


def _taskset(cpus: Sequence[int] | None) -> list[str]:
    return ["taskset", "-c", ",".join(map(str, cpus))] if cpus else []


def start_server(
    policy: Path, store_url: str, folder: Path, port: int, cpus: Sequence[int] | None
) -> subprocess.Popen[bytes]:
    """``campaignrl serve`` on ``port``; returns once ``/readyz`` answers 200."""
    import httpx

    env = {**os.environ, "CAMPAIGNRL_HASH_KEY": HASH_KEY}
    for key in ("CAMPAIGNRL_API_KEY", "CAMPAIGNRL_SIGNING_KEY", "CAMPAIGNRL_CONFIG"):
        env.pop(key, None)
    command = [
        *_taskset(cpus), sys.executable, "-m", "campaignrl.cli", "serve",
        "--policy", str(policy), "--store", store_url, "--port", str(port), "--seed", "0",
        "--versions-dir", str(folder / "versions"), "--log-level", "warning",
    ]  # fmt: skip
    log = (folder / "server.log").open("wb")
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {(folder / 'server.log').read_text()}")
        try:
            if httpx.get(f"http://{HOST}:{port}/readyz", timeout=1.0).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not get ready within 120 s")


def stop_server(proc: subprocess.Popen[bytes]) -> int:
    """SIGTERM (drain), then wait; kill after 60 s."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def run_store(backend: str, args: argparse.Namespace, pin: bool) -> list[dict[str, Any]]:
    """Serve with one store backend and run the client against it."""
    import contextlib

    from _pg import throwaway_postgres

    from campaignrl.service.store import open_store

    server_cpus, client_cpus = ([0], [1]) if pin else (None, None)
    with tempfile.TemporaryDirectory(prefix="campaignrl-load-") as tmp:
        folder = Path(tmp)
        policy, names, obs = make_policy(folder / "policy")
        with contextlib.ExitStack() as stack:
            if backend == "postgres":
                url = stack.enter_context(throwaway_postgres(client_cpus))
            else:
                url = f"sqlite:///{folder / 'decisions.db'}"
            port = _free_port()
            proc = start_server(policy, url, folder, port, server_cpus)
            try:
                spec = {
                    "port": port,
                    "feature_names": names,
                    "observations": obs.tolist(),
                    "duration": args.duration,
                    "single_rates": args.single_rates,
                    "max_rates": args.max_rates,
                    "batch_rates": args.batch_rates,
                    "batch_size": args.batch_size,
                    "reward_rates": args.reward_rates,
                    "reward_batch_rates": args.reward_batch_rates,
                    "connections": args.connections,
                    "slo_ms": args.slo_ms,
                    "cpu_batches": args.cpu_batches,
                    "cpu_singles": args.cpu_singles,
                    "cpu_workers": args.cpu_workers,
                    "server_pid": proc.pid,
                }
                spec_path = folder / "spec.json"
                spec_path.write_text(json.dumps(spec))
                done = subprocess.run(
                    [*_taskset(client_cpus), sys.executable, __file__, "--client", str(spec_path)],
                    stdout=subprocess.PIPE,
                    check=True,
                )
                results: list[dict[str, Any]] = json.loads(done.stdout)
            finally:
                code = stop_server(proc)
            store = open_store(url)
            try:
                counts = store.counts()
            finally:
                store.close()
        acked_d = sum(r["decisions_acknowledged"] for r in results)
        acked_r = sum(r["rewards_acknowledged"] for r in results)
        print(
            f"{backend}: server exit code {code}; acknowledged {acked_d} decisions and {acked_r} "
            f"rewards; the store holds {counts.decisions} decisions and {counts.rewards} rewards",
            file=sys.stderr,
        )
        if counts.decisions < acked_d or counts.rewards < acked_r:
            raise RuntimeError(f"{backend}: an acknowledged record is missing from the store")
        for r in results:
            r["store"] = backend
            r["batch_reader"] = _batch_reader()
        return results


def table(results: Sequence[dict[str, Any]], slo_ms: float) -> str:
    """The results as a markdown table."""
    lines = [
        "| store | phase | offered req/s | requests | errors | req/s | items/s | p50 ms | "
        "p99 ms | max ms |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        if r["phase"] == "warm-up":
            continue
        phase = r["phase"]
        if "sustained" in r:
            phase += " ✓" if r["sustained"] else f" ✗ (not sustained at p99 < {slo_ms:g} ms)"
        errors = sum(r["errors"].values())
        if "server_cpu_ms_per_request" in r:
            phase += (
                f": server CPU {r['server_cpu_ms_per_request']:.2f} ms per request "
                f"({r['server_loop_cpu_ms_per_request']:.2f} in the event loop's thread); "
                f"the load generator's CPU {r['client_cpu_ms_per_request']:.2f} ms"
            )
        lines.append(
            f"| {r['store']} | {phase} | {r['offered_rps']:,.0f} | {r['requests']:,} | "
            f"{errors} | {r['throughput_rps']:,.0f} | {r['items_per_s']:,.0f} | "
            f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['max_ms']:.1f} |"
        )
    return "\n".join(lines)


def _batch_reader() -> str:
    """What reads the batch route's bodies in the server (the same interpreter as this one)."""
    try:
        import msgspec
    except ImportError:
        return "pydantic (msgspec is not installed)"
    return f"msgspec {msgspec.__version__}"


def _rates(text: str) -> list[float]:
    """Comma-separated positive rates; an empty string skips the phase."""
    rates = [float(s) for s in text.split(",") if s.strip()]
    bad = [r for r in rates if not (r > 0 and math.isfinite(r))]
    if bad:
        raise argparse.ArgumentTypeError(
            f"rates must be positive and finite, got {bad[0]!r} in {text!r} "
            "(pass an empty string to skip a phase)"
        )
    return rates


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--client", help=argparse.SUPPRESS)
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per phase")
    parser.add_argument("--single-rates", type=_rates, default=[500.0])
    parser.add_argument("--max-rates", type=_rates, default=[1000.0, 1500.0, 2000.0, 2500.0])
    parser.add_argument("--batch-rates", type=_rates, default=[200.0, 250.0, 300.0])
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--reward-rates", type=_rates, default=[500.0, 1000.0])
    parser.add_argument("--reward-batch-rates", type=_rates, default=[200.0])
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument(
        "--cpu-batches",
        type=int,
        default=0,
        help="after the batch phases, send this many batches closed-loop and report the "
        "server's CPU time per batch (read from /proc)",
    )
    parser.add_argument(
        "--cpu-singles",
        type=int,
        default=0,
        help="after the single phases, send this many single decisions closed-loop and report "
        "the server's CPU time per decision",
    )
    parser.add_argument(
        "--cpu-workers", type=int, default=8, help="senders of --cpu-batches and --cpu-singles"
    )
    parser.add_argument("--slo-ms", type=float, default=10.0)
    parser.add_argument("--pin", action=argparse.BooleanOptionalAction, default=False)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.client:
        return client_main(args.client)
    pin = bool(args.pin)
    results: list[dict[str, Any]] = []
    for backend in [s.strip() for s in args.stores.split(",") if s.strip()]:
        if backend not in ("sqlite", "postgres"):
            parser.error(f"argument --stores: sqlite or postgres, got {backend!r}")
        results += run_store(backend, args, pin)
    print(
        f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.2f} at the end; server pinned to CPU 0, client and PostgreSQL "
        f"to CPU 1: {pin}; batch bodies read by {_batch_reader()}\n"
    )
    print(table(results, args.slo_ms))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
