"""The deciding routes answered straight from ASGI (campaignrl.service.direct).

The direct path must give the full app's answers, and hand everything else to the full app
with the body intact: these tests count which path answered.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from fastapi.testclient import TestClient

from campaignrl.policies import ConstantPolicy, Exploration, LinearPolicy, save_policy
from campaignrl.service.app import ServiceApp, create_app
from campaignrl.service.direct import DirectRoutes
from campaignrl.service.online import uniform_linear_policy
from campaignrl.service.routers.decisions import BATCH_PATH, ONE_PATH, FastPath
from campaignrl.service.routers.rewards import BATCH_PATH as REWARDS_BATCH
from campaignrl.service.routers.rewards import ONE_PATH as REWARDS_ONE
from campaignrl.service.settings import ServiceSettings

FEATURES = ("recency", "segment=new")
ACTIONS = ("no_contact", "pct10@email", "bundle@sms")
API_KEY = "api-key-0123456789abcdef"
ROW = {"recency": 1.0, "segment=new": 0.0}
BIG = {"recency": 1e9, "segment=new": 1e9}


def make_app(
    tmp_path: Path, policy: Any = None, clock: Any = time.time, **overrides: Any
) -> ServiceApp:
    """An app over a SQLite store in ``tmp_path``, serving ``policy`` (default: constant)."""
    if policy is None:
        scores = np.array([0.0, 1.0, 2.0])
        policy = ConstantPolicy(FEATURES, ACTIONS, scores, Exploration("greedy", epsilon=0.3))
    folder = save_policy(policy, tmp_path / "policy")
    settings = ServiceSettings(
        hash_key="hash-key-0123456789abcdef",
        policy_dir=folder,
        store_url=f"sqlite:///{tmp_path / 'decisions.db'}",
        seed=0,
        **overrides,
    )
    return create_app(settings, clock=clock)


def counted(app: Any) -> dict[str, int]:
    """Count the answers the direct path makes itself, by path."""
    direct: DirectRoutes = app.direct
    calls = dict.fromkeys(direct.paths, 0)
    for path, fast in list(direct.paths.items()):

        async def answer(parsed: Any, runtime: Any, path: str = path, fast: FastPath = fast) -> Any:
            calls[path] += 1
            return await fast.answer(parsed, runtime)

        direct.paths[path] = fast._replace(answer=answer)
    return calls


def batch(n: int, start: int = 0) -> dict[str, Any]:
    return {"decisions": [{"customer_id": f"c{start + i}", "features": ROW} for i in range(n)]}


def kept(answer: dict[str, Any]) -> tuple[Any, ...]:
    """An answer without its random decision id."""
    return tuple(v for k, v in sorted(answer.items()) if k != "decision_id")


def test_direct_answers_are_the_full_apps_for_the_same_seed(tmp_path: Path) -> None:
    answers = []
    for name, direct in (("direct", True), ("full", False)):
        app = make_app(tmp_path / name)
        if not direct:
            app.direct = None
        with TestClient(app) as client:
            calls = counted(app) if direct else None
            got = [client.post(BATCH_PATH, json=batch(7, 10 * i)).json() for i in range(3)]
            got.append(client.post(ONE_PATH, json={"customer_id": "x", "features": ROW}).json())
            answers.append([kept(a) for g in got[:3] for a in g["decisions"]] + [kept(got[3])])
            if calls is not None:
                assert (calls[BATCH_PATH], calls[ONE_PATH]) == (3, 1)
            metrics = client.get("/metrics").text
            # Both paths time and count each answer under the route's template.
            assert f'route="{BATCH_PATH}",status="200"}} 3.0' in metrics
            assert f'route="{ONE_PATH}",status="200"}} 1.0' in metrics
    assert answers[0] == answers[1]
    assert len(answers[0]) == 22


def test_uncommon_requests_go_to_the_full_app_with_their_body(tmp_path: Path) -> None:
    app = make_app(tmp_path, api_key=API_KEY, max_body_bytes=2_000)
    with TestClient(app) as client:
        calls = counted(app)
        key = {"X-API-Key": API_KEY}
        body = json.dumps(batch(2)).encode()
        # No Content-Length (a streamed body): the full app reads it, then decides.
        chunks = iter([body[:10], body[10:]])
        streamed = client.post(
            BATCH_PATH, content=chunks, headers={**key, "Content-Type": "application/json"}
        )
        assert streamed.status_code == 200 and len(streamed.json()["decisions"]) == 2
        assert client.post(BATCH_PATH, json=batch(2)).status_code == 401
        assert (
            client.post(BATCH_PATH, json=batch(2), headers={"X-API-Key": "nope"}).status_code == 403
        )
        assert client.post(BATCH_PATH, json=batch(40), headers=key).status_code == 413
        refused = client.post(
            BATCH_PATH, json={"decisions": [{"customer_id": "c", "features": {}}]}, headers=key
        )
        assert refused.status_code == 422 and "features" in json.dumps(refused.json())
        as_text = client.post(
            BATCH_PATH, content=body, headers={**key, "Content-Type": "text/plain"}
        )
        assert as_text.status_code == 422
        assert set(calls.values()) == {0}
        assert client.post(BATCH_PATH, json=batch(2), headers=key).status_code == 200
        assert calls[BATCH_PATH] == 1 and sum(calls.values()) == 1
        assert app.state.runtime.store.counts().decisions == 4


def test_a_client_gone_mid_body_is_not_answered_and_nothing_is_logged(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    with TestClient(app) as client:
        calls = counted(app)
        body = json.dumps(batch(3)).encode()
        messages = [
            {"type": "http.request", "body": body[:20], "more_body": True},
            {"type": "http.disconnect"},
        ]
        sent: list[Any] = []

        async def receive() -> dict[str, Any]:
            return messages.pop(0)

        async def send(message: Any) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": BATCH_PATH,
            "raw_path": BATCH_PATH.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 80),
        }
        asyncio.run(app(scope, receive, send))
        assert sent == [] and calls[BATCH_PATH] == 0
        assert client.get("/metrics").status_code == 200
        assert app.state.runtime.store.counts().decisions == 0


def test_an_unexpected_failure_is_a_500_and_counted(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    with TestClient(app, raise_server_exceptions=False) as client:
        fast = app.direct.paths[BATCH_PATH]

        async def broken(parsed: Any, runtime: Any) -> Any:
            raise RuntimeError("boom")

        app.direct.paths[BATCH_PATH] = fast._replace(answer=broken)
        assert client.post(BATCH_PATH, json=batch(1)).status_code == 500
        metrics = client.get("/metrics").text
        assert f'campaignrl_errors_total{{reason="500",route="{BATCH_PATH}"}} 1.0' in metrics


def test_a_policy_refusal_on_the_direct_path_is_the_apps_422(tmp_path: Path) -> None:
    # Scores of 1e300 * 1e9 overflow to inf: the softmax is not a distribution, refused.
    policy = uniform_linear_policy(FEATURES, ACTIONS)
    beta = np.full_like(policy.parameters()["beta"], 1e300)
    huge = LinearPolicy(FEATURES, ACTIONS, beta, exploration=Exploration("softmax", epsilon=0.0))
    app = make_app(tmp_path, huge)
    with TestClient(app) as client:
        calls = counted(app)
        rows = [{"customer_id": "a", "features": ROW}, {"customer_id": "b", "features": BIG}]
        answer = client.post(BATCH_PATH, json={"decisions": rows})
        assert calls[BATCH_PATH] == 1
        assert answer.status_code == 422
        assert answer.json()["detail"][0]["loc"] == ["body", "decisions", 1, "features"]
        assert app.state.runtime.store.counts().decisions == 0


def test_reward_answers_are_the_full_apps(tmp_path: Path) -> None:
    clock = [1_700_000_000.0]
    answers = []
    for name, direct in (("direct", True), ("full", False)):
        clock[0] = 1_700_000_000.0
        app = make_app(tmp_path / name, clock=lambda: clock[0], reward_window_seconds=60.0)
        if not direct:
            app.direct = None
        with TestClient(app) as client:
            calls = counted(app) if direct else None
            ids = [
                d["decision_id"] for d in client.post(BATCH_PATH, json=batch(3)).json()["decisions"]
            ]
            bodies = [
                (REWARDS_ONE, {"decision_id": ids[0], "reward": 2.5}),
                (REWARDS_ONE, {"decision_id": ids[1], "reward": 1, "outcomes": {"opened": True}}),
                (REWARDS_BATCH, {"rewards": [{"decision_id": i, "reward": 0.5} for i in ids]}),
                (REWARDS_ONE, {"decision_id": "0" * 32, "reward": 1.0}),  # unknown: 404
                (REWARDS_ONE, {"decision_id": ids[0], "reward": True}),  # not a number: 422
                (REWARDS_BATCH, {"rewards": [{"decision_id": ids[2], "reward": 1.0,
                                              "outcomes": {"basket_value": 5.0,
                                                           "purchased": False}}]}),
            ]  # fmt: skip
            got = []
            for path, body in bodies:
                response = client.post(path, json=body)
                got.append((response.status_code, _without_ids(response.json())))
            clock[0] += 120.0  # past the window: late
            late = client.post(REWARDS_ONE, json={"decision_id": ids[2], "reward": 3.0})
            got.append((late.status_code, _without_ids(late.json())))
            answers.append(got)
            if calls is not None:
                # Accepted bodies go direct (the 404 too: the route's answer raised it).
                assert (calls[REWARDS_ONE], calls[REWARDS_BATCH]) == (4, 1)
    assert answers[0] == answers[1]
    statuses = [status for status, _ in answers[0]]
    assert statuses == [200, 200, 200, 404, 422, 422, 200]
    assert answers[0][-1][1]["late"] is True and answers[0][0][1]["late"] is False


def _without_ids(body: Any) -> Any:
    """``body`` without its decision ids (random: they differ between two apps)."""
    if isinstance(body, dict):
        return {k: _without_ids(v) for k, v in body.items() if k != "decision_id"}
    if isinstance(body, list):
        return [_without_ids(v) for v in body]
    return body
