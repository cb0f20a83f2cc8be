"""Tests of the decision service over HTTP: known answers, strict input, auth, uploads, fuzzing.

Every answer is checked against the app's own OpenAPI schema (status documented, body valid).
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient

from campaignrl.policies import ConstantPolicy, Exploration, save_policy
from campaignrl.service.app import create_app
from campaignrl.service.settings import ServiceSettings

FEATURES = ("recency", "segment=new")
ACTIONS = ("no_contact", "pct10@email", "bundle@sms")
HASH_KEY = "hash-key-0123456789abcdef"
ADMIN = "admin-token-0123456789"
API_KEY = "api-key-0123456789abcdef"
ROW = {"recency": 1.0, "segment=new": 0.0}


def constant(epsilon: float = 0.3, scores: tuple[float, ...] = (0.0, 1.0, 2.0)) -> ConstantPolicy:
    """Greedy on ``scores`` with ``epsilon``: [0.1, 0.1, 0.8] for the defaults, all allowed."""
    return ConstantPolicy(
        FEATURES, ACTIONS, np.array(scores), Exploration("greedy", epsilon=epsilon)
    )


def artifact(path: Path, policy: Any | None = None) -> Path:
    """Save ``policy`` (default :func:`constant`) as an artifact folder at ``path``."""
    return save_policy(constant() if policy is None else policy, path)


def tar_gz(folder: Path) -> bytes:
    """The files of ``folder`` as a .tar.gz, at its top level."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for file in sorted(folder.iterdir()):
            tar.add(file, arcname=file.name)
    return buffer.getvalue()


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def settings_for(tmp_path: Path, **overrides: Any) -> ServiceSettings:
    """Settings over a SQLite store in ``tmp_path`` serving :func:`constant` (unless given)."""
    policy_dir = overrides.pop("policy_dir", None)
    if policy_dir is None:
        policy_dir = tmp_path / "policy"
        if not policy_dir.exists():
            artifact(policy_dir)
    values: dict[str, Any] = {
        "hash_key": HASH_KEY,
        "policy_dir": policy_dir,
        "store_url": f"sqlite:///{tmp_path / 'decisions.db'}",
        "admin_token": ADMIN,
        "seed": 0,
        **overrides,
    }
    return ServiceSettings(**values)


def make_app(tmp_path: Path, clock: Any = time.time, **overrides: Any) -> FastAPI:
    """An app over :func:`settings_for`."""
    return create_app(settings_for(tmp_path, **overrides), clock=clock)


class CheckedClient:
    """A TestClient whose every answer is checked against the app's own OpenAPI schema.

    The status must be one the operation documents, and the body must match its schema.
    """

    def __init__(self, client: TestClient, app: FastAPI) -> None:
        self.client = client
        self.app = app
        self.raw = app.openapi()
        self.schema = schemathesis.openapi.from_dict(self.raw)

    @property
    def runtime(self) -> Any:
        return self.app.state.runtime

    def request(self, method: str, path: str, template: str | None = None, **kwargs: Any) -> Any:
        response = self.client.request(method, path, **kwargs)
        check_response(self, method, template or path, response)
        return response

    def post(self, path: str, template: str | None = None, **kwargs: Any) -> Any:
        return self.request("POST", path, template, **kwargs)

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> Any:
        return self.request("PUT", path, **kwargs)


def check_response(api: CheckedClient, method: str, template: str, response: Any) -> None:
    """Fail unless ``response`` is documented for the operation and matches its schema."""
    assert response.status_code != 500, response.text
    operation = api.raw["paths"][template][method.lower()]
    documented = set(operation["responses"])
    assert str(response.status_code) in documented, (
        f"{method} {template}: status {response.status_code} not documented ({documented}): "
        f"{response.text[:300]}"
    )
    if response.headers.get("content-type", "").startswith("application/json"):
        api.schema[template][method.upper()].validate_response(response)


@pytest.fixture
def api(tmp_path):
    app = make_app(tmp_path)
    with TestClient(app) as client:
        yield CheckedClient(client, app)


def decide(api: CheckedClient, **body: Any) -> Any:
    body = {"customer_id": "c1", "features": ROW, **body}
    return api.post("/v1/decisions", json=body)


# ---------------------------------------------------------------------------- decisions


@pytest.mark.parametrize(
    ("mask", "expected"),
    [
        (None, [0.1, 0.1, 0.8]),
        (["no_contact", "pct10@email"], [0.15, 0.85, 0.0]),
        ([True, False, True], [0.15, 0.0, 0.85]),
        (["bundle@sms"], [0.0, 0.0, 1.0]),
    ],
)
def test_decision_known_propensities_and_the_stored_row(api, tmp_path, mask, expected):
    response = decide(api, mask=mask, event_id="e-1")
    assert response.status_code == 200
    out = response.json()
    assert out["propensity"] == pytest.approx(expected[out["action_index"]], abs=1e-12)
    assert out["action"] == ACTIONS[out["action_index"]]
    assert (out["offer"], out["channel"]) == (
        (None, None) if out["action"] == "no_contact" else tuple(out["action"].split("@"))
    )
    assert (out["policy_version"], out["deferred"], out["activated"]) == (1, False, True)
    stored = api.runtime.store.get_decision(out["decision_id"])
    np.testing.assert_allclose(stored.probabilities, expected, atol=1e-12)
    np.testing.assert_array_equal(stored.features, [ROW["recency"], ROW["segment=new"]])
    assert stored.customer_key == hmac.new(HASH_KEY.encode(), b"c1", hashlib.sha256).hexdigest()
    assert (stored.mask is None) == (mask is None)
    assert stored.event_id == "e-1"


def test_raw_customer_ids_never_reach_the_store_or_metrics(api, tmp_path):
    decide(api, customer_id="alice@example.com")
    api.runtime.store.close()  # checkpoint the WAL into the file
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("decisions.db*") if p.is_file())
    assert b"alice@example.com" not in raw
    assert "alice" not in api.get("/metrics").text


def test_batch_decisions_share_one_version_and_log_each_propensity(api):
    rows = [{"customer_id": f"c{i}", "features": ROW} for i in range(200)]
    out = api.post("/v1/decisions:batch", json={"decisions": rows}).json()["decisions"]
    assert len(out) == 200 and len({d["decision_id"] for d in out}) == 200
    assert {d["policy_version"] for d in out} == {1}
    for d in out:
        assert d["propensity"] == pytest.approx([0.1, 0.1, 0.8][d["action_index"]])
    counts = np.bincount([d["action_index"] for d in out], minlength=3)
    assert 0.8 * 200 - 4.5 * np.sqrt(200 * 0.16) <= counts[2] <= 0.8 * 200 + 4.5 * np.sqrt(32)
    assert api.runtime.store.counts().decisions == 200


def test_the_same_seed_gives_the_same_decisions(tmp_path):
    actions = []
    for run in range(2):
        app = make_app(tmp_path / str(run))
        with TestClient(app) as client:
            body = {"decisions": [{"customer_id": f"c{i}", "features": ROW} for i in range(30)]}
            out = client.post("/v1/decisions:batch", json=body).json()["decisions"]
            actions.append([d["action_index"] for d in out])
    assert actions[0] == actions[1]


def test_an_event_id_twice_returns_the_first_decision_and_logs_once(api):
    first = decide(api, event_id="evt-7").json()
    again = decide(api, event_id="evt-7", features={"recency": 5.0, "segment=new": 1.0}).json()
    assert again["decision_id"] == first["decision_id"] and again["replayed"] is True
    assert first["replayed"] is False
    body = {"decisions": [{"customer_id": "c", "features": ROW, "event_id": "evt-8"}] * 3}
    out = api.post("/v1/decisions:batch", json=body).json()["decisions"]
    assert len({d["decision_id"] for d in out}) == 1
    assert api.runtime.store.counts().decisions == 2
    assert api.runtime.metrics.value("campaignrl_decisions_replayed_total") == 3


def test_a_deferred_decision_counts_once_activated(tmp_path):
    clock = FakeClock()
    app = make_app(tmp_path, clock=clock, reward_window_seconds=10)
    with TestClient(app) as client:
        api = CheckedClient(client, app)
        out = decide(api, deferred=True).json()
        assert (out["deferred"], out["activated"]) == (True, False)
        clock.advance(100)
        assert api.runtime.joiner.counts().joined == 0  # never activated: never joined
        path = f"/v1/decisions/{out['decision_id']}/activate"
        template = "/v1/decisions/{decision_id}/activate"
        activated = api.post(path, template).json()
        assert activated["activated"] is True and activated["decision_id"] == out["decision_id"]
        assert api.post(path, template).json()["activated"] is True  # idempotent
        clock.advance(11)
        assert api.runtime.joiner.counts().joined == 1
        assert api.runtime.metrics.value("campaignrl_activations_total") == 1


def test_activating_an_unknown_decision_is_a_404(api):
    template = "/v1/decisions/{decision_id}/activate"
    response = api.post(f"/v1/decisions/{'0' * 32}/activate", template)
    assert response.status_code == 404
    assert response.json()["detail"] == f"unknown `decision_id`: '{'0' * 32}'"
    response = api.post("/v1/decisions/not-an-id/activate", template)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["path", "decision_id"]


# ---------------------------------------------------------------------------- rewards


def test_rewards_on_time_late_and_unknown(tmp_path):
    clock = FakeClock()
    app = make_app(tmp_path, clock=clock, reward_window_seconds=60, default_reward=-1.0)
    with TestClient(app) as client:
        api = CheckedClient(client, app)
        a, b, c = (decide(api, customer_id=f"c{i}").json()["decision_id"] for i in range(3))
        on_time = api.post("/v1/rewards", json={"decision_id": a, "reward": 2.5}).json()
        assert (on_time["late"], on_time["reward"], on_time["received_at"]) == (
            False,
            2.5,
            clock.now,
        )
        body = {"rewards": [{"decision_id": a, "reward": 1.0}, {"decision_id": b, "reward": 4}]}
        assert [r["late"] for r in api.post("/v1/rewards:batch", json=body).json()["rewards"]] == [
            False,
            False,
        ]
        clock.advance(61)
        late = api.post("/v1/rewards", json={"decision_id": c, "reward": 9.0}).json()
        assert late["late"] is True
        unknown = {
            "rewards": [{"decision_id": a, "reward": 1.0}, {"decision_id": "f" * 32, "reward": 1}]
        }
        response = api.post("/v1/rewards:batch", json=unknown)
        assert response.status_code == 404
        assert response.json()["detail"] == f"unknown `decision_id`: '{'f' * 32}'"
        assert api.runtime.store.counts().rewards == 4  # the refused batch stored nothing
        clock.advance(5)
        counts = api.runtime.joiner.counts()
        assert (counts.joined, counts.defaulted, counts.late_rewards) == (3, 1, 1)
        frame = api.runtime.joiner.export_logs()
        assert sorted(frame["reward"]) == [-1.0, 3.5, 4.0]  # c: default; late 9 never joined
        metrics = api.get("/metrics").text
        assert 'campaignrl_rewards_total{late="true"} 1.0' in metrics
        assert "campaignrl_store_defaulted 1.0" in metrics


