"""``POST /v1/decisions``, ``/v1/decisions:batch`` and ``/v1/decisions/{id}/activate``.

The deciding handlers are coroutines: the decision is drawn on the event loop (microseconds)
and the commit is awaited (group commit, flushed by the store's writer thread), so a store
commit never blocks the event loop and no request waits for a pool thread. A decision is
answered only after the store committed it.

The two deciding routes have a fast path (:class:`FastPath`, served by
:mod:`campaignrl.service.direct` before the app's middleware): a JSON body is validated by
pydantic straight from its bytes (``TypeAdapter.validate_json``: half the time of Python's
``json.loads`` then the model's validation) and the answer built by the same function the
route calls. Any body the fast path does not accept goes the ordinary FastAPI way, which
gives the same answer as without the fast path: the 422 naming the field, the 400 of a body
that is not UTF-8, the API key's 401 or 403. The routes declare their models as usual, so the
OpenAPI schema is unchanged.

When msgspec is installed, the two routes go leaner still (:func:`lean_batch_reader`): the
body is decoded by msgspec into structs typed as the request model (strict numbers within
bounds, strict booleans, lengths, unknown keys refused) in C, the features land in one
``(n, d)`` array (half the time of pydantic's validation, for 100 customers of 20 features),
and the answer is encoded from msgspec structs (a quarter of the time of dicts encoded by
pydantic-core): a third less server CPU per batch. It only ever accepts what the request
model accepts, with the same values: anything it does not accept goes the pydantic way
above, so every refusal is still the model's 422 naming the field.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Awaitable, Callable, Sequence
from itertools import chain
from typing import Annotated, Any, Literal, NamedTuple

import numpy as np
from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import TypeAdapter, ValidationError
from pydantic_core import to_json

from campaignrl.service.records import DecisionRecord
from campaignrl.service.routers.deps import (
    _api_key_header,
    annotate,
    get_runtime,
    require_api_key,
)
from campaignrl.service.routers.models import (
    DECISION_ID_PATTERN,
    MAX_ABS_FEATURE,
    MAX_CUSTOMER_ID_CHARS,
    MAX_EVENT_ID_CHARS,
    ApiModels,
    DecisionBatchOut,
    DecisionOut,
    ErrorOut,
    ValidationErrorOut,
)
from campaignrl.service.runtime import ServiceRuntime

__all__ = [
    "BATCH_PATH",
    "ONE_PATH",
    "BatchColumns",
    "CheckedRuntime",
    "FastPath",
    "build_router",
    "checked_runtime",
    "decision_json",
    "decision_out",
    "fast_paths",
    "json_response",
    "lean_batch_reader",
    "lean_one_reader",
]


def _optional(name: str) -> Any:
    """The module ``name``, or ``None`` when it is not installed (an optional accelerator)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


msgspec: Any = _optional("msgspec")
"""msgspec, when installed: decodes and encodes the batch route's common bodies in C"""

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "the body is not UTF-8 text (FastAPI's answer)"},
    401: {"model": ErrorOut, "description": "X-API-Key missing (when one is configured)"},
    403: {"model": ErrorOut, "description": "wrong X-API-Key"},
    413: {"model": ErrorOut, "description": "body larger than max_body_bytes"},
    422: {"model": ValidationErrorOut, "description": "a field is refused (named in `loc`)"},
}


def decision_out(record: DecisionRecord, replayed: bool = False) -> DecisionOut:
    """The API's view of a stored decision."""
    offer, _, channel = record.action_name.partition("@")
    return DecisionOut(
        decision_id=record.decision_id,
        event_id=record.event_id,
        action=record.action_name,
        action_index=record.action,
        offer=offer if channel else None,
        channel=channel or None,
        propensity=record.propensity,
        policy_version=record.policy_version,
        deferred=record.deferred,
        activated=record.activated_at is not None,
        replayed=replayed,
    )


