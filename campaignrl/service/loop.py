"""Closing the loop against a simulated world: serve, decide over HTTP, reward, export, OPE, swap.

:func:`run_loop` (``campaignrl loop``) runs the whole cycle a team runs with the decision
service, with the simulator standing in for the customers:

1. start ``campaignrl serve`` (a subprocess on 127.0.0.1, a free port, a temporary folder)
   serving policy A with ``epsilon`` uniform exploration;
2. each period, post every customer's features and masks (``action_masks()``) to
   ``POST /v1/decisions:batch``, apply the returned actions in the simulator, and post the
   period's profits to ``POST /v1/rewards:batch``;
3. ``campaignrl logs export`` once every reward window closed;
4. ``campaignrl ope`` (DR, 95% interval) of candidate B and of A from the exported log;
5. compare B's estimate with B's true simulated value;
6. if B's estimate beats A's, upload B with ``PUT /v1/policy``;

then stop the server (SIGTERM: it drains and exits) and remove the temporary folder.

**The population.** The customers are split into *cohorts* of at most ``batch`` customers,
each its own :class:`~campaignrl.envs.CampaignVectorEnv` (customers of a world are independent
draws, the offers belong to the world: cohorts are one population). In each period every
cohort is decided (one batch request), stepped and rewarded (one batch request) before the
next, so a reward reaches the service a fraction of a second after its decision: the reward
window can be short in real time. One period is a week of the campaign; nothing waits a week.

**Rewards.** The reward of a decision is that week's profit of the customer (the step's
reward). Only non-zero profits are posted (``post_zero_rewards`` posts all): a decision without
an on-time reward is joined with the default reward, 0, so the export holds exactly the
simulated profits either way.

**What the truth is.** DR estimates a target's mean profit *per decision*, in the situations
the logging policy met: ``V(B) = E_{s ~ d_A}[sum_a pi_B(a | s) r(s, a)]`` (the definition of
``benchmarks/ope_accuracy.py``). Its truth is that mean over a large, independent run of the
logging policy, with the simulator's exact ``expected_reward()`` (``truth``). Running B
on-policy (``on_policy``) answers another question, B's profit per decision in the situations B
itself leads to (fatigue, opt-outs and churn carry over): it is reported beside it, not
compared with the estimate.

The exploring policies compared are the policies *as the service would serve them*: the
artifact with the service's ``epsilon`` in place of its own (what :class:`Decider` does).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import io
import json
import math
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from campaignrl.policies import Policy, load_policy, save_policy

__all__ = [
    "CampaignRecord",
    "LoopConfig",
    "LoopResult",
    "Population",
    "ServerProcess",
    "ServiceClient",
    "ServiceError",
    "bandit_truth",
    "drive_campaign",
    "export_log",
    "on_policy_value",
    "ope_estimate",
    "register",
    "run_loop",
    "served_policy",
    "start_server",
    "train_demo_policies",
    "upload_policy",
]

SETTLE_SECONDS = 1.0
"""the joiner's margin after a window closes (``JoinSettings.settle_seconds``)"""
_TRUTH_SEED = 10**6
"""truth runs use seeds from here on: never a loop's population"""


class ServiceError(RuntimeError):
    """The service answered with an error (status and detail in the message)."""

    def __init__(self, method: str, path: str, status: int, detail: str) -> None:
        self.status = status
        super().__init__(f"{method} {path}: HTTP {status}: {detail[:500]}")


# ---------------------------------------------------------------------------- HTTP client