def test_rewards_carry_outcomes_stored_echoed_and_exported(tmp_path):
    clock = FakeClock()
    app = make_app(tmp_path, clock=clock, reward_window_seconds=60)
    with TestClient(app) as client:
        api = CheckedClient(client, app)
        a, b = (decide(api, customer_id=f"c{i}").json()["decision_id"] for i in range(2))
        given = {"opened": True, "purchased": True, "basket_value": 40, "churned": None}
        one = api.post("/v1/rewards", json={"decision_id": a, "reward": 2.5, "outcomes": given})
        assert one.status_code == 200
        # echoed as stored: the basket a float, the null (not reported) left out
        assert one.json()["outcomes"] == {"opened": True, "purchased": True, "basket_value": 40.0}
        body = {
            "rewards": [
                {"decision_id": a, "reward": 1.0, "outcomes": {"unsubscribed": False}},
                {"decision_id": b, "reward": 0.0},
            ]
        }
        batch = api.post("/v1/rewards:batch", json=body).json()["rewards"]
        assert [r["outcomes"] for r in batch] == [{"unsubscribed": False}, None]
        plain = api.post("/v1/rewards", json={"decision_id": b, "reward": 0.5}).json()
        assert plain["outcomes"] is None
        told = {"opened": False, "purchased": False, "unsubscribed": True}
        api.post("/v1/rewards", json={"decision_id": b, "reward": 0.0, "outcomes": told})
        stored = api.runtime.store.rewards_for(a)
        assert [None if r.outcomes is None else dict(r.outcomes) for r in stored] == [
            {"opened": True, "purchased": True, "basket_value": 40.0},
            {"unsubscribed": False},
        ]
        clock.advance(61)
        frame = api.runtime.joiner.export_logs()
        assert frame["decision_id"].tolist() == [a, b]
        # b's basket is 0 by definition (purchased False); nobody reported churned
        assert frame["opened"].tolist() == [True, False]
        assert frame["purchased"].tolist() == [True, False]
        assert frame["basket_value"].tolist() == [40.0, 0.0]
        assert frame["unsubscribed"].tolist() == [False, True]
        assert "churned" not in frame.columns and frame.attrs["outcomes_left_out"] == {}


# ---------------------------------------------------------------------------- strict input

GOOD = {"customer_id": "c1", "features": ROW}
RAW_REWARD = '{"decision_id": "00000000000000000000000000000000", "reward": 1, "outcomes": %s}'


def _reward(**outcomes: Any) -> dict[str, Any]:
    return {"decision_id": "0" * 32, "reward": 1.0, "outcomes": outcomes}


RAW = '{"customer_id": "c", "features": {"recency": %s, "segment=new": 0}}'


def _with(**changes: Any) -> dict[str, Any]:
    return {**GOOD, **changes}