async def checked_runtime(
    request: Request, api_key: Annotated[str | None, Depends(_api_key_header)]
) -> ServiceRuntime:
    """The runtime, once ``X-API-Key`` is checked (when one is configured): one dependency.

    The same checks as the ``require_api_key`` and ``Runtime`` dependencies (it calls them),
    resolved as one coroutine: FastAPI's resolution costs tens of microseconds per
    dependency, and runs a plain ``def`` one in its thread pool, on every request of the
    hottest routes. The OpenAPI schema still shows the API key scheme.

    Raises:
        HTTPException: 401 or 403 for the API key, 503 while the service is not running.
    """
    require_api_key(api_key, request.app.state.settings)
    return get_runtime(request)


CheckedRuntime = Annotated[ServiceRuntime, Depends(checked_runtime)]
"""a route parameter that receives the runtime after the API key check"""


def decision_json(record: DecisionRecord, replayed: bool = False) -> dict[str, Any]:
    """:func:`decision_out` as a plain dict (the same fields), for the fast JSON answers."""
    offer, _, channel = record.action_name.partition("@")
    return {
        "decision_id": record.decision_id,
        "event_id": record.event_id,
        "action": record.action_name,
        "action_index": record.action,
        "offer": offer if channel else None,
        "channel": channel or None,
        "propensity": record.propensity,
        "policy_version": record.policy_version,
        "deferred": record.deferred,
        "activated": record.activated_at is not None,
        "replayed": replayed,
    }


def json_response(content: Any) -> Response:
    """Compact JSON of plain values, never ``NaN``.

    The decision and reward routes answer with it directly: the values come from the
    store's records, already checked, and FastAPI would otherwise validate every answer
    against its model again and encode it with the standard library (most of a batch's
    answer time); the OpenAPI schema still documents the model. Encoded by pydantic-core
    (UTF-8); text it cannot encode (a lone surrogate) falls back to escaped ASCII, as the
    app's ``SafeJSONResponse``.
    """
    try:
        body = to_json(content, inf_nan_mode="strings")
    except (ValueError, UnicodeError):
        body = json.dumps(
            content, ensure_ascii=True, allow_nan=False, separators=(",", ":")
        ).encode("ascii")
    return Response(body, media_type="application/json")


def _feature_reader(models: ApiModels) -> Callable[[Sequence[Any]], np.ndarray]:
    """The checked feature values of requests' ``features`` models: ``(n, d)`` in policy order.

    The model's fields are ``f0 ... f{d-1}`` (the names are aliases), already checked by
    pydantic (finite, bounded, strict numbers): the decider gets them as one array and does
    not look them up by name again. A validated model's ``__dict__`` holds its fields in
    their declared order, whatever the order of the JSON keys, so the values are read as
    they are (twice as fast as by name).
    """
    d = len(models.feature_names)
    if list(models.features.model_fields) != [f"f{i}" for i in range(d)]:  # pragma: no cover
        raise ValueError("the features model must declare f0 ... f{d-1} in order")

    def read(items: Sequence[Any]) -> np.ndarray:
        values = chain.from_iterable(item.features.__dict__.values() for item in items)
        return np.fromiter(values, np.float64, count=len(items) * d).reshape(len(items), d)

    return read


class BatchColumns(NamedTuple):
    """Deciding requests column by column, as the routes hand them to the runtime."""

    customer_ids: list[str]
    features: np.ndarray
    """``(n, d)`` float64 in the policy's feature order"""
    event_ids: list[str | None]
    deferred: list[bool]
    masks: list[Any] | None
    """one mask per row (``None``: all allowed), or ``None`` when no row has one"""


def _columns_reader(models: ApiModels) -> Callable[[Sequence[Any]], BatchColumns]:
    """The :class:`BatchColumns` of validated request models (one per customer)."""
    features = _feature_reader(models)

    def read(items: Sequence[Any]) -> BatchColumns:
        masks = [item.mask for item in items]
        return BatchColumns(
            [item.customer_id for item in items],
            features(items),
            [item.event_id for item in items],
            [item.deferred for item in items],
            None if all(m is None for m in masks) else masks,
        )

    return read


