"""Tests of the batch route's lean reader (msgspec): it accepts only what the model accepts.

Whatever body the lean reader accepts, the pydantic request model must accept too, with the
same values (bit for bit); whatever it refuses goes the pydantic way, so a refusal costs
speed, never an answer. Skipped without msgspec (an optional accelerator).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from campaignrl.service.app import create_app
from campaignrl.service.routers import decisions
from campaignrl.service.routers.models import build_models
from campaignrl.service.settings import ServiceSettings

pytest.importorskip("msgspec")

FEATURES = ("recency", "segment=new", "x y")
ACTIONS = ("no_contact", "pct10@email", "bundle@sms")
MODELS = build_models(FEATURES, ACTIONS, max_batch=4)
READ = decisions.lean_batch_reader(MODELS)
MODEL = TypeAdapter(MODELS.decision_batch_in)
COLUMNS = decisions._columns_reader(MODELS)
ROW = {"recency": 1.5, "segment=new": 0, "x y": -2e-3}


def body(*items: dict[str, Any]) -> bytes:
    return json.dumps({"decisions": list(items)}).encode()


def item(**change: Any) -> dict[str, Any]:
    return {"customer_id": "c1", "features": dict(ROW), **change}


def same(a: decisions.BatchColumns, b: decisions.BatchColumns) -> bool:
    """The same columns, features bit for bit (``-0.0`` is not ``0.0``)."""
    return (
        a.customer_ids == b.customer_ids
        and a.event_ids == b.event_ids
        and [type(v) for v in a.deferred] == [type(v) for v in b.deferred]
        and a.deferred == b.deferred
        and a.masks == b.masks
        and a.features.dtype == b.features.dtype == np.float64
        and a.features.shape == b.features.shape
        and a.features.tobytes() == b.features.tobytes()
    )


def pydantic_columns(raw: bytes) -> decisions.BatchColumns | None:
    try:
        return COLUMNS(MODEL.validate_json(raw).decisions)
    except ValidationError:
        return None


def check(raw: bytes) -> decisions.BatchColumns | None:
    """The lean reader's columns, checked against the model's: never accepted alone."""
    assert READ is not None
    lean = READ(raw)
    if lean is not None:
        slow = pydantic_columns(raw)
        assert slow is not None, f"the lean reader accepted what the model refuses: {raw!r}"
        assert same(lean, slow), (lean, slow)
    return lean


@pytest.mark.parametrize(
    "raw",
    [
        body(item()),
        body(),
        body(item(), item(customer_id="c2", event_id="e-1", deferred=True)),
        body(item(mask=[True, False, True]), item(), item(mask=["bundle@sms"])),
        body(item(mask=["bundle@sms", "bundle@sms", "no_contact"])),  # repeats are allowed
        body(item(features={"x y": 1, "recency": 2, "segment=new": 3})),  # any key order
        body(item(features={**ROW, "recency": 1e9}), item(features={**ROW, "recency": -1e9})),
        body(item(features={**ROW, "recency": -0.0}), item(features={**ROW, "recency": 5e-324})),
        body(item(customer_id="é" * 256, event_id="ü" * 128)),
        body(item(event_id=None, mask=None, deferred=False)),
        b' {"decisions": [{"customer_id": "c", "customer_id": "d", "features": '
        b'{"recency": 1, "segment=new": 2, "x y": 3, "x y": 4}}]}\n',  # the last key wins
    ],
)
def test_common_bodies_are_read_as_the_model_reads_them(raw):
    columns = check(raw)
    assert columns is not None
    assert columns.features.shape == (len(json.loads(raw)["decisions"]), len(FEATURES))


def test_features_come_in_the_policy_order():
    columns = check(body(item(features={"x y": 1, "recency": 2, "segment=new": 3})))
    assert columns is not None
    np.testing.assert_array_equal(columns.features, [[2.0, 3.0, 1.0]])
    assert columns.masks is None
    with_mask = check(body(item(), item(mask=["no_contact"])))
    assert with_mask is not None and with_mask.masks == [None, ["no_contact"]]


@pytest.mark.parametrize(
    ("raw", "model_accepts"),
    [
        (body(item(features={**ROW, "recency": True})), False),  # true is not a number
        (body(item(features={**ROW, "recency": "1.5"})), False),
        (body(item(features={**ROW, "recency": None})), False),
        (body(item(features={**ROW, "recency": 1e9 + 1})), False),
        (body(item(features={**ROW, "recency": 10**30})), False),
        (body(item(features={**ROW, "recency": float("nan")})), False),  # NaN, not JSON
        (body(item(features={**ROW, "recency": float("inf")})), False),
        (body(item()).replace(b"1.5", b"1e400"), False),
        (body(item(features={"recency": 1, "segment=new": 2})), False),  # missing
        (body(item(features={**ROW, "other": 1})), False),  # unknown feature
        (body(item(extra=1)), False),
        (json.dumps({"decisions": [item()], "x": 1}).encode(), False),
        (body(*[item()] * 5), False),  # over max_batch
        (body(item(customer_id="")), False),
        (body(item(customer_id="c" * 257)), False),
        (body(item(customer_id=5)), False),
        (body(item(customer_id="c\n")), False),
        (body(item(customer_id="c\u00a0")), True),  # printable to the model, not to isprintable
        (body(item(event_id="")), False),
        (body(item(event_id="e" * 129)), False),
        (body(item(deferred=None)), False),
        (body(item(deferred=1)), False),
        (body(item(mask=[])), False),
        (body(item(mask=[True, False])), False),
        (body(item(mask=[True, "no_contact"])), False),
        (body(item(mask=["nope"])), False),
        (body(item(mask=["no_contact"] * 4)), False),
        (body(item(mask=[1, 0, 1])), False),
        (b'{"decisions": [{"customer_id": "c\\ud800", "features": {}}]}', False),
        (b"\xef\xbb\xbf" + body(item()), False),
        (body(item()) + b" x", False),
        (body(item()).replace(b"c1", b"c\xff"), False),
        (b"[]", False),
        (b"", False),
        (b'{"decisions": {}}', False),
    ],
)
def test_other_bodies_are_left_to_the_model(raw, model_accepts):
    assert READ is not None
    assert READ(raw) is None
    assert (pydantic_columns(raw) is not None) == model_accepts


# Numbers as JSON text: shortest floats, many-digit decimals (rounding), ints, exponents.
_digits = st.text("0123456789", min_size=1, max_size=30)
_numbers = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.integers(-(10**12), 10**12).map(str),
    st.builds(
        lambda sign, whole, frac, exp: f"{sign}{whole.lstrip('0') or '0'}.{frac}e{exp}",
        st.sampled_from(["", "-"]),
        _digits,
        _digits,
        st.integers(-330, 12),
    ),
    st.builds(
        lambda bits: repr(struct.unpack("<d", struct.pack("<Q", bits))[0]),
        st.integers(0, 2**64 - 1),
    ).filter(lambda text: text not in ("nan", "inf", "-inf")),
    st.sampled_from(["true", "false", "null", '"1"', "1e400", "-0", "-0.0", "[]", "{}"]),
)
_text = st.text(max_size=6) | st.sampled_from(["c1", "", "c\u00a0", "c\x7f", "é"])


def _item_text(draw: Any) -> str:
    names = draw(st.permutations(FEATURES))
    keep = draw(st.integers(len(FEATURES) - 1, len(FEATURES)))
    feats = ",".join(f"{json.dumps(n)}:{draw(_numbers)}" for n in names[:keep])
    parts = [f'"customer_id":{json.dumps(draw(_text))}', f'"features":{{{feats}}}']
    if draw(st.booleans()):
        parts.append(f'"event_id":{json.dumps(draw(st.none() | _text))}')
    if draw(st.booleans()):
        parts.append(f'"deferred":{draw(st.sampled_from(["true", "false", "null", "0"]))}')
    if draw(st.booleans()):
        mask = draw(
            st.none()
            | st.lists(st.booleans(), max_size=4)
            | st.lists(st.sampled_from([*ACTIONS, "x"]), max_size=4)
        )
        parts.append(f'"mask":{json.dumps(mask)}')
    return "{" + ",".join(draw(st.permutations(parts))) + "}"


@st.composite
def _bodies(draw: Any) -> bytes:
    items = [_item_text(draw) for _ in range(draw(st.integers(0, 5)))]
    return ('{"decisions":[' + ",".join(items) + "]}").encode()


@settings(max_examples=400, deadline=None, derandomize=True)
@given(raw=_bodies())
def test_fuzz_what_the_lean_reader_accepts_the_model_accepts_alike(raw):
    check(raw)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(numbers=st.lists(_numbers, min_size=3, max_size=3))
def test_fuzz_numbers_are_read_bit_for_bit_as_the_model_reads_them(numbers):
    feats = ",".join(f"{json.dumps(n)}:{v}" for n, v in zip(FEATURES, numbers, strict=True))
    check(f'{{"decisions":[{{"customer_id":"c","features":{{{feats}}}}}]}}'.encode())


@pytest.fixture
def counted(monkeypatch, tmp_path: Path) -> tuple[TestClient, list[int]]:
    """An app whose lean reader counts the bodies it accepted."""
    from campaignrl.policies import ConstantPolicy, Exploration, save_policy

    policy = ConstantPolicy(
        ("recency", "segment=new"), ACTIONS, np.zeros(3), Exploration("greedy", epsilon=0.3)
    )
    settings_ = ServiceSettings(
        hash_key="hash-key-0123456789abcdef",
        policy_dir=save_policy(policy, tmp_path / "policy"),
        store_url=f"sqlite:///{tmp_path / 'decisions.db'}",
        seed=0,
    )
    accepted = [0]
    make = decisions.lean_batch_reader

    def counting(models: Any) -> Any:
        read = make(models)
        assert read is not None

        def wrapped(raw: bytes) -> Any:
            out = read(raw)
            accepted[0] += out is not None
            return out

        return wrapped

    monkeypatch.setattr(decisions, "lean_batch_reader", counting)
    with TestClient(create_app(settings_)) as client:
        yield client, accepted


def test_the_batch_route_reads_common_bodies_lean_and_answers_them(counted):
    client, accepted = counted
    row = {"recency": 2.5, "segment=new": 1}
    raw = json.dumps(
        {"decisions": [{"customer_id": "c1", "features": row, "event_id": "e1"}] * 2}
    ).encode()
    answer = client.post(
        "/v1/decisions:batch", content=raw, headers={"content-type": "application/json"}
    )
    assert answer.status_code == 200, answer.text
    assert accepted[0] == 1
    first, again = answer.json()["decisions"]
    assert (first["replayed"], again["replayed"]) == (False, True)
    assert first["decision_id"] == again["decision_id"] and first["event_id"] == "e1"
    # A refused body goes the model's way: its 422 names the field.
    bad = raw.replace(b"2.5", b"true")
    refused = client.post(
        "/v1/decisions:batch", content=bad, headers={"content-type": "application/json"}
    )
    assert refused.status_code == 422 and accepted[0] == 1
    assert refused.json()["detail"][0]["loc"] == ["body", "decisions", 0, "features", "recency"]


def test_the_answer_encoded_by_msgspec_is_decision_json():
    from campaignrl.service.records import DecisionRecord

    def record(action: int, name: str, **change: Any) -> DecisionRecord:
        fields: dict[str, Any] = {
            "decision_id": "0" * 32,
            "event_id": None,
            "customer_key": "k" * 64,
            "created_at": 1.0,
            "action": action,
            "action_name": name,
            "propensity": 0.1 + 0.2,
            "probabilities": np.array([0.5, 0.25, 0.25]),
            "features": np.zeros(2),
            "mask": None,
            "policy_version": 3,
            "deferred": False,
            "activated_at": None,
            **change,
        }
        return DecisionRecord(**fields)

    stored = [
        (record(0, "no_contact", propensity=1.0), False),
        (record(2, "bundle@sms", event_id='e "1" \\ é \u2028', deferred=True), True),
        (record(1, "pct10@email", propensity=5e-324), False),
    ]
    batch = decisions._decisions_response(stored, batch=True)
    expected = [decisions.decision_json(r, again) for r, again in stored]
    assert json.loads(batch.body) == {"decisions": expected}
    assert [row["offer"] for row in expected] == [None, "bundle", "pct10"]
    assert json.loads(batch.body)["decisions"][2]["propensity"] == 5e-324
    one = decisions._decisions_response(stored[1:2], batch=False)
    assert json.loads(one.body) == expected[1]
    assert batch.headers["content-type"] == "application/json"


# ------------------------------------------------------------ one customer (POST /v1/decisions)

READ_ONE = decisions.lean_one_reader(MODELS)
MODEL_ONE = TypeAdapter(MODELS.decision_in)


def check_one(raw: bytes) -> decisions.BatchColumns | None:
    """:func:`check` for a single customer's body."""
    assert READ_ONE is not None
    lean = READ_ONE(raw)
    if lean is not None:
        try:
            slow = COLUMNS([MODEL_ONE.validate_json(raw)])
        except ValidationError:
            message = f"the lean reader accepted what the model refuses: {raw!r}"
            raise AssertionError(message) from None
        assert same(lean, slow), (lean, slow)
    return lean


