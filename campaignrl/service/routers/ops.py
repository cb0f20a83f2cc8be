"""``GET /healthz`` (alive), ``/readyz`` (store answers, a policy serves) and ``/metrics``."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from campaignrl.service.metrics import ServiceMetrics
from campaignrl.service.routers.models import HealthOut
from campaignrl.service.runtime import ServiceRuntime
from campaignrl.service.versions import PolicyVersions

__all__ = ["router"]

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=HealthOut, summary="Liveness")
def healthz(request: Request) -> HealthOut:
    """The process answers, with the policy version it serves (the one ``/readyz`` names).

    Liveness never touches the store: the version is this process's, held in memory.
    """
    versions: PolicyVersions | None = getattr(request.app.state, "versions", None)
    version = None if versions is None or versions.empty else versions.current.version
    return HealthOut(status="ok", policy_version=version)


@router.get(
    "/readyz",
    response_model=HealthOut,
    responses={503: {"model": HealthOut, "description": "not ready (the reason in status)"}},
    summary="Readiness",
)
def readyz(request: Request, response: Response) -> HealthOut:
    """Ready when the store answers a query and a policy version serves."""
    runtime: ServiceRuntime | None = getattr(request.app.state, "runtime", None)
    if runtime is None:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return HealthOut(status="starting or stopping")
    ready, reason = runtime.ready()
    if not ready:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return HealthOut(status=reason, policy_version=runtime.versions.current.version)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    summary="Prometheus metrics",
)
def metrics(request: Request) -> Response:
    """Counters, the latency histogram, the policy version, the store's figures."""
    registry: ServiceMetrics = request.app.state.metrics
    return Response(registry.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
