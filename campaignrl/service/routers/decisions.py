"""``POST /v1/decisions``, ``/v1/decisions:batch`` and ``/v1/decisions/{id}/activate``.

The handlers are plain ``def``: FastAPI runs them in its thread pool, so a store commit never
blocks the event loop. A decision is answered only after the store committed it.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path

from campaignrl.service.records import DecisionRecord
from campaignrl.service.routers.deps import Runtime, annotate, require_api_key
from campaignrl.service.routers.models import (
    DECISION_ID_PATTERN,
    ApiModels,
    DecisionBatchOut,
    DecisionOut,
    ErrorOut,
    ValidationErrorOut,
)
from campaignrl.service.runtime import DecisionRequest

__all__ = ["build_router", "decision_out"]

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


def _request(item: Any, models: ApiModels) -> DecisionRequest:
    return DecisionRequest(
        customer_id=item.customer_id,
        features=item.features.model_dump(by_alias=True),
        event_id=item.event_id,
        deferred=item.deferred,
        mask=item.mask,
    )


def build_router(models: ApiModels) -> APIRouter:
    """The decisions router for the policy the models were built for."""
    router = APIRouter(tags=["decisions"], dependencies=[Depends(require_api_key)])
    decision_in = models.decision_in
    batch_in = models.decision_batch_in

    # The batch route comes first: ``/v1/decisions:batch`` is a path of its own.
    @router.post(
        "/v1/decisions:batch",
        response_model=DecisionBatchOut,
        responses=_ERRORS,
        summary=f"Decide for up to {models.max_batch} customers",
    )
    @annotate(body=batch_in)
    def decide_batch(
        body: Any,
        runtime: Runtime,
    ) -> DecisionBatchOut:
        """Every decision is drawn, logged with its propensity and committed together."""
        requests = [_request(item, models) for item in body.decisions]
        stored = runtime.decide(requests, endpoint="batch")
        return DecisionBatchOut(decisions=[decision_out(r, replayed) for r, replayed in stored])

    @router.post(
        "/v1/decisions",
        response_model=DecisionOut,
        responses=_ERRORS,
        summary="Decide for one customer",
    )
    @annotate(body=decision_in)
    def decide(
        body: Any,
        runtime: Runtime,
    ) -> DecisionOut:
        """Draw an action (exploring on every call), log it with its propensity, commit.

        The same ``event_id`` again returns the first decision and logs nothing new.
        """
        ((record, replayed),) = runtime.decide([_request(body, models)], endpoint="single")
        return decision_out(record, replayed)

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
        decision_id: Annotated[str, Path(pattern=DECISION_ID_PATTERN, description="uuid4 hex")],
        runtime: Runtime,
    ) -> DecisionOut:
        """A deferred decision counts for learning and OPE from now on (idempotent)."""
        return decision_out(runtime.activate(decision_id))

    return router