@pytest.mark.parametrize(
    ("path", "raw", "loc", "message"),
    [
        ("/v1/decisions", _with(features={"recency": True, "segment=new": 0}),
         ["body", "features", "recency"], "valid number"),
        ("/v1/decisions", _with(features={"recency": "1.5", "segment=new": 0}),
         ["body", "features", "recency"], "valid number"),
        ("/v1/decisions", RAW % "NaN", ["body", "features", "recency"], "finite number"),
        ("/v1/decisions", RAW % "-Infinity", ["body", "features", "recency"], "finite number"),
        ("/v1/decisions", RAW % "1e400", ["body", "features", "recency"], "finite number"),
        ("/v1/decisions", RAW % ("1" + "0" * 400), ["body", "features", "recency"],
         "valid number"),
        ("/v1/decisions", _with(features={"recency": 2e9, "segment=new": 0}),
         ["body", "features", "recency"], "less than or equal to 1000000000"),
        ("/v1/decisions", _with(features={"recency": 1.0}),
         ["body", "features", "segment=new"], "Field required"),
        ("/v1/decisions", _with(features={**ROW, "age": 3}),
         ["body", "features", "age"], "Extra inputs are not permitted"),
        ("/v1/decisions", _with(colour="red"), ["body", "colour"], "Extra inputs"),
        ("/v1/decisions", _with(customer_id=42), ["body", "customer_id"], "valid string"),
        ("/v1/decisions", _with(customer_id=""), ["body", "customer_id"], "at least 1 character"),
        ("/v1/decisions", _with(event_id="a\x00b"), ["body", "event_id"], "should match pattern"),
        ("/v1/decisions", RAW.replace('"c"', '"\\ud800"') % "1", ["body", "customer_id"],
         "valid string"),
        ("/v1/decisions", _with(deferred="yes"), ["body", "deferred"], "valid boolean"),
        ("/v1/decisions", _with(mask=[False, False, False]), ["body", "mask"],
         "must allow at least one action"),
        ("/v1/decisions", "[1, 2", ["body", 5], "JSON decode error"),
        ("/v1/decisions:batch", {"decisions": [GOOD] * 4}, ["body", "decisions"],
         "at most 3 items"),
        ("/v1/decisions:batch", {"decisions": [GOOD, _with(features={"recency": 1})]},
         ["body", "decisions", 1, "features", "segment=new"], "Field required"),
        ("/v1/rewards", {"decision_id": "0" * 32, "reward": True}, ["body", "reward"],
         "valid number"),
        ("/v1/rewards", '{"decision_id": "00000000000000000000000000000000", "reward": NaN}',
         ["body", "reward"], "finite number"),
        ("/v1/rewards", {"decision_id": "x", "reward": 1}, ["body", "decision_id"],
         "should match pattern"),
        ("/v1/rewards", {"decision_id": "0" * 32, "reward": 1e13}, ["body", "reward"],
         "less than or equal to"),
        ("/v1/rewards:batch", {"rewards": [{"decision_id": "0" * 32, "reward": 1}] * 4},
         ["body", "rewards"], "at most 3 items"),
        ("/v1/rewards", _reward(opened=1), ["body", "outcomes", "opened"], "valid boolean"),
        ("/v1/rewards", _reward(churned="true"), ["body", "outcomes", "churned"],
         "valid boolean"),
        ("/v1/rewards", _reward(basket_value=True), ["body", "outcomes", "basket_value"],
         "valid number"),
        ("/v1/rewards", _reward(basket_value="9.5"), ["body", "outcomes", "basket_value"],
         "valid number"),
        ("/v1/rewards", _reward(basket_value=-0.01), ["body", "outcomes", "basket_value"],
         "greater than or equal to 0"),
        ("/v1/rewards", _reward(basket_value=2e12), ["body", "outcomes", "basket_value"],
         "less than or equal to"),
        ("/v1/rewards", RAW_REWARD % '{"basket_value": NaN}', ["body", "outcomes", "basket_value"],
         "finite number"),
        ("/v1/rewards", _reward(colour=True, opened=True), ["body", "outcomes", "colour"],
         "Extra inputs are not permitted"),
        ("/v1/rewards", RAW_REWARD % "[true]", ["body", "outcomes"], "valid dictionary"),
        ("/v1/rewards", _reward(purchased=False, basket_value=3.0), ["body", "outcomes"],
         "`basket_value` must be 0 when `purchased` is false, got 3.0"),
        ("/v1/rewards:batch", {"rewards": [_reward(), _reward(unsubscribed=0)]},
         ["body", "rewards", 1, "outcomes", "unsubscribed"], "valid boolean"),
    ],
)  # fmt: skip
def test_bad_input_is_a_422_naming_the_field(tmp_path, path, raw, loc, message):
    app = make_app(tmp_path, max_batch=3)
    with TestClient(app) as client:
        api = CheckedClient(client, app)
        if isinstance(raw, str):
            response = api.post(path, content=raw, headers={"content-type": "application/json"})
        else:
            response = api.post(path, json=raw)
        assert response.status_code == 422, response.text
        errors = response.json()["detail"]
        assert any(e["loc"] == loc and message in e["msg"] for e in errors), errors
        assert api.runtime.store.counts().decisions == 0


def test_huge_features_that_overflow_a_policy_are_refused(tmp_path):
    from campaignrl.service.online import uniform_linear_policy

    policy = uniform_linear_policy(FEATURES, ACTIONS)
    params = policy.parameters()
    beta = np.full_like(params["beta"], 1e300)
    from campaignrl.policies import LinearPolicy

    huge = LinearPolicy(FEATURES, ACTIONS, beta, exploration=Exploration("softmax", epsilon=0.0))
    artifact(tmp_path / "p", huge)
    app = make_app(tmp_path, policy_dir=tmp_path / "p")
    with TestClient(app) as client:
        api = CheckedClient(client, app)
        response = decide(api, features={"recency": 1e9, "segment=new": 1e9})
    assert response.status_code in (200, 422)
    if response.status_code == 422:
        assert response.json()["detail"][0]["loc"] == ["body", "features"]


# ---------------------------------------------------------------------------- limits and auth


def test_bodies_over_the_limit_are_a_413(tmp_path):
    app = make_app(tmp_path, max_body_bytes=2048)
    with TestClient(app) as client:
        api = CheckedClient(client, app)
        big = {"customer_id": "c" * 200, "features": ROW, "event_id": "e" * 100}
        body = {"decisions": [big] * 10}
        response = api.post("/v1/decisions:batch", json=body)
        assert response.status_code == 413
        assert "over the 2048-byte limit (max_body_bytes)" in response.json()["detail"]

        def chunks():  # no Content-Length: counted as it streams
            for _ in range(10):
                yield b" " * 500

        response = api.post("/v1/decisions", content=chunks())
        assert response.status_code == 413
        assert response.json()["detail"] == (
            "request body is over the 2048-byte limit (max_body_bytes)"
        )
        assert api.post("/v1/decisions:batch", json={"decisions": [big] * 2}).status_code == 200
        metrics = api.get("/metrics").text
        assert 'campaignrl_errors_total{reason="413",route="/v1/decisions"} 1.0' in metrics