class ServiceClient:
    """A small keep-alive JSON client of the decision service (standard library only).

    Args:
        host: The service's address.
        port: Its port.
        admin_token: Bearer token for ``PUT /v1/policy``.
        api_key: ``X-API-Key`` for the decision endpoints, when the service requires one.
        timeout: Seconds per request.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        admin_token: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.host, self.port, self.timeout = host, int(port), float(timeout)
        self.admin_token, self.api_key = admin_token, api_key
        self._conn: http.client.HTTPConnection | None = None
        self._last_used = 0.0

    IDLE_SECONDS = 2.0
    """a connection idle this long is replaced before the next request"""

    @property
    def url(self) -> str:
        """``http://host:port``."""
        return f"http://{self.host}:{self.port}"

    def close(self) -> None:
        """Close the connection."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        *,
        content_type: str = "application/json",
        admin: bool = False,
        retry: bool = True,
    ) -> Any:
        """Send a request and return the decoded JSON answer.

        A dropped keep-alive connection is reopened and the request sent again once when
        ``retry`` (only for idempotent requests: decisions carry an ``event_id``).

        Raises:
            ServiceError: On an HTTP error status.
            OSError, http.client.HTTPException: If the service cannot be reached.
        """
        headers = {"Content-Type": content_type} if body is not None else {}
        if self.api_key is not None:
            headers["X-API-Key"] = self.api_key
        if admin and self.admin_token is not None:
            headers["Authorization"] = f"Bearer {self.admin_token}"
        if self._conn is not None and time.monotonic() - self._last_used > self.IDLE_SECONDS:
            # The server closes idle keep-alive connections (uvicorn: after 5 s); a request
            # sent on one that it is closing would fail, and only idempotent ones can be
            # sent again.
            self.close()
        for attempt in (0, 1):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self._conn.request(method, path, body=body, headers=headers)
                answer = self._conn.getresponse()
                data = answer.read()
            except (ConnectionError, http.client.HTTPException):
                self.close()
                if attempt or not retry:
                    raise
                continue
            finally:
                self._last_used = time.monotonic()
            if answer.status >= 400:
                raise ServiceError(method, path, answer.status, data.decode("utf-8", "replace"))
            return json.loads(data) if data else None
        raise AssertionError("unreachable")  # pragma: no cover

    def post(self, path: str, payload: Any, *, retry: bool = True) -> Any:
        """``POST`` a JSON payload."""
        body = json.dumps(payload, allow_nan=False, separators=(",", ":")).encode()
        return self.request("POST", path, body, retry=retry)

    def get(self, path: str) -> Any:
        """``GET`` a JSON answer."""
        return self.request("GET", path)


def upload_policy(client: ServiceClient, artifact: str | os.PathLike[str]) -> dict[str, Any]:
    """Upload an artifact folder with ``PUT /v1/policy`` (a tar.gz of its files).

    Returns:
        The service's ``PolicyOut`` answer: the version now serving.

    Raises:
        ServiceError: If the service refuses it (the old version keeps serving).
    """
    folder = Path(artifact)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for item in sorted(folder.iterdir()):
            if item.is_file():
                tar.add(item, arcname=item.name)
    answer: dict[str, Any] = client.request(
        "PUT",
        "/v1/policy",
        buffer.getvalue(),
        content_type="application/gzip",
        admin=True,
        retry=False,
    )
    return answer


# ---------------------------------------------------------------------------- the server


@dataclass
class ServerProcess:
    """A running ``campaignrl serve`` and how to reach it."""

    process: subprocess.Popen[bytes]
    client: ServiceClient
    store_url: str
    versions_dir: Path
    log_path: Path
    window_seconds: float

    def log_tail(self, lines: int = 20) -> str:
        """The end of the server's output (for error messages)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (drain, flush, exit 0); kill it if it has not exited in ``timeout`` s."""
        self.client.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def start_server(
    policy_dir: str | os.PathLike[str],
    workdir: str | os.PathLike[str],
    *,
    epsilon: float | None,
    seed: int,
    window_seconds: float,
    learn: bool = False,
    learn_every_seconds: float | None = None,
    max_batch: int = 1000,
    ready_timeout: float = 180.0,
    extra_args: Sequence[str] = (),
) -> Iterator[ServerProcess]:
    """Run ``campaignrl serve`` on 127.0.0.1 (a free port) with a SQLite store in ``workdir``.

    Fresh random secrets (hashing key, admin token) are made for it; the environment's other
    ``CAMPAIGNRL_*`` variables are not passed on, so a user's service settings cannot leak in.
    The server is stopped (SIGTERM, then kill after 30 s) when the block exits.

    Raises:
        ValueError: If ``workdir`` already holds a store (a run needs a fresh one).
        RuntimeError: If the server exits or is not ready within ``ready_timeout`` seconds
            (with the end of its output).
    """
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    db = work / "decisions.db"
    if db.exists():
        raise ValueError(
            f"{str(work)!r} already holds a decision store from another run: use a new folder"
        )
    store_url = f"sqlite:///{db}"
    admin = secrets.token_hex(16)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGNRL_")}
    env["CAMPAIGNRL_HASH_KEY"] = secrets.token_hex(32)
    env["CAMPAIGNRL_ADMIN_TOKEN"] = admin
    port = _free_port()
    cmd = [
        sys.executable, "-m", "campaignrl.cli", "serve",
        "--policy", str(policy_dir), "--store", store_url,
        "--host", "127.0.0.1", "--port", str(port), "--seed", str(seed),
        "--reward-window-seconds", repr(float(window_seconds)),
        "--max-batch", str(max_batch), "--log-level", "warning",
    ]  # fmt: skip
    if epsilon is not None:
        cmd += ["--epsilon", repr(float(epsilon))]
    if learn:
        cmd += ["--learn"]
        if learn_every_seconds is not None:
            cmd += ["--learn-every-seconds", repr(float(learn_every_seconds))]
    cmd += list(extra_args)
    log_path = work / "server.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(cmd, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    server = ServerProcess(
        process,
        ServiceClient("127.0.0.1", port, admin_token=admin),
        store_url,
        Path(f"{db}.versions"),
        log_path,
        float(window_seconds),
    )
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"campaignrl serve exited with code {process.returncode}:\n{server.log_tail()}"
                )
            try:
                server.client.get("/readyz")
                break
            except (OSError, http.client.HTTPException, ServiceError):
                server.client.close()
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"campaignrl serve was not ready after {ready_timeout:g} s:\n"
                    f"{server.log_tail()}"
                )
            time.sleep(0.1)
        yield server
    finally:
        server.stop()


