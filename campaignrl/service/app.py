"""The HTTP face of the decision service: a FastAPI app over :class:`ServiceRuntime`.

:func:`create_app` builds an app for a :class:`ServiceSettings` (tests call it directly);
``campaignrl serve --workers N`` has uvicorn import :func:`create_app_from_env` in each worker
(settings from ``CAMPAIGNRL_*`` environment variables). The policy versions are opened (and
``--policy`` proposed, if new) when the app is built, because the request models name the
policy's features; the store, the policy refresh and the online learning start in the
``lifespan`` and stop with it, after uvicorn has drained the requests in flight.

Two small ASGI middlewares sit in front: one refuses bodies over the limit with a 413 (by
``Content-Length`` when sent, and by counting the bytes as they stream in), one times every
request for ``/metrics``; in front of them, the deciding routes' common case is answered
straight from ASGI (:mod:`campaignrl.service.direct`: a quarter less CPU per batch). Known
refusals map to answers here (422 naming the field, 404 for an unknown decision, 409 for a
rollback with nothing to return to); nothing else is caught: hostile input is handled by
correct code, which the fuzz tests check.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, cast

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from campaignrl.service.decider import DecisionInputError
from campaignrl.service.direct import DirectRoutes
from campaignrl.service.metrics import ServiceMetrics
from campaignrl.service.routers import decisions, ops, policy, rewards
from campaignrl.service.routers.models import build_models
from campaignrl.service.runtime import ServiceRuntime, freeze_startup_objects, open_versions
from campaignrl.service.settings import ServiceSettings
from campaignrl.service.store import UnknownDecisionError
from campaignrl.service.uploads import ArchiveRefused
from campaignrl.service.versions import PolicyRefused, PolicyVersions

__all__ = ["SafeJSONResponse", "ServiceApp", "create_app", "create_app_from_env"]

log = logging.getLogger("campaignrl.service")


class SafeJSONResponse(JSONResponse):
    """JSON that always encodes, and is always JSON.

    ASCII with escapes: a lone surrogate echoed from a request (valid in JSON as an escape)
    cannot fail a UTF-8 encoding; and never ``NaN``, which JSON does not have.
    """

    def render(self, content: Any) -> bytes:
        """``content`` as compact ASCII JSON."""
        text = json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
        return text.encode("ascii")


def _error_body(status: int, detail: str) -> bytes:
    return json.dumps({"detail": detail}, ensure_ascii=True).encode("ascii")


async def _send_error(send: Send, status: int, detail: str) -> None:
    body = _error_body(status, detail)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    """Refuse request bodies over a size with a 413, before the app reads them.

    A declared ``Content-Length`` over the limit is refused at once; otherwise the body is
    read here as it streams in (chunked uploads have no length), counted, and refused as soon
    as it passes the limit; a body within it is handed to the app unchanged. ``PUT
    /v1/policy`` has its own, larger limit.
    """

    def __init__(self, app: ASGIApp, *, limit: int, upload_limit: int) -> None:
        self.app = app
        self.limit = limit
        self.upload_limit = upload_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        upload = scope["method"] == "PUT" and scope["path"] == "/v1/policy"
        limit, setting = (
            (self.upload_limit, "max_artifact_bytes") if upload else (self.limit, "max_body_bytes")
        )
        lengths = [v for k, v in scope["headers"] if k.lower() == b"content-length"]
        if lengths:
            text = lengths[0].strip()
            if len(lengths) > 1 or not text.isdigit() or len(text) > 18:
                await _send_error(send, 400, "invalid Content-Length header")
                return
            if int(text) > limit:
                detail = f"request body of {int(text)} bytes is over the {limit}-byte limit"
                await _send_error(send, 413, f"{detail} ({setting})")
                return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left: nothing to answer
            body += message.get("body", b"")
            if len(body) > limit:
                await _send_error(
                    send, 413, f"request body is over the {limit}-byte limit ({setting})"
                )
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class MetricsMiddleware:
    """Time every request and count its status, labelled by route template (never raw ids)."""

    def __init__(
        self, app: ASGIApp, *, metrics: ServiceMetrics, paths: Callable[[], frozenset[str]]
    ) -> None:
        self.app = app
        self.metrics = metrics
        self._paths = paths
        self._known: frozenset[str] | None = None

    @property
    def paths(self) -> frozenset[str]:
        """The app's path templates (read once, after every route was added)."""
        if self._known is None:
            self._known = self._paths()
        return self._known

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None)
            if template is None:  # refused before routing (413), or no such path
                template = scope["path"] if scope["path"] in self.paths else "unmatched"
            self.metrics.observe_request(
                template, scope["method"], status, time.perf_counter() - started
            )


