"""The deciding and reward routes answered straight from ASGI, before FastAPI's middleware.

A batch of 100 decisions costs the event loop about 3.5 ms of CPU, and a quarter of it went
to the layers every request crosses before reaching the route: the app's two middlewares,
Starlette's exception and error middlewares, FastAPI's telemetry and exit-stack middlewares,
the router's matching. The event loop is what bounds one worker's decisions per second, so
:class:`DirectRoutes` answers the common case of ``POST /v1/decisions``,
``/v1/decisions:batch``, ``/v1/rewards`` and ``/v1/rewards:batch`` itself: a JSON body within
the size limit, with the right API key, that the route's fast path accepts
(:class:`~campaignrl.service.routers.decisions.FastPath`).
The answer is the one the route gives (the same function makes it), timed and counted in
``/metrics`` the same way.

Anything else goes to the full app unchanged, with the body read so far handed back to it
message by message: a missing or wrong content type or length, a body over the limit, a
missing or wrong API key, a runtime not running yet, a body the fast path does not accept
(for the model's 422 naming the field). An exception the app has a handler for (a decision
input refused by the policy: 422; an unknown decision id: 404) gets that handler's answer;
any other is raised to uvicorn, which logs it and answers 500, as the app's error middleware
did.
"""

from __future__ import annotations

import hmac
import inspect
import time
from collections.abc import Callable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from campaignrl.service.metrics import ServiceMetrics
from campaignrl.service.routers.decisions import FastPath
from campaignrl.service.settings import ServiceSettings

__all__ = ["DirectRoutes"]

Handler = Callable[[Request, Any], Any]
Handlers = Mapping[Any, Handler]


class DirectRoutes:
    """Answer the fast paths' routes from ASGI, or hand the request to the full app.

    Args:
        paths: The fast paths, by URL path (``POST`` only).
        settings: The service's settings (body limit, API key).
        metrics: Where answers are timed and counted (as :class:`MetricsMiddleware` does).
        state: The app's state: ``state.runtime`` is the runtime once the lifespan opened it.
        handlers: The app's exception handlers, by exception class.
    """

    def __init__(
        self,
        paths: Mapping[str, FastPath],
        *,
        settings: ServiceSettings,
        metrics: ServiceMetrics,
        state: Any,
        handlers: Handlers,
    ) -> None:
        self.paths = dict(paths)
        self.limit = settings.max_body_bytes
        key = settings.secret("api_key")
        self.api_key: bytes | None = key
        self.metrics = metrics
        self.state = state
        self.handlers = handlers

    def _checked_headers(self, scope: Scope) -> bool:
        """Whether the headers are those of the common case (else the full app judges)."""
        content_type = length = key = None
        lengths = 0
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value if content_type is None else content_type
            elif name == b"content-length":
                length, lengths = value, lengths + 1
            elif name == b"x-api-key":
                key = value if key is None else key
        if content_type != b"application/json" or lengths != 1 or length is None:
            return False
        if not length.isdigit() or len(length) > 18 or int(length) > self.limit:
            return False
        if self.api_key is not None and not (key and hmac.compare_digest(key, self.api_key)):
            return False
        return True

    async def __call__(self, scope: Scope, receive: Receive, send: Send, app: ASGIApp) -> None:
        """Answer ``scope`` (a ``POST`` to one of :attr:`paths`), or let ``app`` answer it."""
        started = time.perf_counter()
        fast = self.paths[scope["path"]]
        runtime = getattr(self.state, "runtime", None)
        if runtime is None or not self._checked_headers(scope):
            await app(scope, receive, send)
            return
        received: list[Message] = []
        body = b""
        while True:
            message = await receive()
            received.append(message)
            if message["type"] != "http.request":  # the client left mid-body
                break
            body += message.get("body", b"")
            if len(body) > self.limit or not message.get("more_body", False):
                break
        if message["type"] != "http.request" or len(body) > self.limit:
            await app(scope, _replay(received, receive), send)
            return
        parsed = fast.parse(body)
        if parsed is None:
            await app(scope, _replay(received, receive), send)
            return
        status = 500
        try:
            try:
                response = await fast.answer(parsed, runtime)
            except Exception as error:
                handler = _handler(self.handlers, error)
                if handler is None:
                    raise
                response = handler(Request(scope, receive), error)
                if inspect.isawaitable(response):  # Starlette takes plain functions too
                    response = await response
            status = response.status_code
            await response(scope, receive, send)
        finally:
            self.metrics.observe_request(
                scope["path"], "POST", status, time.perf_counter() - started
            )


def _handler(handlers: Handlers, error: Exception) -> Handler | None:
    """The app's handler of ``error``'s class or its nearest base, as Starlette looks it up."""
    for cls in type(error).__mro__:
        if cls in handlers:
            return handlers[cls]
    return None


def _replay(received: list[Message], receive: Receive) -> Receive:
    """``receive`` that first gives back the messages already read, in order."""
    pending = list(received)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay
