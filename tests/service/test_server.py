"""The real server: ``campaignrl serve`` as a process (graceful SIGTERM), ``logs export``, and
schemathesis against the app (at least 1,000 generated cases, finding nothing)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from campaignrl.cli import main
from campaignrl.logs import read_logs
from campaignrl.policies import ConstantPolicy, Exploration, save_policy
from campaignrl.service.app import create_app
from campaignrl.service.settings import ServiceSettings
from campaignrl.service.store import open_store

FEATURES = ("recency", "segment=new")
ACTIONS = ("no_contact", "pct10@email", "bundle@sms")
ROW = {"recency": 1.0, "segment=new": 0.0}
HASH_KEY = "hash-key-0123456789abcdef"
ADMIN = "admin-token-0123456789"


def _policy(path: Path) -> Path:
    policy = ConstantPolicy(
        FEATURES, ACTIONS, np.array([0.0, 1.0, 2.0]), Exploration("greedy", epsilon=0.3)
    )
    return save_policy(policy, path)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stderr.read().decode() if proc.stderr else ""
            pytest.fail(f"campaignrl serve exited with {proc.returncode}: {out}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    pytest.fail("campaignrl serve did not get ready in time")


def test_serve_answers_and_drains_on_sigterm(tmp_path):
    policy = _policy(tmp_path / "policy")
    store = f"sqlite:///{tmp_path / 'decisions.db'}"
    port = _free_port()
    env = {**os.environ, "CAMPAIGNRL_HASH_KEY": HASH_KEY}
    env.pop("CAMPAIGNRL_API_KEY", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "campaignrl.cli", "serve", "--policy", str(policy),
         "--store", store, "--port", str(port), "--seed", "0", "--log-level", "warning"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, proc)
        answer = httpx.post(
            f"{url}/v1/decisions", json={"customer_id": "c1", "features": ROW}, timeout=10
        )
        assert answer.status_code == 200
        assert answer.json()["propensity"] in (pytest.approx(0.1), pytest.approx(0.8))
        # A request in flight when SIGTERM arrives: headers and half the body sent first.
        body = b'{"customer_id": "c2", "features": {"recency": 2.0, "segment=new": 1.0}}'
        with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
            sock.sendall(
                b"POST /v1/decisions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body[:20]
            )
            time.sleep(0.5)
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            sock.sendall(body[20:])
            reply = b""
            while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 200"), reply
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # Both acknowledged decisions are in the store (closed by the shutdown).
    opened = open_store(store)
    try:
        assert opened.counts().decisions == 2
    finally:
        opened.close()


def test_serve_refuses_bad_settings_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("CAMPAIGNRL_HASH_KEY", raising=False)
    assert main(["serve", "--policy", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        "campaignrl: error: setting `hash_key` (CAMPAIGNRL_HASH_KEY): is required"
    )
    monkeypatch.setenv("CAMPAIGNRL_HASH_KEY", HASH_KEY)
    store = f"sqlite:///{tmp_path / 'd.db'}"
    assert main(["serve", "--policy", str(tmp_path / "none"), "--store", store]) == 2
    assert "argument --policy: artifact" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["serve", "--port", "0"])
    assert info.value.code == 2
    assert "argument --port: must be a port in 1..65535, got '0'" in capsys.readouterr().err
    _policy(tmp_path / "policy")
    args = ["serve", "--policy", str(tmp_path / "policy"), "--store", store, "--learn"]
    assert main(args) == 2
    assert "--learn: policy kind 'constant' is not learned online" in capsys.readouterr().err


def test_logs_export_writes_what_ope_reads(tmp_path, capsys, monkeypatch):
    from fastapi.testclient import TestClient

    store = f"sqlite:///{tmp_path / 'decisions.db'}"
    settings_ = ServiceSettings(
        hash_key=HASH_KEY, policy_dir=_policy(tmp_path / "policy"), store_url=store,
        reward_window_seconds=10, seed=0,
    )  # fmt: skip
    # The service's clock runs 100 s behind: by the export's (real) clock every window closed.
    with TestClient(create_app(settings_, clock=lambda: time.time() - 100)) as client:
        body = {
            "decisions": [
                {"customer_id": f"c{i % 3}", "features": ROW, "mask": ["no_contact", "bundle@sms"]}
                for i in range(6)
            ]
        }
        ids = [
            d["decision_id"]
            for d in client.post("/v1/decisions:batch", json=body).json()["decisions"]
        ]
        outcomes = {"purchased": True, "basket_value": 3.0}
        client.post(
            "/v1/rewards", json={"decision_id": ids[0], "reward": 3.0, "outcomes": outcomes}
        )
    out = tmp_path / "logs.parquet"
    args = [
        "logs",
        "export",
        "--store",
        store,
        "--out",
        str(out),
        "--reward-window-seconds",
        "10",
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "wrote 6 joined decisions" in printed
    # reported for one decision, unknown for five: not written (no False made up), and said
    unknown = "not written: 5 of 6 exported decisions have no on-time report of it"
    assert f"outcome column 'purchased' {unknown}" in printed
    assert f"outcome column 'basket_value' {unknown}" in printed
    logs = read_logs(out, action_names=ACTIONS)
    assert len(logs.actions) == 6
    frame = pd.read_parquet(out)
    assert sorted(frame["reward"]) == [0.0] * 5 + [3.0]
    assert not frame["allowed=pct10@email"].any() and frame["allowed=bundle@sms"].all()
    assert frame["customer_id"].nunique() == 3 and "c0" not in set(frame["customer_id"])
    assert main(args) == 2  # exists
    assert "pass --overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite", "--since", "2999-01-01T00:00:00Z"]) == 0
    assert len(pd.read_parquet(out)) == 0
    note = "none of the store's 6 decisions has its reward window closed"
    assert f"{note} under --reward-window-seconds 10 (or --since)" in capsys.readouterr().err
    # a window longer than the service's: nothing closed yet, and the note says which was used
    longer = [a if a != "10" else "1000" for a in args]
    assert main([*longer, "--overwrite"]) == 0
    assert len(pd.read_parquet(out)) == 0
    assert f"{note} under --reward-window-seconds 1000" in capsys.readouterr().err
    assert main([*args, "--overwrite", "--since", "yesterday"]) == 2
    assert "argument --since: must be unix seconds or an ISO 8601 time" in capsys.readouterr().err


# ---------------------------------------------------------------------------- schemathesis

MIN_CASES = 1000
EXAMPLES = 170
"""per operation: the 6 operations with inputs get 170 cases each, 1,020 with the others"""


def test_schemathesis_finds_nothing_in_1000_cases():
    # Driven with plain hypothesis over each operation's strategy: schemathesis' pytest
    # fixture loader does not run on this pytest (it sets a node attribute pytest removed).
    shm = Path("/dev/shm")
    with tempfile.TemporaryDirectory(dir=shm if shm.is_dir() else None) as name:
        tmp = Path(name)
        app = create_app(
            ServiceSettings(
                hash_key=HASH_KEY, policy_dir=_policy(tmp / "policy"),
                store_url=f"sqlite:///{tmp / 'decisions.db'}", admin_token=ADMIN, seed=0,
                max_batch=20, max_artifact_bytes=65536,
            )
        )  # fmt: skip
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        cases: dict[str, int] = {}
        for result in schema.get_all_operations():
            operation = result.ok()
            cases[f"{operation.method.upper()} {operation.path}"] = 0

            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy())
            def run(case: Any) -> None:
                cases[f"{case.method.upper()} {case.path}"] += 1
                # Any bytes fit the upload's schema (binary), but only a valid, signed-if-
                # needed artifact archive is accepted: schema-valid uploads may be refused.
                excluded = [positive_data_acceptance] if case.path == "/v1/policy" else []
                case.call_and_validate(
                    headers={"Authorization": f"Bearer {ADMIN}"}, excluded_checks=excluded
                )

            run()
    assert len(cases) == 11, cases
    assert sum(cases.values()) >= MIN_CASES, cases