def lean_batch_reader(models: ApiModels) -> Callable[[bytes], BatchColumns | None] | None:
    """A reader of batch bodies decoded by msgspec, or ``None`` when msgspec is not installed.

    See :func:`_lean_reader`.

    Examples:
        >>> from campaignrl.service.routers.models import build_models
        >>> read = lean_batch_reader(build_models(("x",), ("no_contact", "a@email"), max_batch=2))
        >>> ok = b'{"decisions": [{"customer_id": "c", "features": {"x": 1}}]}'
        >>> read is None or read(ok).features.tolist() == [[1.0]]
        True
        >>> read is None or read(ok.replace(b"1", b"true")) is None  # left to pydantic
        True
    """
    return _lean_reader(models, one=False)


def lean_one_reader(models: ApiModels) -> Callable[[bytes], BatchColumns | None] | None:
    """:func:`lean_batch_reader` for the body of ``POST /v1/decisions`` (one customer)."""
    return _lean_reader(models, one=True)


def _lean_reader(models: ApiModels, *, one: bool) -> Callable[[bytes], BatchColumns | None] | None:
    """A reader of deciding bodies decoded by msgspec (``None`` when it is not installed).

    The reader gives the columns of a body the batch model accepts in its common form, and
    ``None`` for any other body, which then goes the pydantic way (whose 422 names the
    field). What it accepts, the model accepts too, with the same values:

    * msgspec's typed decoding checks in C what the strict model checks: the keys (none
      unknown, the required ones present; a repeated key keeps its last value, as in
      pydantic), the types (``true`` is not a number, ``1`` is the float ``1.0``, as in
      pydantic), numbers within ``MAX_ABS_FEATURE`` (``1e400`` is out of range; ``NaN`` is
      not JSON), string lengths and the batch's size; its JSON reader refuses what
      pydantic's does (invalid UTF-8, lone surrogates, trailing characters).
    * ids must be printable (:meth:`str.isprintable`): no control characters, stricter than
      the model (a no-break space is left to pydantic).
    * a mask is ``A`` booleans or 1 to ``A`` action names (each checked by msgspec); a mix
      of both is left to pydantic.

    Args:
        models: The request models of the served policy.
        one: Read one customer's body (``POST /v1/decisions``), else a batch's.
    """
    if msgspec is None:
        return None
    names, actions = models.feature_names, models.action_names
    d, n_a = len(names), len(actions)
    fields = [f"f{i}" for i in range(d)]
    number = Annotated[float, msgspec.Meta(ge=-MAX_ABS_FEATURE, le=MAX_ABS_FEATURE)]
    # gc=False: these structs never hold a cycle, so the cycle collector need not track them.
    features = msgspec.defstruct(
        "Features",
        [(f, number) for f in fields],
        rename=dict(zip(fields, names, strict=True)),
        forbid_unknown_fields=True,
        gc=False,
    )
    customer_id = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_CUSTOMER_ID_CHARS)]
    event_id = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_EVENT_ID_CHARS)]
    action = Literal.__getitem__(tuple(actions))
    item = msgspec.defstruct(
        "DecisionIn",
        [
            ("customer_id", customer_id),
            ("features", features),
            ("event_id", event_id | None, None),
            ("deferred", bool, False),
            ("mask", list[bool | action] | None, None),  # type: ignore[valid-type]
        ],
        forbid_unknown_fields=True,
        gc=False,
    )
    batch = msgspec.defstruct(
        "DecisionBatchIn",
        [("decisions", Annotated[list[item], msgspec.Meta(max_length=models.max_batch)])],  # type: ignore[valid-type]
        forbid_unknown_fields=True,
        gc=False,
    )
    decode = msgspec.json.Decoder(item if one else batch).decode
    astuple = msgspec.structs.astuple
    refused = (msgspec.MsgspecError, ValueError, RecursionError)

    def mask_ok(mask: list[Any] | None) -> bool:
        # The model's union: exactly A booleans, or 1 to A action names.
        if mask is None:
            return True
        kinds = set(map(type, mask))
        return (kinds == {bool} and len(mask) == n_a) or (kinds == {str} and len(mask) <= n_a)

    def read(body: bytes) -> BatchColumns | None:
        try:
            decoded = decode(body)
        except refused:
            return None
        items = [decoded] if one else decoded.decisions
        ids = [i.customer_id for i in items]
        events = [i.event_id for i in items]
        masks = [i.mask for i in items]
        if not all(map(str.isprintable, ids)) or not all(
            e is None or e.isprintable() for e in events
        ):
            return None
        given = masks.count(None) != len(masks)
        if given and not all(map(mask_ok, masks)):
            return None
        # Each struct's fields in declared order: the policy's feature order.
        values = chain.from_iterable(map(astuple, [i.features for i in items]))
        x = np.fromiter(values, np.float64, count=len(items) * d).reshape(len(items), d)
        return BatchColumns(ids, x, events, [i.deferred for i in items], masks if given else None)

    return read


