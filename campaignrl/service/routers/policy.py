"""``GET /v1/policy``, ``PUT /v1/policy`` (upload an artifact) and ``POST /v1/policy/rollback``.

An upload is the artifact folder as one tar (optionally compressed) or zip archive in the
request body, e.g. ``tar -czf - -C policy . | curl -X PUT --data-binary @- ...``. It is
unpacked with every member checked (:mod:`campaignrl.service.uploads`) into a fresh temporary
folder, then :meth:`PolicyVersions.propose` validates it (checksums, schema, the same features
and actions, the signature when a signing key is configured) and swaps it in with one
reference assignment: requests in flight finish on the old version, the next ones use the new.
A refused artifact is a 422 naming the check, and the old version keeps serving.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, status
from starlette.concurrency import run_in_threadpool

from campaignrl.service.routers.deps import Runtime, Settings, require_admin, require_api_key
from campaignrl.service.routers.models import ErrorOut, PolicyOut, ValidationErrorOut
from campaignrl.service.runtime import ServiceRuntime
from campaignrl.service.uploads import unpack_artifact
from campaignrl.service.versions import PolicyRefused

__all__ = ["ARCHIVE_TYPES", "policy_out", "router"]

ARCHIVE_TYPES = (
    "application/octet-stream",
    "application/gzip",
    "application/x-tar",
    "application/zip",
)
"""content types documented for uploads (the format is read from the bytes, not the header)"""

router = APIRouter(tags=["policy"])

_ADMIN_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "no bearer token"},
    403: {"model": ErrorOut, "description": "wrong token, or admin endpoints disabled"},
}


def policy_out(runtime: ServiceRuntime) -> PolicyOut:
    """The serving version as the API shows it."""
    current = runtime.versions.current
    return PolicyOut(
        version=current.version,
        kind=current.policy.kind,
        history=runtime.versions.history,
        feature_names=list(current.policy.feature_names),
        action_names=list(current.policy.action_names),
        manifest=_json_safe(current.manifest),
    )


def _json_safe(value: Any) -> Any:
    """``value`` with non-finite floats as ``None`` (JSON has no NaN; Python's reader does)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


@router.get(
    "/v1/policy",
    response_model=PolicyOut,
    dependencies=[Depends(require_api_key)],
    responses={
        401: {"model": ErrorOut, "description": "X-API-Key missing (when one is configured)"},
        403: {"model": ErrorOut, "description": "wrong X-API-Key"},
    },
    summary="The policy serving now",
)
def get_policy(runtime: Runtime) -> PolicyOut:
    """Its version, the versions served before it, and its manifest."""
    return policy_out(runtime)


def _install(runtime: ServiceRuntime, data: bytes, limit: int) -> PolicyOut:
    with tempfile.TemporaryDirectory(prefix="campaignrl-upload-") as tmp:
        unpack_artifact(data, tmp, limit=limit)
        try:
            runtime.propose(Path(tmp))
        except PolicyRefused as exc:  # name the upload, not a temporary folder
            raise PolicyRefused(exc.field, str(exc).replace(tmp, "upload")) from None
    return policy_out(runtime)


@router.put(
    "/v1/policy",
    response_model=PolicyOut,
    dependencies=[Depends(require_admin)],
    responses={
        **_ADMIN_ERRORS,
        413: {"model": ErrorOut, "description": "upload larger than max_artifact_bytes"},
        422: {
            "model": ValidationErrorOut,
            "description": "not a safe archive, or the artifact failed a check (old version "
            "keeps serving)",
        },
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "the artifact folder as a tar, tar.gz or zip archive",
            "content": {
                t: {"schema": {"type": "string", "format": "binary"}} for t in ARCHIVE_TYPES
            },
        }
    },
    summary="Upload a policy artifact and serve it",
)
async def put_policy(
    request: Request,
    runtime: Runtime,
    settings: Settings,
) -> PolicyOut:
    """Validate the uploaded artifact and swap it in atomically (admin token)."""
    data = await request.body()
    return await run_in_threadpool(_install, runtime, data, settings.max_artifact_bytes)


@router.post(
    "/v1/policy/rollback",
    response_model=PolicyOut,
    dependencies=[Depends(require_admin)],
    responses={
        **_ADMIN_ERRORS,
        409: {"model": ErrorOut, "description": "no version was served before this one"},
    },
    summary="Serve the previous version again",
)
def rollback(runtime: Runtime) -> PolicyOut:
    """The version served before the current one serves again (admin token)."""
    try:
        runtime.rollback()
    except PolicyRefused as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    return policy_out(runtime)