def test_api_key(tmp_path):
    app = make_app(tmp_path, api_key=API_KEY)
    with TestClient(app) as client:
        api = CheckedClient(client, app)
        assert decide(api).status_code == 401
        wrong = api.post("/v1/decisions", json=GOOD, headers={"X-API-Key": "nope"})
        assert wrong.status_code == 403
        # a header with non-ASCII bytes is compared, not crashed on
        odd = api.post("/v1/decisions", json=GOOD, headers={"X-API-Key": "clé-é".encode("latin-1")})
        assert odd.status_code == 403
        ok = api.post("/v1/decisions", json=GOOD, headers={"X-API-Key": API_KEY})
        assert ok.status_code == 200
        assert api.get("/v1/policy").status_code == 401
        assert (
            api.post("/v1/rewards", json={"decision_id": "0" * 32, "reward": 1}).status_code == 401
        )
        assert api.get("/healthz").status_code == 200  # operations need no key


@pytest.mark.parametrize(
    ("token", "headers", "status", "detail"),
    [
        (ADMIN, {}, 401, "missing admin token: send Authorization: Bearer <token>"),
        (ADMIN, {"Authorization": "Basic abc"}, 401, "missing admin token"),
        (ADMIN, {"Authorization": "Bearer wrong"}, 403, "wrong admin token"),
        (ADMIN, {"Authorization": "Bearer \xe9\xe9"}, 403, "wrong admin token"),
        (None, {"Authorization": f"Bearer {ADMIN}"}, 403, "admin endpoints are disabled"),
    ],
)
def test_admin_token(tmp_path, token, headers, status, detail):
    app = make_app(tmp_path, admin_token=token)
    with TestClient(app) as client:
        api = CheckedClient(client, app)
        headers = {k: v.encode("latin-1") for k, v in headers.items()}
        for path in ("/v1/policy/rollback",):
            response = api.post(path, headers=headers)
            assert response.status_code == status
            assert response.json()["detail"].startswith(detail)
        response = api.put("/v1/policy", content=b"x", headers=headers)
        assert response.status_code == status


# ---------------------------------------------------------------------------- policy

BEARER = {"Authorization": f"Bearer {ADMIN}"}


def test_upload_swap_refusals_and_rollback(tmp_path, api):
    new = artifact(tmp_path / "new", constant(epsilon=0.0, scores=(5.0, 0.0, 0.0)))
    response = api.put("/v1/policy", content=tar_gz(new), headers=BEARER)
    assert response.status_code == 200, response.text
    assert (response.json()["version"], response.json()["history"]) == (2, [1, 2])
    out = decide(api).json()
    assert (out["action"], out["propensity"], out["policy_version"]) == ("no_contact", 1.0, 2)

    # tampered weights: the manifest's checksum no longer matches
    tampered = artifact(tmp_path / "tampered", constant(scores=(0.0, 0.0, 9.0)))
    weights = tampered / "weights.npz"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    response = api.put("/v1/policy", content=tar_gz(tampered), headers=BEARER)
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "policy_refused"
    assert response.json()["detail"][0]["msg"].startswith("policy artifact 'upload'")
    # other features
    other = save_policy(ConstantPolicy(("a", "b"), ACTIONS, np.zeros(3)), tmp_path / "other")
    response = api.put("/v1/policy", content=tar_gz(other), headers=BEARER)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "feature_names"]
    # a hostile archive
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("../../escape")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    response = api.put("/v1/policy", content=buffer.getvalue(), headers=BEARER)
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "archive_refused"
    assert not (tmp_path.parent / "escape").exists()
    # every refusal left version 2 serving
    assert api.get("/v1/policy").json()["version"] == 2
    assert decide(api).json()["policy_version"] == 2

    rolled = api.post("/v1/policy/rollback", headers=BEARER).json()
    assert (rolled["version"], rolled["history"]) == (1, [1])
    assert decide(api).json()["policy_version"] == 1
    assert api.post("/v1/policy/rollback", headers=BEARER).status_code == 409
    metrics = api.get("/metrics").text
    assert "campaignrl_policy_version 1.0" in metrics
    assert 'campaignrl_policy_refused_total{field="feature_names"} 1.0' in metrics


def test_with_a_signing_key_unsigned_artifacts_are_refused(tmp_path):
    from campaignrl.service.versions import sign_artifact

    key = "signing-key-0123456789"
    first = artifact(tmp_path / "policy")
    sign_artifact(first, key.encode())
    app = make_app(tmp_path, signing_key=key)
    with TestClient(app) as client:
        api = CheckedClient(client, app)
        new = artifact(tmp_path / "new", constant(scores=(3.0, 0.0, 0.0)))
        response = api.put("/v1/policy", content=tar_gz(new), headers=BEARER)
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["body", "signature"]
        sign_artifact(new, b"another-key-0123456789")
        response = api.put("/v1/policy", content=tar_gz(new), headers=BEARER)
        assert response.json()["detail"][0]["loc"] == ["body", "signature"]
        sign_artifact(new, key.encode())
        assert api.put("/v1/policy", content=tar_gz(new), headers=BEARER).json()["version"] == 2


