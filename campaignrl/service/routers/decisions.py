"""``POST /v1/decisions``, ``/v1/decisions:batch`` and ``/v1/decisions/{id}/activate``.

The deciding handlers are coroutines: the decision is drawn on the event loop (microseconds)
and the commit is awaited (group commit, flushed by the store's writer thread), so a store
commit never blocks the event loop and no request waits for a pool thread. A decision is
answered only after the store committed it.

The two deciding routes take a fast path (:class:`JSONFastRoute`): a JSON body is validated
by pydantic straight from its bytes (``TypeAdapter.validate_json``: half the time of Python's
``json.loads`` then the model's validation) and the answer built by the same function the
route calls. Any body the fast path does not accept goes the ordinary FastAPI way, which
gives the same answer as without the fast path: the 422 naming the field, the 400 of a body
that is not UTF-8, the API key's 401 or 403. The routes declare their models as usual, so the
OpenAPI schema is unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from itertools import chain
from typing import Annotated, Any, NamedTuple

import numpy as np
from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.routing import APIRoute
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
    ApiModels,
    DecisionBatchOut,
    DecisionOut,
    ErrorOut,
    ValidationErrorOut,
)
from campaignrl.service.runtime import ServiceRuntime

__all__ = [
    "CheckedRuntime",
    "FastPath",
    "build_router",
    "checked_runtime",
    "decision_json",
    "decision_out",
    "json_response",
]

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


class FastPath(NamedTuple):
    """A route's fast path: how its JSON body is validated, and the answer to a valid one."""

    adapter: TypeAdapter[Any]
    """validates the raw body (the route's body model)"""
    answer: Callable[[Any, ServiceRuntime], Awaitable[Response]]
    """the route's answer for a validated body (the route itself calls the same function)"""


def _json_fast_route(paths: Mapping[str, FastPath]) -> type[APIRoute]:
    """An :class:`~fastapi.routing.APIRoute` class whose routes named in ``paths`` go fast.

    A request whose ``Content-Type`` is ``application/json`` and whose body ``validate_json``
    accepts is answered directly; anything else (another or no content type, a body refused,
    dependency overrides in place) goes through FastAPI's handler, which reads the same body
    (the request caches it) and answers as it always did.
    """

    class JSONFastRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            slow = super().get_route_handler()
            fast = paths.get(self.name)
            if fast is None:
                return slow
            adapter, answer = fast

            async def handler(request: Request) -> Response:
                if (
                    request.headers.get("content-type") != "application/json"
                    or request.app.dependency_overrides
                ):
                    return await slow(request)
                body = await request.body()
                try:
                    parsed = adapter.validate_json(body)
                except ValidationError:  # FastAPI's own answer: the 422 naming the field
                    return await slow(request)
                # The route's dependency, resolved by hand: the same checks, the same errors.
                runtime = await checked_runtime(request, await _api_key_header(request))
                return await answer(parsed, runtime)

            return handler

    return JSONFastRoute


def _masks(items: Sequence[Any]) -> list[Any] | None:
    masks = [item.mask for item in items]
    return None if all(m is None for m in masks) else masks


def build_router(models: ApiModels) -> APIRouter:
    """The decisions router for the policy the models were built for."""
    decision_in = models.decision_in
    batch_in = models.decision_batch_in
    features = _feature_reader(models)

    async def answer_batch(body: Any, runtime: ServiceRuntime) -> Response:
        items = body.decisions
        stored = await runtime.decide_columns_async(
            [item.customer_id for item in items],
            features(items),
            event_ids=[item.event_id for item in items],
            deferred=[item.deferred for item in items],
            masks=_masks(items),
            endpoint="batch",
        )
        return json_response({"decisions": [decision_json(r, again) for r, again in stored]})

    async def answer_one(body: Any, runtime: ServiceRuntime) -> Response:
        ((record, replayed),) = await runtime.decide_columns_async(
            [body.customer_id],
            features([body]),
            event_ids=[body.event_id],
            deferred=[body.deferred],
            masks=_masks([body]),
            endpoint="single",
        )
        return json_response(decision_json(record, replayed))

    router = APIRouter(
        tags=["decisions"],
        route_class=_json_fast_route(
            {
                "decide_batch": FastPath(TypeAdapter(batch_in), answer_batch),
                "decide": FastPath(TypeAdapter(decision_in), answer_one),
            }
        ),
    )

    # The batch route comes first: ``/v1/decisions:batch`` is a path of its own.
    @router.post(
        "/v1/decisions:batch",
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
        return await answer_batch(body, runtime)

    @router.post(
        "/v1/decisions",
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
        return await answer_one(body, runtime)

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