_encode_json: Callable[[Any], bytes] | None = None
_Answer: Any = None
if msgspec is not None:
    _encode_json = msgspec.json.Encoder().encode
    # DecisionOut's fields, in its order: a struct is made and encoded in 40% of the time of
    # a dict.
    _Answer = msgspec.defstruct(
        "DecisionAnswer", [(name, Any) for name in DecisionOut.model_fields], gc=False
    )

_OFFER_CHANNEL: dict[str, tuple[str | None, str | None]] = {}
"""an action's offer and channel (``None`` for no contact), by action name"""


def _offer_channel(action_name: str) -> tuple[str | None, str | None]:
    found = _OFFER_CHANNEL.get(action_name)
    if found is None:
        offer, _, channel = action_name.partition("@")
        found = _OFFER_CHANNEL[action_name] = (offer if channel else None, channel or None)
    return found


def _decisions_response(stored: Sequence[tuple[DecisionRecord, bool]], batch: bool) -> Response:
    """The deciding routes' answer: :func:`decision_json` of each stored decision.

    Encoded by msgspec when installed (the records' values are checked: finite numbers,
    valid Unicode); anything msgspec would not encode goes through :func:`json_response`.
    """
    if _Answer is not None and _encode_json is not None:
        try:
            rows = [
                _Answer(
                    r.decision_id,
                    r.event_id,
                    r.action_name,
                    r.action,
                    *_offer_channel(r.action_name),
                    r.propensity,
                    r.policy_version,
                    r.deferred,
                    r.activated_at is not None,
                    replayed,
                )
                for r, replayed in stored
            ]
            body = _encode_json({"decisions": rows} if batch else rows[0])
            return Response(body, media_type="application/json")
        except (ValueError, TypeError, msgspec.MsgspecError):
            pass
    answers = [decision_json(r, replayed) for r, replayed in stored]
    return json_response({"decisions": answers} if batch else answers[0])


class FastPath(NamedTuple):
    """A route's fast path: how its JSON body is validated, and the answer to a valid one.

    The deciding routes parse bodies into :class:`BatchColumns`; the reward routes keep the
    validated model.
    """

    adapter: TypeAdapter[Any]
    """validates the raw body (the route's body model)"""
    columns: Callable[[Any], Any]
    """what the answer takes, from a body the adapter validated"""
    answer: Callable[[Any, ServiceRuntime], Awaitable[Response]]
    """the route's answer for a valid body (the route itself calls it too)"""
    lean: Callable[[bytes], Any] | None = None
    """what the answer takes straight from the raw body, or ``None`` for the adapter to judge"""

    def parse(self, body: bytes) -> Any | None:
        """What the answer takes, for a body the route accepts; ``None`` for FastAPI to answer."""
        parsed = self.lean(body) if self.lean is not None else None
        if parsed is None:
            try:
                parsed = self.columns(self.adapter.validate_json(body))
            except ValidationError:  # FastAPI's own answer: the 422 naming the field
                return None
        return parsed


BATCH_PATH = "/v1/decisions:batch"
ONE_PATH = "/v1/decisions"


def fast_paths(models: ApiModels) -> dict[str, FastPath]:
    """The fast paths of the two deciding routes, by path (``POST`` only)."""
    columns = _columns_reader(models)

    def batch_columns(body: Any) -> BatchColumns:
        return columns(body.decisions)

    def one_columns(body: Any) -> BatchColumns:
        return columns([body])

    async def decided(
        c: BatchColumns, runtime: ServiceRuntime, endpoint: str
    ) -> list[tuple[DecisionRecord, bool]]:
        return await runtime.decide_columns_async(
            c.customer_ids,
            c.features,
            event_ids=c.event_ids,
            deferred=c.deferred,
            masks=c.masks,
            endpoint=endpoint,
        )

    async def answer_batch(c: BatchColumns, runtime: ServiceRuntime) -> Response:
        return _decisions_response(await decided(c, runtime, "batch"), batch=True)

    async def answer_one(c: BatchColumns, runtime: ServiceRuntime) -> Response:
        stored = await decided(c, runtime, "single")
        if len(stored) != 1:  # pragma: no cover - one customer in, one decision out
            raise RuntimeError(f"one decision expected, got {len(stored)}")
        return _decisions_response(stored, batch=False)

    return {
        BATCH_PATH: FastPath(
            TypeAdapter(models.decision_batch_in),
            batch_columns,
            answer_batch,
            lean_batch_reader(models),
        ),
        ONE_PATH: FastPath(
            TypeAdapter(models.decision_in), one_columns, answer_one, lean_one_reader(models)
        ),
    }


def build_router(models: ApiModels) -> APIRouter:
    """The decisions router for the policy the models were built for."""
    decision_in = models.decision_in
    batch_in = models.decision_batch_in
    paths = fast_paths(models)
    batch, one = paths[BATCH_PATH], paths[ONE_PATH]
    router = APIRouter(tags=["decisions"])

    # The batch route comes first: ``/v1/decisions:batch`` is a path of its own.
    @router.post(
        BATCH_PATH,
        response_model=DecisionBatchOut,
        responses=_ERRORS,
        summary=f"Decide for up to {models.max_batch} customers",
    )
    @annotate(body=batch_in)
    async def decide_batch(
        body: Any,
        runtime: CheckedRuntime,
    ) -> Response:
        """Every decision is drawn, logged with its propensity and committed together."""
        return await batch.answer(batch.columns(body), runtime)

    @router.post(
        ONE_PATH,
        response_model=DecisionOut,
        responses=_ERRORS,
        summary="Decide for one customer",
    )
    @annotate(body=decision_in)
    async def decide(
        body: Any,
        runtime: CheckedRuntime,
    ) -> Response:
        """Draw an action (exploring on every call), log it with its propensity, commit.

        The same ``event_id`` again returns the first decision and logs nothing new.
        """
        return await one.answer(one.columns(body), runtime)

    @router.post(
        "/v1/decisions/{decision_id}/activate",
        response_model=DecisionOut,
        responses={
            **_ERRORS,
            404: {"model": ErrorOut, "description": "no such decision"},
        },
        summary="Activate a deferred decision",
    )
    def activate(
        decision_id: Annotated[
            str, Path(pattern=DECISION_ID_PATTERN, description="32 hex digits (a UUIDv7)")
        ],
        runtime: CheckedRuntime,
    ) -> DecisionOut:
        """A deferred decision counts for learning and OPE from now on (idempotent)."""
        return decision_out(runtime.activate(decision_id))

    return router