def test_a_restart_with_the_same_policy_resumes_and_a_new_one_is_proposed(tmp_path):
    for _ in range(2):
        with TestClient(make_app(tmp_path)) as client:
            assert client.get("/v1/policy").json()["history"] == [1]
    artifact(tmp_path / "next", constant(scores=(1.0, 0.0, 0.0)))
    with TestClient(make_app(tmp_path, policy_dir=tmp_path / "next")) as client:
        assert client.get("/v1/policy").json()["history"] == [1, 2]
    with TestClient(make_app(tmp_path)) as client:  # the first again: stored, v2 keeps serving
        assert client.get("/v1/policy").json()["version"] == 2


def test_no_policy_at_all_is_refused(tmp_path):
    from campaignrl.service.settings import ServiceSettings

    settings = ServiceSettings(hash_key=HASH_KEY, store_url=f"sqlite:///{tmp_path / 'd.db'}")
    with pytest.raises(ValueError, match=r"no policy to serve: pass --policy DIR"):
        create_app(settings)


# ---------------------------------------------------------------------------- operations


def test_health_readiness_and_metrics(api):
    assert api.get("/healthz").json() == {"status": "ok", "policy_version": 1}
    assert api.get("/readyz").json() == {"status": "ready", "policy_version": 1}
    decide(api)
    assert api.client.get("/openapi.json").status_code == 200
    assert api.client.get("/nowhere").status_code == 404
    text = api.get("/metrics").text
    for line in (
        # Requests are labelled by their route's template; FastAPI's pages are known too.
        'campaignrl_http_requests_total{method="GET",route="/openapi.json",status="200"} 1.0',
        'campaignrl_http_requests_total{method="GET",route="unmatched",status="404"} 1.0',
        'campaignrl_decisions_total{deferred="false",endpoint="single"} 1.0',
        "campaignrl_policy_version 1.0",
        "campaignrl_store_up 1.0",
        "campaignrl_store_decisions 1.0",
        'campaignrl_request_seconds_count{method="POST",route="/v1/decisions"} 1.0',
        'campaignrl_store_commit_seconds_count{kind="decisions"} 1.0',
    ):
        assert line in text, line


def test_readiness_fails_when_the_store_is_gone(api):
    api.runtime.store.close()
    response = api.get("/readyz")
    assert response.status_code == 503
    assert response.json()["status"].startswith("store not answering")


# ---------------------------------------------------------------------------- learning


def test_online_learning_publishes_versions_that_survive_restarts(tmp_path):
    from campaignrl.service.online import uniform_linear_policy
    from campaignrl.service.runtime import CURSOR_FILE

    artifact(tmp_path / "uniform", uniform_linear_policy(FEATURES, ACTIONS))
    clock = FakeClock()
    options = dict(
        policy_dir=tmp_path / "uniform",
        learn=True,
        learn_every_rewards=1,
        learn_every_seconds=3600,
        reward_window_seconds=10,
    )
    app = make_app(tmp_path, clock=clock, **options)
    with TestClient(app) as client:
        api = CheckedClient(client, app)
        assert api.runtime.learn_step() is None  # elected, nothing joined yet
        rows = [
            {"customer_id": f"c{i}", "features": {"recency": float(i % 3), "segment=new": 1.0}}
            for i in range(60)
        ]
        out = api.post("/v1/decisions:batch", json={"decisions": rows}).json()["decisions"]
        # action 2 pays, the others cost: a learner must come to prefer it
        rewards = [
            {"decision_id": d["decision_id"], "reward": 1.0 if d["action_index"] == 2 else -0.5}
            for d in out
        ]
        api.post("/v1/rewards:batch", json={"rewards": rewards})
        clock.advance(12)
        api.runtime.learn_step()
        policy = api.get("/v1/policy").json()
        assert policy["version"] == 2 and policy["kind"] == "linear"
        assert policy["manifest"]["training"]["online"]["rows"] == 60
        assert (tmp_path / "decisions.db.versions" / CURSOR_FILE).is_file()
        probs = decide(api).json()
        assert probs["policy_version"] == 2
        assert api.runtime.metrics.value("campaignrl_learn_rows_total") == 60
    # A restart with other exploration and reward settings keeps what was learned.
    options.update(exploration_epsilon=0.5, reward_window_seconds=30)
    with TestClient(make_app(tmp_path, clock=clock, **options)) as client:
        assert client.get("/v1/policy").json()["version"] == 2
        app_runtime = client.app.state.runtime  # type: ignore[attr-defined]
        assert app_runtime.learn_step() is None  # the rows learned are not learned twice
        assert app_runtime.loop.learning.rows == 60


def test_learn_is_refused_for_a_kind_that_does_not_learn(tmp_path):
    app = make_app(tmp_path, learn=True)  # a constant policy
    with pytest.raises(ValueError, match=r"--learn: policy kind 'constant' is not learned online"):
        with TestClient(app):
            pass