@pytest.mark.parametrize(
    ("one", "accepted"),
    [
        (item(), True),
        (item(event_id="e-1", deferred=True, mask=[True, False, True]), True),
        (item(mask=["bundle@sms"]), True),
        (item(features={"x y": 1, "recency": 2, "segment=new": 3}), True),
        (item(features={**ROW, "recency": True}), False),
        (item(features={**ROW, "recency": 1e9 + 1}), False),
        (item(features={"recency": 1, "segment=new": 2}), False),
        (item(extra=1), False),
        (item(customer_id="c\n"), False),
        (item(mask=["nope"]), False),
        ({"decisions": [item()]}, False),  # a batch body is not one customer's
    ],
)
def test_one_customers_body_is_read_as_the_model_reads_it(one, accepted):
    columns = check_one(json.dumps(one).encode())
    assert (columns is not None) == accepted
    if columns is not None:
        assert columns.features.shape == (1, len(FEATURES))
        assert columns.customer_ids == [one["customer_id"]]


@st.composite
def _one_bodies(draw: Any) -> bytes:
    return _item_text(draw).encode()


@settings(max_examples=300, deadline=None, derandomize=True)
@given(raw=_one_bodies())
def test_fuzz_what_the_one_reader_accepts_the_model_accepts_alike(raw):
    check_one(raw)
