"""Shared needs of the routes, as dependencies: the settings, the runtime, the auth checks.

Tests replace :func:`get_settings` or :func:`get_runtime` with ``app.dependency_overrides``.
Secrets are compared with :func:`hmac.compare_digest` on bytes (constant time; a header with
non-ASCII characters is compared, not crashed on: ``compare_digest`` refuses non-ASCII
``str``). Missing credentials are a 401, wrong ones a 403.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from campaignrl.service.runtime import ServiceRuntime
from campaignrl.service.settings import ServiceSettings

__all__ = [
    "Runtime",
    "Settings",
    "annotate",
    "get_runtime",
    "get_settings",
    "require_admin",
    "require_api_key",
]

F = TypeVar("F", bound=Callable[..., Any])


def annotate(**types: Any) -> Callable[[F], F]:
    """Give a route's parameters types built at run time (the policy's request models).

    With ``from __future__ import annotations`` FastAPI resolves annotations by name in the
    module, where a model built inside a function is not found: this puts the classes
    themselves in ``__annotations__``.
    """

    def decorate(func: F) -> F:
        func.__annotations__.update(types)
        return func

    return decorate


_api_key_header = APIKeyHeader(
    name="X-API-Key",
    scheme_name="ApiKey",
    description="needed by decision, reward and policy-reading endpoints when an API key is "
    "configured (CAMPAIGNRL_API_KEY)",
    auto_error=False,
)
_bearer = HTTPBearer(
    scheme_name="AdminToken",
    description="the admin token (CAMPAIGNRL_ADMIN_TOKEN), for PUT /v1/policy and rollback",
    auto_error=False,
)


def get_settings(request: Request) -> ServiceSettings:
    """The app's settings."""
    settings: ServiceSettings = request.app.state.settings
    return settings


def get_runtime(request: Request) -> ServiceRuntime:
    """The app's runtime (opened by the lifespan).

    Raises:
        HTTPException: 503 while the service is starting or stopping.
    """
    runtime: ServiceRuntime | None = getattr(request.app.state, "runtime", None)
    if runtime is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the service is not running")
    return runtime


Runtime = Annotated[ServiceRuntime, Depends(get_runtime)]
"""a route parameter that receives the runtime"""
Settings = Annotated[ServiceSettings, Depends(get_settings)]
"""a route parameter that receives the settings"""


def _same(given: str, expected: bytes) -> bool:
    # Starlette decodes header bytes as latin-1: encoding back gives the bytes sent.
    return hmac.compare_digest(given.encode("latin-1", errors="replace"), expected)


def require_api_key(
    api_key: Annotated[str | None, Depends(_api_key_header)],
    settings: Settings,
) -> None:
    """Check ``X-API-Key`` when an API key is configured.

    Raises:
        HTTPException: 401 without the header, 403 with a wrong key.
    """
    expected = settings.secret("api_key")
    if expected is None:
        return
    if not api_key:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing X-API-Key header",
            headers={"WWW-Authenticate": 'ApiKey header="X-API-Key"'},
        )
    if not _same(api_key, expected):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "wrong X-API-Key")


def require_admin(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    settings: Settings,
) -> None:
    """Check ``Authorization: Bearer <admin token>``.

    Raises:
        HTTPException: 403 when no admin token is configured (admin endpoints are off), 401
            without a bearer token, 403 with a wrong one.
    """
    expected = settings.secret("admin_token")
    if expected is None:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "admin endpoints are disabled: no admin token is configured (CAMPAIGNRL_ADMIN_TOKEN)",
        )
    if credentials is None or not credentials.credentials:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing admin token: send Authorization: Bearer <token>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not _same(credentials.credentials, expected):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "wrong admin token")