# ---------------------------------------------------------------------------- fuzzing

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_text = st.text(st.characters(exclude_categories=()), max_size=12)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**18, max_value=10**400)
    | st.floats(allow_nan=True, allow_infinity=True)
    | _text
)
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=12,
)


def _mutated(base: dict[str, Any]) -> st.SearchStrategy[Any]:
    """``base`` with one key replaced by a hostile value, deleted, or added."""
    keys = st.sampled_from(sorted(base)) | _text

    def change(pair: tuple[str, Any], how: int, nested: str) -> Any:
        key, value = pair
        out = dict(base)
        if how == 0:
            out[key] = value
        elif how == 1:
            out.pop(key, None)
        elif isinstance(out.get("features"), dict):
            out["features"] = {**out["features"], nested: value}
        return out

    return st.builds(
        change,
        st.tuples(keys, _json),
        st.integers(0, 2),
        st.sampled_from(FEATURES) | _text,
    )


DECISION = {"customer_id": "c", "features": ROW, "event_id": "e", "deferred": False, "mask": None}
REWARD = {"decision_id": "0" * 32, "reward": 1.0}
_BODIES = {
    "/v1/decisions": _json | _mutated(DECISION),
    "/v1/decisions:batch": _json
    | st.builds(lambda d: {"decisions": [d]}, _mutated(DECISION) | _json),
    "/v1/rewards": _json | _mutated(REWARD),
    "/v1/rewards:batch": _json | st.builds(lambda r: {"rewards": [r]}, _mutated(REWARD) | _json),
}


