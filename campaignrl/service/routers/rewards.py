"""``POST /v1/rewards`` and ``/v1/rewards:batch``: rewards joined later to their decisions.

A reward may carry the outcomes the client observed (``opened``, ``purchased``,
``basket_value``, ``unsubscribed``, ``churned``: any subset), stored with it and echoed. A
reward is stamped with the time it arrives; after its decision's window closed it is
stored flagged late (counted, never learned from). An unknown ``decision_id`` is a 404 and
nothing of the request is stored. Answered only after the store committed. The handlers are
coroutines: the store's read and its (group) commit are awaited, never blocking the loop.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from pydantic import TypeAdapter

from campaignrl.service.records import RewardRecord
from campaignrl.service.routers.decisions import CheckedRuntime, FastPath, json_response
from campaignrl.service.routers.deps import annotate
from campaignrl.service.routers.models import (
    ErrorOut,
    RewardBatchOut,
    RewardIn,
    RewardOut,
    ValidationErrorOut,
    reward_batch_model,
)
from campaignrl.service.runtime import ServiceRuntime

__all__ = ["BATCH_PATH", "ONE_PATH", "build_router", "fast_paths"]

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "the body is not UTF-8 text (FastAPI's answer)"},
    401: {"model": ErrorOut, "description": "X-API-Key missing (when one is configured)"},
    403: {"model": ErrorOut, "description": "wrong X-API-Key"},
    404: {"model": ErrorOut, "description": "unknown decision_id (nothing stored)"},
    413: {"model": ErrorOut, "description": "body larger than max_body_bytes"},
    422: {"model": ValidationErrorOut, "description": "a field is refused (named in `loc`)"},
}


def _out(reward: RewardRecord) -> dict[str, Any]:
    """A :class:`RewardOut` as a plain dict (answered with ``json_response``)."""
    return {
        "decision_id": reward.decision_id,
        "reward": reward.reward,
        "received_at": reward.received_at,
        "late": reward.late,
        "outcomes": None if reward.outcomes is None else dict(reward.outcomes),
    }


BATCH_PATH = "/v1/rewards:batch"
ONE_PATH = "/v1/rewards"


def fast_paths(max_batch: int) -> dict[str, FastPath]:
    """The reward routes' answers to bodies their models accept, by path (``POST`` only).

    The app answers such requests before its middleware stack (:mod:`campaignrl.service.direct`).
    """
    batch_in = reward_batch_model(max_batch)

    async def answer_batch(body: Any, runtime: ServiceRuntime) -> Response:
        pairs = [(r.decision_id, r.reward) for r in body.rewards]
        outcomes = [None if r.outcomes is None else r.outcomes.reported() for r in body.rewards]
        stored = await runtime.record_rewards_async(pairs, outcomes)
        return json_response({"rewards": [_out(r) for r in stored]})

    async def answer_one(body: Any, runtime: ServiceRuntime) -> Response:
        outcomes = None if body.outcomes is None else body.outcomes.reported()
        (stored,) = await runtime.record_rewards_async(
            [(body.decision_id, body.reward)], [outcomes]
        )
        return json_response(_out(stored))

    return {
        BATCH_PATH: FastPath(TypeAdapter(batch_in), _same, answer_batch),
        ONE_PATH: FastPath(TypeAdapter(RewardIn), _same, answer_one),
    }


def _same(body: Any) -> Any:
    return body


def build_router(max_batch: int) -> APIRouter:
    """The rewards router (batches of at most ``max_batch``)."""
    router = APIRouter(tags=["rewards"])
    batch_in = reward_batch_model(max_batch)
    paths = fast_paths(max_batch)
    batch, one = paths[BATCH_PATH], paths[ONE_PATH]

    @router.post(
        BATCH_PATH,
        response_model=RewardBatchOut,
        responses=_ERRORS,
        summary=f"Post up to {max_batch} rewards (all stored, or none)",
    )
    @annotate(body=batch_in)
    async def post_rewards(body: Any, runtime: CheckedRuntime) -> Response:
        """Store every reward of the batch in one commit, or none if an id is unknown."""
        return await batch.answer(body, runtime)

    @router.post(
        ONE_PATH,
        response_model=RewardOut,
        responses=_ERRORS,
        summary="Post one reward",
    )
    async def post_reward(body: RewardIn, runtime: CheckedRuntime) -> Response:
        """Store the reward; ``late`` says whether it missed its decision's window."""
        return await one.answer(body, runtime)

    return router