# ---------------------------------------------------------------------------- population


class Population:
    """Simulated customers in cohorts of at most ``batch``, one vector env each.

    Args:
        world: Preset name.
        n_customers: Customers in all.
        periods: Weeks in the campaign.
        seed: Seeds the cohorts (each gets its own child seed).
        batch: Most customers per cohort (one decision request each).
    """

    def __init__(
        self, world: str, n_customers: int, periods: int, seed: int, *, batch: int = 1000
    ) -> None:
        from campaignrl.envs import CampaignVectorEnv

        sizes = [batch] * (n_customers // batch)
        if n_customers % batch:
            sizes.append(n_customers % batch)
        children = np.random.SeedSequence(seed).spawn(len(sizes))
        self.envs = [CampaignVectorEnv(n, world=world, horizon=periods) for n in sizes]
        self.obs = [
            env.reset(seed=int(child.generate_state(1)[0]))[0]
            for env, child in zip(self.envs, children, strict=True)
        ]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
        self.periods = periods
        self.feature_names = tuple(self.envs[0].encoder.feature_names)
        self.action_names = tuple(self.envs[0].action_names)

    @property
    def n_customers(self) -> int:
        """Customers in all."""
        return int(self.offsets[-1])


@dataclass(frozen=True)
class CampaignRecord:
    """What :func:`drive_campaign` sent and got, one row per decision (when recorded)."""

    decision_ids: np.ndarray
    """(n,) the service's decision ids"""
    customers: np.ndarray
    """(n,) customer index in the population"""
    steps: np.ndarray
    """(n,) period"""
    actions: np.ndarray
    """(n,) action index served"""
    propensities: np.ndarray
    """(n,) propensity served"""
    versions: np.ndarray
    """(n,) policy version that decided"""
    rewards: np.ndarray
    """(n,) the simulated profit (posted when non-zero)"""
    features: np.ndarray
    """(n, d) float64 features posted"""
    masks: np.ndarray
    """(n, A) masks posted"""


@dataclass
class CampaignStats:
    """Counts of one campaign through the service."""

    decisions: int = 0
    rewards_posted: int = 0
    late_rewards: int = 0
    replayed: int = 0
    seconds: float = 0.0
    last_decision_at: float = 0.0
    """unix time of the last decision request's answer"""
    per_decision_profit: float = 0.0
    """mean simulated profit per decision (the logging policy's realized value)"""
    in_sample: dict[str, float] = field(default_factory=dict)
    """per target: mean of ``sum_a pi(a | s) E[r | s, a]`` over the visited states"""
    record: CampaignRecord | None = None


def drive_campaign(
    client: ServiceClient,
    population: Population,
    *,
    run_id: str,
    post_zero_rewards: bool = False,
    targets: Mapping[str, Policy] | None = None,
    record: bool = False,
    after_period: Callable[[int, CampaignStats], None] | None = None,
) -> CampaignStats:
    """Run the population's campaign through the service's batch endpoints.

    Each period, each cohort: ``POST /v1/decisions:batch`` (features, masks, an ``event_id``
    per customer and period, so a retried request logs nothing twice), the served actions
    stepped in the simulator, the profits posted with ``POST /v1/rewards:batch``.

    Args:
        client: The service's client.
        population: The customers (consumed: the campaign runs once).
        run_id: Prefix of customer ids and event ids.
        post_zero_rewards: Post zero profits too (by default the service's default reward
            of 0 stands for them).
        targets: Policies whose exact expected profit on the visited states
            (``sum_a pi(a | s) E[r | s, a]``) is averaged (``in_sample``).
        record: Keep every decision (:class:`CampaignRecord`).
        after_period: Called after each period with the period and the counts so far.

    Raises:
        ServiceError: If the service refuses a request.
    """
    stats = CampaignStats()
    targets = dict(targets or {})
    sums = dict.fromkeys(targets, 0.0)
    names = population.feature_names
    rows: dict[str, list[np.ndarray]] = {}
    profit = 0.0
    started = time.perf_counter()
    for t in range(population.periods):
        for c, env in enumerate(population.envs):
            obs = population.obs[c]
            masks = env.action_masks()
            n = obs.shape[0]
            first = int(population.offsets[c])
            features = obs.astype(np.float64)
            payload = {
                "decisions": [
                    {
                        "customer_id": f"{run_id}-c{first + i}",
                        "event_id": f"{run_id}-c{first + i}-t{t}",
                        "features": dict(zip(names, row, strict=True)),
                        "mask": m,
                    }
                    for i, (row, m) in enumerate(
                        zip(features.tolist(), masks.tolist(), strict=True)
                    )
                ]
            }
            answer = client.post("/v1/decisions:batch", payload)["decisions"]
            stats.last_decision_at = time.time()
            actions = np.array([d["action_index"] for d in answer], dtype=np.int64)
            stats.replayed += sum(bool(d["replayed"]) for d in answer)
            if targets:
                q = env.simulator.expected_reward()
                for name, policy in targets.items():
                    sums[name] += float(np.einsum("ia,ia->", policy.probabilities(obs, masks), q))
            next_obs, reward, _, _, _ = env.step(actions)
            population.obs[c] = next_obs
            reward = np.asarray(reward, dtype=np.float64)
            profit += float(reward.sum())
            send = np.arange(n) if post_zero_rewards else np.flatnonzero(reward != 0.0)
            if send.size:
                posted = client.post(
                    "/v1/rewards:batch",
                    {
                        "rewards": [
                            {"decision_id": answer[i]["decision_id"], "reward": reward[i]}
                            for i in send.tolist()
                        ]
                    },
                    retry=False,  # a reward posted twice would count twice
                )["rewards"]
                stats.late_rewards += sum(bool(r["late"]) for r in posted)
                stats.rewards_posted += int(send.size)
            stats.decisions += n
            if record:
                for key, value in (
                    ("decision_ids", np.array([d["decision_id"] for d in answer], dtype=object)),
                    ("customers", np.arange(first, first + n)),
                    ("steps", np.full(n, t)),
                    ("actions", actions),
                    ("propensities", np.array([d["propensity"] for d in answer])),
                    ("versions", np.array([d["policy_version"] for d in answer])),
                    ("rewards", reward),
                    ("features", features),
                    ("masks", masks.copy()),
                ):
                    rows.setdefault(key, []).append(value)
        if after_period is not None:
            after_period(t, stats)
    stats.seconds = time.perf_counter() - started
    stats.per_decision_profit = profit / max(1, stats.decisions)
    stats.in_sample = {k: v / max(1, stats.decisions) for k, v in sums.items()}
    if record:
        stats.record = CampaignRecord(**{k: np.concatenate(v) for k, v in rows.items()})
    return stats


# ---------------------------------------------------------------------------- truths


def served_policy(policy: Policy, epsilon: float | None) -> Policy:
    """``policy`` as the service serves it with ``--epsilon`` (``None``: its own exploration).

    The same rebuild as the service's decider: its parameters with the exploration's
    ``epsilon`` replaced; nothing learned changes.
    """
    if epsilon is None or epsilon == policy.exploration.epsilon:
        return policy
    return type(policy).from_saved(
        policy.feature_names,
        policy.action_names,
        replace(policy.exploration, epsilon=float(epsilon)),
        policy.config(),
        policy.parameters(),
    )


def _mean_se(values: Sequence[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=np.float64)
    se = float(arr.std(ddof=1) / math.sqrt(arr.size)) if arr.size > 1 else float("nan")
    return float(arr.mean()), se


def bandit_truth(
    world: str,
    logging: Policy,
    targets: Mapping[str, Policy],
    *,
    n_customers: int,
    periods: int,
    chunk: int = 50_000,
) -> dict[str, tuple[float, float]]:
    """Each target's per-decision value in the logging policy's situations, with its se.

    ``E_{s ~ d_logging}[sum_a pi(a | s) E[r | s, a]]`` over ``n_customers`` simulated
    customers (in chunks of ``chunk``, seeds from 10**6: never a loop's), with the simulator's
    exact expected rewards: the truth of ``benchmarks/ope_accuracy.py``'s bandit estimates.
    The standard error is over chunks.
    """
    from campaignrl.envs import CampaignVectorEnv
    from campaignrl.policies import sample_actions

    n_chunks = max(2, -(-n_customers // chunk))
    size = max(1, n_customers // n_chunks)
    parts: dict[str, list[float]] = {name: [] for name in targets}
    for c in range(n_chunks):
        env = CampaignVectorEnv(size, world=world, horizon=periods)
        obs, _ = env.reset(seed=_TRUTH_SEED + c)
        rng = np.random.default_rng([_TRUTH_SEED + c, 1])
        totals = dict.fromkeys(targets, 0.0)
        for _ in range(periods):
            masks = env.action_masks()
            q = env.simulator.expected_reward()
            for name, policy in targets.items():
                totals[name] += float(np.einsum("ia,ia->", policy.probabilities(obs, masks), q))
            actions, _ = sample_actions(logging.probabilities(obs, masks), rng)
            obs, _, _, _, _ = env.step(actions)
        for name in targets:
            parts[name].append(totals[name] / (size * periods))
    return {name: _mean_se(values) for name, values in parts.items()}


def on_policy_value(
    world: str, policy: Policy, *, n_customers: int, periods: int, chunk: int = 50_000
) -> tuple[float, float]:
    """``policy``'s own mean profit per decision on-policy, with its se over chunks."""
    from campaignrl.rollout import FeaturePolicy, run_policy

    n_chunks = max(2, -(-n_customers // chunk))
    size = max(1, n_customers // n_chunks)
    values = [
        float(
            run_policy(
                world, FeaturePolicy(policy), n_customers=size, horizon=periods,
                seed=3 * _TRUTH_SEED + c,
            ).reward_per_period.mean()
        )
        for c in range(n_chunks)
    ]  # fmt: skip
    return _mean_se(values)


# ---------------------------------------------------------------------------- commands


def _cli(argv: list[str]) -> str:
    """Run a ``campaignrl`` command in this process; its printed output.

    Raises:
        RuntimeError: If it fails (exit code and what it printed).
    """
    from campaignrl.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    if code != 0:
        raise RuntimeError(
            f"campaignrl {' '.join(argv[:2])} failed ({code}): {err.getvalue().strip()}"
        )
    return out.getvalue()


def export_log(server: ServerProcess, out: Path, last_decision_at: float) -> tuple[str, int]:
    """``campaignrl logs export`` of the server's store once every window closed.

    Waits until the window of the last decision (made at unix time ``last_decision_at``)
    closed and the joiner's settling margin passed, so the export holds every decision.

    Returns:
        The command line and the number of rows written.
    """
    wait = last_decision_at + server.window_seconds + SETTLE_SECONDS + 0.2 - time.time()
    if wait > 0:
        time.sleep(wait)
    argv = [
        "logs", "export", "--store", server.store_url, "--out", str(out),
        "--versions-dir", str(server.versions_dir),
        "--reward-window-seconds", repr(server.window_seconds), "--overwrite",
    ]  # fmt: skip
    text = _cli(argv)
    rows = int(text.split()[1]) if text.startswith("wrote ") else -1
    return "campaignrl " + " ".join(argv), rows


def ope_estimate(
    log: Path,
    policy_dir: Path,
    *,
    seed: int,
    bootstrap: int,
    interval: str = "studentized",
    reward_model: str = "ridge",
) -> tuple[str, dict[str, Any]]:
    """``campaignrl ope --estimators dr --json`` of ``policy_dir`` on ``log``.

    The reward model defaults to ridge, as in ``benchmarks/ope_accuracy.py`` (the command's
    own default, gradient boosting, is slower and no more accurate here).

    Returns:
        The command line and ``{"value", "ci_low", "ci_high", ..., "diagnostics",
        "warnings"}``.
    """
    argv = [
        "ope", "--logs", str(log), "--policy", str(policy_dir), "--estimators", "dr",
        "--reward-model", reward_model, "--seed", str(seed), "--interval", interval, "--json",
    ]  # fmt: skip
    if interval != "normal":
        argv[-1:-1] = ["--bootstrap", str(bootstrap)]
    result = json.loads(_cli(argv))
    estimate = dict(result["estimates"][0])
    estimate["diagnostics"] = result["diagnostics"]
    estimate["warnings"] = result["warnings"]
    return "campaignrl " + " ".join(argv), estimate


def train_demo_policies(
    world: str, periods: int, out: Path, *, seed: int = 7, customers: int = 5_000
) -> tuple[Path, Path]:
    """Two policies to close the loop with, trained briefly in simulation (one campaign each).

    A: ``epsilon-greedy`` (a context-free bandit per segment, tabular) trained on one campaign
    of ``customers``; B: ``lingreedy`` (a ridge model per segment and action on the whole
    observation) trained on four campaigns of twice as many: a richer candidate, with more
    data.

    Returns:
        The two artifact folders.
    """
    dirs = []
    for label, agent, n, campaigns in (
        ("A", "epsilon-greedy", customers, 1),
        ("B", "lingreedy", 2 * customers, 4),
    ):
        run = out / f"train-{label}"
        _cli(
            [
                "train", "--world", world, "--agent", agent,
                "--timesteps", str(n * periods * campaigns), "--customers", str(n),
                "--periods", str(periods), "--seed", str(seed), "--evals", "0",
                "--out", str(run), "--overwrite",
            ]
        )  # fmt: skip
        dirs.append(run / "policy")
    return dirs[0], dirs[1]


# ---------------------------------------------------------------------------- the loop


@dataclass(frozen=True)
class LoopConfig:
    """Settings of :func:`run_loop` (``campaignrl loop``).

    Raises:
        ValueError: Naming the field and the value it got.
    """

    world: str = "retail"
    """the simulated world (preset)"""
    policy_a: Path | None = None
    """the serving policy's artifact (default: trained briefly, see
    :func:`train_demo_policies`)"""
    policy_b: Path | None = None
    """the candidate's artifact (default: trained briefly)"""
    epsilon: float = 0.3
    """the service's uniform exploration (``serve --epsilon``)"""
    customers: int = 12_500
    """customers in the campaign"""
    periods: int = 8
    """weeks in the campaign (decisions = customers x periods)"""
    batch: int = 1000
    """customers per decision request (the service's ``max_batch``)"""
    seed: int = 0
    """seeds the population and the service's exploration"""
    window_seconds: float = 2.0
    """the service's reward window (real seconds)"""
    truth_customers: int = 200_000
    """customers behind each truth (0: no truth)"""
    bootstrap: int = 1000
    """OPE bootstrap resamples"""
    interval: str = "studentized"
    """OPE interval: studentized, bootstrap or normal"""
    swap: bool = True
    """upload B when its estimate beats A's"""
    post_zero_rewards: bool = False
    """post zero profits too (else the default reward, 0, stands for them)"""
    out: Path | None = None
    """keep everything here (store, versions, log, artifacts, summary); default: a temporary
    folder, removed"""

    def __post_init__(self) -> None:
        from campaignrl.simulators.presets import get_world

        try:
            get_world(self.world)
        except (KeyError, ValueError) as exc:
            raise ValueError(
                f"`world` must be a preset world, got {self.world!r} ({exc})"
            ) from None
        checks: list[tuple[str, Any, float, float | None, bool]] = [
            ("epsilon", self.epsilon, 0.0, 1.0, False),
            ("customers", self.customers, 2, None, True),
            ("periods", self.periods, 1, None, True),
            ("batch", self.batch, 1, 100_000, True),
            ("seed", self.seed, 0, None, True),
            ("truth_customers", self.truth_customers, 0, None, True),
            ("bootstrap", self.bootstrap, 100, None, True),
        ]
        for name, value, low, high, integer in checks:
            kinds = (int,) if integer else (int, float)
            if isinstance(value, bool) or not isinstance(value, kinds):
                what = "an integer" if integer else "a number"
                raise TypeError(f"`{name}` must be {what}, got {type(value).__name__} {value!r}")
            if not math.isfinite(value) or value < low or (high is not None and value > high):
                bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
                raise ValueError(f"`{name}` must be {bound}, got {value!r}")
        if not (isinstance(self.window_seconds, (int, float)) and self.window_seconds > 0):
            raise ValueError(f"`window_seconds` must be > 0, got {self.window_seconds!r}")
        if self.interval not in ("studentized", "bootstrap", "normal"):
            raise ValueError(
                f"`interval` must be studentized, bootstrap or normal, got {self.interval!r}"
            )


@dataclass
class LoopResult:
    """Everything :func:`run_loop` measured."""

    config: LoopConfig
    policy_a: str
    policy_b: str
    decisions: int
    exported: int
    rewards_posted: int
    late_rewards: int
    seconds_campaign: float
    decisions_per_second: float
    realized_a: float
    """mean simulated profit per decision of the campaign (A as served, on-policy)"""
    estimate_a: dict[str, Any]
    estimate_b: dict[str, Any]
    truth_a: tuple[float, float] | None
    truth_b: tuple[float, float] | None
    """per-decision truth in A's situations, with its standard error"""
    on_policy_b: tuple[float, float] | None
    """B's own per-decision value on-policy (another quantity; for reference)"""
    in_sample: dict[str, float]
    """per target: the exact expected value on the very states visited"""
    swapped: bool
    served_version: int
    commands: list[str]
    service_url: str
    """where the (now stopped) service listened"""
    record: CampaignRecord | None = None
    log_path: Path | None = None

    @property
    def relative_error_b(self) -> float | None:
        """``|estimate - truth| / |truth|`` for B."""
        if self.truth_b is None:
            return None
        return abs(self.estimate_b["value"] - self.truth_b[0]) / abs(self.truth_b[0])

    @property
    def covered_b(self) -> bool | None:
        """Whether B's 95% interval holds its truth."""
        if self.truth_b is None:
            return None
        return bool(self.estimate_b["ci_low"] <= self.truth_b[0] <= self.estimate_b["ci_high"])

    def summary(self) -> dict[str, Any]:
        """The figures as JSON types."""
        out = {k: v for k, v in asdict(self).items() if k not in ("record", "config")}
        out["config"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(
            self.config).items()}  # fmt: skip
        out["log_path"] = None if self.log_path is None else str(self.log_path)
        out["relative_error_b"] = self.relative_error_b
        out["covered_b"] = self.covered_b
        return out


def _interval_text(estimate: Mapping[str, Any]) -> str:
    return f"{estimate['value']:.4f} [{estimate['ci_low']:.4f}, {estimate['ci_high']:.4f}]"


def run_loop(
    config: LoopConfig,
    *,
    say: Callable[[str], None] = print,
    record: bool = False,
    truths: Mapping[str, tuple[float, float]] | None = None,
) -> LoopResult:
    """Serve A, decide and reward a simulated campaign over HTTP, export, OPE, swap B in.

    Args:
        config: The settings.
        say: Where each step is reported (one line each).
        record: Keep every decision sent and answered (:class:`CampaignRecord`).
        truths: Precomputed ``{"A": (value, se), "B": ..., "B on-policy": ...}`` (a benchmark
            running several seeds computes them once); else computed when
            ``truth_customers`` > 0.

    Returns:
        The figures; the server is stopped and, without ``out``, its folder removed.
    """
    own_dir = config.out is None
    root = Path(tempfile.mkdtemp(prefix="campaignrl-loop-") if config.out is None else config.out)
    root.mkdir(parents=True, exist_ok=True)
    commands: list[str] = []
    try:
        policy_a, policy_b = config.policy_a, config.policy_b
        if policy_a is None or policy_b is None:
            say(f"training policies A (epsilon-greedy) and B (lingreedy) on '{config.world}'")
            trained_a, trained_b = train_demo_policies(config.world, config.periods, root)
            policy_a = trained_a if policy_a is None else policy_a
            policy_b = trained_b if policy_b is None else policy_b
        policy_a, policy_b = Path(policy_a), Path(policy_b)
        a, b = load_policy(policy_a), load_policy(policy_b)
        for label, pol in (("A", a), ("B", b)):
            if pol.action_names != a.action_names or pol.feature_names != a.feature_names:
                raise ValueError(f"policy {label}: features or actions differ from A's")
        # The policies as the service serves them (its --epsilon in place of their own), saved
        # so that `campaignrl ope` evaluates exactly those.
        a_served, b_served = served_policy(a, config.epsilon), served_policy(b, config.epsilon)
        served_dirs = {}
        for label, pol in (("A", a_served), ("B", b_served)):
            served_dirs[label] = save_policy(
                pol, root / f"{label}-served", training={"served_epsilon": config.epsilon},
                overwrite=True,
            )  # fmt: skip
        say(
            f"policy A: {policy_a} ({a.kind}); candidate B: {policy_b} ({b.kind}); "
            f"both served with epsilon {config.epsilon:g}"
        )
        population = Population(
            config.world, config.customers, config.periods, config.seed, batch=config.batch
        )
        if population.feature_names != a.feature_names:
            raise ValueError(f"policy A's features do not match world {config.world!r}'s")
        with start_server(
            policy_a,
            root / "service",
            epsilon=config.epsilon,
            seed=config.seed,
            window_seconds=config.window_seconds,
            max_batch=config.batch,
        ) as server:
            say(
                f"serving A at {server.client.url} (store {server.store_url}, reward window "
                f"{config.window_seconds:g} s)"
            )

            def progress(t: int, stats: CampaignStats) -> None:
                say(
                    f"  period {t + 1}/{config.periods}: {stats.decisions:,} decisions, "
                    f"{stats.rewards_posted:,} rewards posted"
                )

            stats = drive_campaign(
                server.client,
                population,
                run_id=f"s{config.seed}",
                post_zero_rewards=config.post_zero_rewards,
                targets={"A": a_served, "B": b_served},
                record=record,
                after_period=progress,
            )
            rate = stats.decisions / stats.seconds if stats.seconds > 0 else float("nan")
            say(
                f"campaign done: {stats.decisions:,} decisions in {stats.seconds:.1f} s "
                f"({rate:,.0f}/s with the simulation), {stats.rewards_posted:,} rewards "
                f"posted ({stats.late_rewards} late), realized profit "
                f"{stats.per_decision_profit:.4f} per decision"
            )
            if stats.late_rewards:
                say(
                    f"warning: {stats.late_rewards} rewards arrived after the "
                    f"{config.window_seconds:g} s window: they are not joined (lengthen it)"
                )
            log_path = root / "logs.parquet"
            command, exported = export_log(server, log_path, stats.last_decision_at)
            commands.append(command)
            say(f"$ {command}\n  {exported:,} joined decisions")
            results = {}
            for label in ("A", "B"):
                command, results[label] = ope_estimate(
                    log_path,
                    served_dirs[label],
                    seed=config.seed,
                    bootstrap=config.bootstrap,
                    interval=config.interval,
                )
                commands.append(command)
                say(f"$ {command}\n  DR of {label}: {_interval_text(results[label])} per decision")
            truth = dict(truths or {})
            if not truth and config.truth_customers > 0:
                say(f"truths: simulating {config.truth_customers:,} customers")
                truth.update(
                    bandit_truth(
                        config.world,
                        a_served,
                        {"A": a_served, "B": b_served},
                        n_customers=config.truth_customers,
                        periods=config.periods,
                    )
                )
                truth["B on-policy"] = on_policy_value(
                    config.world,
                    b_served,
                    n_customers=config.truth_customers,
                    periods=config.periods,
                )
            for label in ("A", "B"):
                if label in truth:
                    value, se = truth[label]
                    est = results[label]
                    inside = est["ci_low"] <= value <= est["ci_high"]
                    say(
                        f"{label}: estimate {est['value']:.4f}, truth {value:.4f} (se {se:.4f}), "
                        f"relative error {abs(est['value'] - value) / abs(value):.1%}, truth "
                        f"{'inside' if inside else 'OUTSIDE'} the 95% interval"
                    )
            if "B on-policy" in truth:
                say(
                    f"B on-policy (its own situations, another quantity): "
                    f"{truth['B on-policy'][0]:.4f} per decision"
                )
            better = results["B"]["value"] > results["A"]["value"]
            swapped = False
            if better and config.swap:
                answer = upload_policy(server.client, policy_b)
                swapped = True
                commands.append("PUT /v1/policy (B's artifact, tar.gz)")
                say(f"B's estimate beats A's: PUT /v1/policy -> version {answer['version']} serves")
            else:
                say(
                    "B's estimate does not beat A's: A keeps serving"
                    if not better
                    else "B's estimate beats A's (swap disabled)"
                )
            served_version = int(server.client.get("/v1/policy")["version"])
            url = server.client.url
        say("server stopped")
        return LoopResult(
            config=config,
            policy_a=str(policy_a),
            policy_b=str(policy_b),
            decisions=stats.decisions,
            exported=exported,
            rewards_posted=stats.rewards_posted,
            late_rewards=stats.late_rewards,
            seconds_campaign=stats.seconds,
            decisions_per_second=rate,
            realized_a=stats.per_decision_profit,
            estimate_a=results["A"],
            estimate_b=results["B"],
            truth_a=truth.get("A"),
            truth_b=truth.get("B"),
            on_policy_b=truth.get("B on-policy"),
            in_sample=stats.in_sample,
            swapped=swapped,
            served_version=served_version,
            commands=commands,
            service_url=url,
            record=stats.record,
            log_path=None if own_dir else log_path,
        )
    finally:
        if own_dir:
            shutil.rmtree(root, ignore_errors=True)


# ---------------------------------------------------------------------------- the command


def register(subparsers: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    """Add ``loop`` to the ``campaignrl`` subcommands."""
    from campaignrl.service.commands import _integer, _number, _probability

    p = subparsers.add_parser(
        "loop",
        help="close the loop in simulation: serve A, decide over HTTP, reward, export, OPE, "
        "swap B in",
        description="Run the decision service's whole cycle against a simulated world and "
        "print each step: serve policy A with exploration, post every customer's features "
        "and masks to /v1/decisions:batch each period, apply the actions in the simulator, "
        "post the profits to /v1/rewards:batch, `logs export`, DR of candidate B (and A) "
        "with 95% intervals, B's true value, and PUT /v1/policy when B's estimate beats "
        "A's. Bounded; stops the server and removes its folder (unless --out).",
    )
    p.set_defaults(handler=_cmd_loop)
    p.add_argument("--world", default="retail", help="preset world (default: retail)")
    p.add_argument("--policy-a", type=Path, help="served artifact (default: trained briefly)")
    p.add_argument("--policy-b", type=Path, help="candidate artifact (default: trained briefly)")
    p.add_argument("--epsilon", type=_probability, default=0.3, help="exploration (0.3)")
    p.add_argument(
        "--customers", type=_integer(2, None, "an integer >= 2"), default=12_500,
        help="customers (default 12,500: 100,000 decisions over 8 periods)",
    )  # fmt: skip
    p.add_argument("--periods", type=_integer(1, None, "a positive integer"), default=8)
    p.add_argument("--batch", type=_integer(1, 100_000, "an integer in 1..100000"), default=1000)
    p.add_argument("--seed", type=_integer(0, None, "a non-negative integer"), default=0)
    p.add_argument(
        "--reward-window-seconds",
        type=_number(0.0, "a positive number", strict=True),
        default=2.0,
        help="the service's reward window in real seconds (default 2)",
    )
    p.add_argument(
        "--truth-customers",
        type=_integer(0, None, "a non-negative integer"),
        default=200_000,
        help="customers simulated for the truths (0: skip)",
    )
    p.add_argument("--bootstrap", type=_integer(100, None, "an integer >= 100"), default=1000)
    p.add_argument("--no-swap", action="store_true", help="never PUT B")
    p.add_argument("--out", type=Path, help="keep the store, log and artifacts here")
    p.add_argument("--json", type=Path, help="also write the figures here")


def _cmd_loop(args: argparse.Namespace) -> int:
    config = LoopConfig(
        world=args.world,
        policy_a=args.policy_a,
        policy_b=args.policy_b,
        epsilon=args.epsilon,
        customers=args.customers,
        periods=args.periods,
        batch=args.batch,
        seed=args.seed,
        window_seconds=args.reward_window_seconds,
        truth_customers=args.truth_customers,
        bootstrap=args.bootstrap,
        swap=not args.no_swap,
        out=args.out,
    )
    started = time.perf_counter()

    def say(line: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f}s] {line}", flush=True)

    result = run_loop(config, say=say)
    if args.json is not None:
        args.json.write_text(json.dumps(result.summary(), indent=2, default=str))
    return 0