def _encode(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode("utf-8")


@pytest.fixture(scope="module")
def fuzz_api(tmp_path_factory):
    # In memory when the machine has it: the fuzzing commits hundreds of decisions, each
    # fsynced (the store's durability is tested elsewhere).
    shm = Path("/dev/shm")
    with tempfile.TemporaryDirectory(dir=shm if shm.is_dir() else None) as tmp:
        app = make_app(Path(tmp), max_batch=5, max_body_bytes=4096, max_artifact_bytes=4096)
        with TestClient(app) as client:
            yield CheckedClient(client, app)


_FUZZ = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.mark.parametrize("path", sorted(_BODIES))
def test_fuzz_hostile_json_bodies_never_fail(fuzz_api, path):
    @_FUZZ
    @given(body=_BODIES[path] | st.binary(max_size=64))
    def run(body: Any) -> None:
        content = body if isinstance(body, bytes) else _encode(body)
        fuzz_api.post(path, content=content, headers={"content-type": "application/json"})

    run()


def test_fuzz_activate_paths_never_fail(fuzz_api):
    template = "/v1/decisions/{decision_id}/activate"

    @_FUZZ
    @given(decision_id=st.text(min_size=1, max_size=40) | st.from_regex(r"\A[0-9a-f]{32}\Z"))
    def run(decision_id: str) -> None:
        path = f"/v1/decisions/{quote(decision_id, safe='')}/activate"
        response = fuzz_api.client.post(path)
        if response.status_code != 404 or "unknown" in response.text:
            check_response(fuzz_api, "POST", template, response)

    run()


def test_fuzz_policy_uploads_never_fail(fuzz_api, tmp_path):
    members = st.lists(
        st.tuples(
            st.sampled_from(["manifest.json", "weights.npz", "../x", "/abs", "a/b/c", "p/x"])
            | _text,
            st.binary(max_size=64),
            st.sampled_from([tarfile.REGTYPE, tarfile.SYMTYPE, tarfile.DIRTYPE, tarfile.LNKTYPE]),
        ),
        max_size=4,
    )

    def archive(entries: list[tuple[str, bytes, bytes]], kind: str) -> bytes:
        buffer = io.BytesIO()
        if kind == "zip":
            with zipfile.ZipFile(buffer, "w") as z:
                for name, data, _ in entries:
                    z.writestr(name or "x", data)
        else:
            with tarfile.open(fileobj=buffer, mode="w:gz" if kind == "tgz" else "w") as tar:
                for name, data, type_ in entries:
                    info = tarfile.TarInfo(name or "x")
                    info.type = type_
                    info.size = len(data) if type_ == tarfile.REGTYPE else 0
                    info.linkname = "/etc/passwd"
                    tar.addfile(info, io.BytesIO(data) if type_ == tarfile.REGTYPE else None)
        return buffer.getvalue()

    @_FUZZ
    @given(
        body=st.binary(max_size=300)
        | st.builds(archive, members, st.sampled_from(["tar", "tgz", "zip"]))
    )
    def run(body: bytes) -> None:
        response = fuzz_api.put("/v1/policy", content=body, headers=BEARER)
        assert response.status_code in (413, 422), response.text
        assert fuzz_api.get("/v1/policy").json()["version"] == 1

    run()


# ---------------------------------------------------------------------------- the fast path

# The deciding routes validate a JSON body straight from its bytes and fall back to FastAPI's
# own handling for anything they do not accept. "application/json; charset=utf-8" is JSON to
# FastAPI but not taken by the fast path: the same body both ways must get the same answer.
_FASTAPI_WAY = {"content-type": "application/json; charset=utf-8"}
_FAST_WAY = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def greedy_api(tmp_path_factory):
    # Greedy without exploration: the same body gets the same action whichever way it goes.
    shm = Path("/dev/shm")
    with tempfile.TemporaryDirectory(dir=shm if shm.is_dir() else None) as tmp:
        artifact(Path(tmp) / "policy", constant(epsilon=0.0))
        app = make_app(Path(tmp), max_batch=5, max_body_bytes=4096)
        with TestClient(app) as client:
            yield CheckedClient(client, app)


def _comparable(response: Any) -> tuple[int, Any]:
    """Status and body, without what differs between two posts (new id, replayed or not)."""
    try:
        body = response.json()
    except ValueError:
        return response.status_code, response.text
    if response.status_code == 200:
        rows = body["decisions"] if "decisions" in body else [body]
        for row in rows:
            row.pop("decision_id")
            row.pop("replayed")
    return response.status_code, body


@pytest.mark.parametrize("path", ["/v1/decisions", "/v1/decisions:batch"])
def test_fuzz_the_fast_path_answers_as_fastapi_does(greedy_api, path):
    @_FUZZ
    @given(body=_BODIES[path] | st.binary(max_size=64))
    def run(body: Any) -> None:
        content = body if isinstance(body, bytes) else _encode(body)
        slow = greedy_api.post(path, content=content, headers=_FASTAPI_WAY)
        fast = greedy_api.post(path, content=content, headers=_FAST_WAY)
        assert _comparable(fast) == _comparable(slow)

    run()


@pytest.mark.parametrize(
    "raw",
    [
        b'{"customer_id": "c1", "features": {"recency": 1, "segment=new": 0}}',  # valid
        b'{"customer_id": "c1", "customer_id": "c2", "features": {"recency": 1, "segment=new": 0}}',
        b'\xef\xbb\xbf{"customer_id": "c1", "features": {"recency": 1, "segment=new": 0}}',
        '{"customer_id": "c1", "features": {"recency": 1, "segment=new": 0}}'.encode("utf-16"),
        b'{"customer_id": "c\\ud800", "features": {"recency": 1, "segment=new": 0}}',
        b'{"customer_id": "c\xff", "features": {"recency": 1, "segment=new": 0}}',
        b'{"customer_id": "c1", "features": {"recency": 1e400, "segment=new": 0}}',
        b'{"customer_id": "c1", "features": {"recency": NaN, "segment=new": 0}}',
        b'{"customer_id": "c1", "features": {"recency": 1, "segment=new": 0}} x',
        b"",
    ],
)
def test_the_fast_path_answers_edge_bodies_as_fastapi_does(greedy_api, raw):
    slow = greedy_api.post("/v1/decisions", content=raw, headers=_FASTAPI_WAY)
    fast = greedy_api.post("/v1/decisions", content=raw, headers=_FAST_WAY)
    assert _comparable(fast) == _comparable(slow)


def test_features_are_stored_in_the_policy_order_whatever_the_json_order(api):
    raw = b'{"features": {"segment=new": 1.0, "recency": 2.5}, "customer_id": "c1"}'
    batch = b'{"decisions": [' + raw + b", " + raw.replace(b"2.5", b"-7") + b"]}"
    one = api.post("/v1/decisions", content=raw, headers=_FAST_WAY).json()
    both = api.post("/v1/decisions:batch", content=batch, headers=_FAST_WAY).json()["decisions"]
    ids = [one["decision_id"]] + [d["decision_id"] for d in both]
    stored = api.runtime.store.get_decisions(ids)
    np.testing.assert_array_equal(stored[one["decision_id"]].features, [2.5, 1.0])
    np.testing.assert_array_equal(stored[both[0]["decision_id"]].features, [2.5, 1.0])
    np.testing.assert_array_equal(stored[both[1]["decision_id"]].features, [-7.0, 1.0])


def test_the_runtime_records_equal_checked_ones(api):
    from campaignrl.service.records import DecisionRecord
    from campaignrl.service.runtime import DecisionRequest

    requests = [
        DecisionRequest("c1", ROW, event_id="e-9", deferred=True, mask=["bundle@sms"]),
        DecisionRequest("c2", ROW),
    ]
    stored = api.runtime.decide(requests, endpoint="batch")
    for (record, replayed), request in zip(stored, requests, strict=True):
        assert not replayed
        fields = {name: getattr(record, name) for name in record.__dataclass_fields__}
        fields["activated_at"] = None
        assert DecisionRecord(**fields) == record  # what the constructor makes of them
        assert api.runtime.store.get_decision(record.decision_id) == record
        assert record.activated_at == (None if request.deferred else record.created_at)
        assert not record.probabilities.flags.writeable and not record.features.flags.writeable
    assert stored[0][0].mask is not None and stored[1][0].mask is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"event_id": 5}, "`event_id` must be a non-empty str or None, got 5"),
        ({"event_id": ""}, "`event_id` must be a non-empty str or None, got ''"),
        ({"deferred": "yes"}, "`deferred` must be a bool, got 'yes'"),
    ],
)
def test_the_runtime_refuses_wrong_types_by_field(api, change, message):
    from campaignrl.service.runtime import DecisionRequest

    with pytest.raises(TypeError, match=message):
        api.runtime.decide([DecisionRequest("c1", ROW, **change)])
    assert api.runtime.store.counts().decisions == 0