class ServiceApp(FastAPI):
    """FastAPI, with the deciding routes' common case answered before its middleware stack.

    See :mod:`campaignrl.service.direct`. Tests that replace dependencies
    (``dependency_overrides``) always get the full stack.
    """

    direct: DirectRoutes | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection scope."""
        direct = self.direct
        if (
            direct is not None
            and scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"] in direct.paths
            and not self.dependency_overrides
        ):
            await direct(scope, receive, send, super().__call__)
            return
        await super().__call__(scope, receive, send)


def _text(value: Any) -> str:
    return str(value)


def _validation_answer(items: list[dict[str, Any]]) -> SafeJSONResponse:
    return SafeJSONResponse(status_code=422, content={"detail": items})


def _install_handlers(app: FastAPI) -> None:
    async def validation(request: Request, exc: Exception) -> SafeJSONResponse:
        exc = cast(RequestValidationError, exc)  # registered for this type only
        items = [
            {
                "loc": [p if isinstance(p, int) else _text(p) for p in error.get("loc", ())],
                "msg": _text(error.get("msg", "invalid")),
                "type": _text(error.get("type", "value_error")),
            }
            for error in exc.errors()
        ]
        return _validation_answer(items)

    async def decision_input(request: Request, exc: Exception) -> SafeJSONResponse:
        exc = cast(DecisionInputError, exc)
        loc: list[str | int] = list(exc.loc)
        loc = ["body", "decisions", *loc] if loc and isinstance(loc[0], int) else ["body", *loc]
        return _validation_answer([{"loc": loc, "msg": str(exc), "type": "decision_input"}])

    async def unknown_decision(request: Request, exc: Exception) -> SafeJSONResponse:
        exc = cast(UnknownDecisionError, exc)
        return SafeJSONResponse(status_code=404, content={"detail": exc.message})

    async def refused(request: Request, exc: Exception) -> SafeJSONResponse:
        exc = cast(PolicyRefused, exc)
        return _validation_answer(
            [{"loc": ["body", exc.field], "msg": str(exc), "type": "policy_refused"}]
        )

    async def archive(request: Request, exc: Exception) -> SafeJSONResponse:
        return _validation_answer([{"loc": ["body"], "msg": str(exc), "type": "archive_refused"}])

    async def http_error(request: Request, exc: Exception) -> SafeJSONResponse:
        exc = cast(StarletteHTTPException, exc)
        return SafeJSONResponse(
            status_code=exc.status_code,
            content={"detail": _text(exc.detail)},
            headers=getattr(exc, "headers", None),
        )

    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(DecisionInputError, decision_input)
    app.add_exception_handler(UnknownDecisionError, unknown_decision)
    app.add_exception_handler(PolicyRefused, refused)
    app.add_exception_handler(ArchiveRefused, archive)
    app.add_exception_handler(StarletteHTTPException, http_error)


async def _every(
    seconds: float, step: Callable[[], Any], what: str, on_error: Callable[[], None]
) -> None:
    """Run ``step`` in a worker thread every ``seconds`` until cancelled.

    A failing step is logged and counted and the loop goes on: a background job must never
    stop serving. Cancelling waits for a step under way (no half-published version).
    """
    while True:
        await asyncio.sleep(seconds)
        try:
            await anyio.to_thread.run_sync(step)
        except Exception:
            log.exception("%s failed", what)
            on_error()


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("campaignrl")
    except PackageNotFoundError:  # pragma: no cover - a source tree without an install
        return "0+unknown"


def create_app(
    settings: ServiceSettings,
    *,
    versions: PolicyVersions | None = None,
    clock: Callable[[], float] = time.time,
) -> ServiceApp:
    """The decision service's app for ``settings``.

    Args:
        settings: The settings (see :class:`ServiceSettings`).
        versions: Policy versions already opened (default: :func:`open_versions`).
        clock: Current unix time (a fake one in tests).

    Raises:
        ValueError: If there is no policy to serve or ``--policy`` is refused.
    """
    versions = versions if versions is not None else open_versions(settings)
    served = versions.current.policy
    models = build_models(served.feature_names, served.action_names, max_batch=settings.max_batch)
    metrics = ServiceMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = await run_in_threadpool(
            ServiceRuntime.open, settings, metrics=metrics, versions=versions, clock=clock
        )
        app.state.runtime = runtime
        tasks = [
            asyncio.create_task(
                _every(settings.refresh_seconds, runtime.refresh, "policy refresh", lambda: None)
            )
        ]
        if settings.learn:
            tick = min(1.0, settings.learn_every_seconds)
            tasks.append(
                asyncio.create_task(
                    _every(tick, runtime.learn_step, "online learning", metrics.learn_errors.inc)
                )
            )
        try:
            yield
        finally:
            # uvicorn calls this after the requests in flight have finished.
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            app.state.runtime = None
            await run_in_threadpool(runtime.close)
            log.info("store closed")
            metrics.mark_dead()  # several workers: this one's version sample goes

    app = ServiceApp(
        title="campaignrl decision service",
        version=_package_version(),
        description="Decide in real time with exact propensities, log every decision, join "
        "rewards, learn online. See the campaignrl README.",
        lifespan=lifespan,
        default_response_class=SafeJSONResponse,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    # The versions the runtime serves from (the same object): /healthz names the version.
    app.state.versions = versions
    app.state.runtime = None
    app.state.models = models
    app.include_router(decisions.build_router(models))
    app.include_router(rewards.build_router(settings.max_batch))
    app.include_router(policy.router)
    app.include_router(ops.router)
    _install_handlers(app)
    # Added last = outermost: metrics see every answer, 413s included.
    app.add_middleware(
        BodyLimitMiddleware,
        limit=settings.max_body_bytes,
        upload_limit=settings.max_artifact_bytes,
    )
    app.add_middleware(
        MetricsMiddleware,
        metrics=metrics,
        paths=lambda: _known_paths(app),
    )
    app.direct = DirectRoutes(
        {**decisions.fast_paths(models), **rewards.fast_paths(settings.max_batch)},
        settings=settings,
        metrics=metrics,
        state=app.state,
        handlers=app.exception_handlers,
    )
    return app


def _known_paths(app: FastAPI) -> frozenset[str]:
    """The app's path templates: its API's, and the schema and docs pages FastAPI adds."""
    pages = (app.openapi_url, app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url)
    return frozenset(app.openapi()["paths"]) | {p for p in pages if p}


def create_app_from_env() -> ServiceApp:
    """The app for the settings in ``CAMPAIGNRL_*`` environment variables (uvicorn workers).

    Raises:
        ValueError: Naming each bad setting.
    """
    app = create_app(ServiceSettings.load())
    freeze_startup_objects()  # a serving worker: see the function
    return app
