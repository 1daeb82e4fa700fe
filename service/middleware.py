"""Pure ASGI middleware: metrics, the body size limit, ``Allow``, security headers; a log filter.

Written against raw ASGI rather than ``BaseHTTPMiddleware`` because that wrapper costs a task and a
queue per request, which shows at the latency this service aims for.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote, unquote_plus

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.routing import BaseRoute, Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Buckets (seconds) dense where the service aims to be: single products in 5-50 ms.
_BUCKETS = (0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The service's metrics in their own registry (several apps can live in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "tagindex_http_requests",
            "HTTP requests answered, by method, route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "tagindex_http_request_duration_seconds",
            "Time from request start to the last response byte, by method and route template",
            ["method", "route"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.products = Counter(
            "tagindex_products_tagged", "Products tagged through /v1/tag", registry=self.registry
        )
        self.feedback = Counter(
            "tagindex_feedback", "Feedback judgements stored, by action", ["action"], registry=self.registry
        )
        self.tags = Gauge("tagindex_tags", "Tags in the served index", registry=self.registry)


class MetricsMiddleware:
    """Counts every HTTP request and times it, labelled by route template (bounded cardinality)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # if the app dies before answering

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope["method"]
            self.metrics.requests.labels(method, template, str(status)).inc()
            self.metrics.latency.labels(method, template).observe(time.perf_counter() - start)


class BodyLimitMiddleware:
    """Answers 413 as soon as the body bytes actually received pass ``max_bytes``.

    The count is of what arrives, whatever the headers say: a small Content-Length beside
    ``Transfer-Encoding: chunked`` (which overrides it) cannot smuggle a large body in. A declared
    Content-Length over the limit is refused before reading anything. The body (at most ``max_bytes``)
    is buffered and handed to the app as one message.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                await _reply(send, 400, "Content-Length is not a number")
                return
            if length > self.max_bytes:
                await _reply(
                    send, 413, f"request body of {length} bytes exceeds the limit of {self.max_bytes} bytes"
                )
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _reply(send, 413, f"request body exceeds the limit of {self.max_bytes} bytes")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class AllowMiddleware:
    """``OPTIONS`` answers 204 with every method the path allows; a 405 gets the same ``Allow``.

    Starlette lists only the methods of the first route whose path matches, so a path served by two
    routes (``GET`` and ``DELETE /v1/tags/{id}``) would advertise one of them.
    """

    def __init__(self, app: ASGIApp, routes: Callable[[], Sequence[BaseRoute]]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS":
            allowed = self._allowed(scope)
            if allowed:
                await send(
                    {
                        "type": "http.response.start",
                        "status": 204,
                        "headers": [(b"allow", allowed.encode())],
                    }
                )
                await send({"type": "http.response.body", "body": b""})
                return

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 405:
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"]
                message = {**message, "headers": [*headers, (b"allow", self._allowed(scope).encode())]}
            await send(message)

        await self.app(scope, receive, send_wrapper)

    def _allowed(self, scope: Scope) -> str:
        # Probe each method for a full match: routers may nest routes (FastAPI's included routers
        # answer for their first matching child only), so the route list cannot simply be read.
        methods: set[str] = set()
        routes = self.routes()
        for method in _METHODS:
            probe = {**scope, "method": method}
            for route in routes:
                if isinstance(route, Mount) and method != "GET":
                    continue  # mounts here serve static files: GET and HEAD only
                if route.matches(probe)[0] is Match.FULL:
                    methods.add(method)
                    break
        if "GET" in methods:
            methods.add("HEAD")
        return ", ".join(sorted(methods | {"OPTIONS"})) if methods else ""


_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


class SecurityHeadersMiddleware:
    """Adds a Content-Security-Policy, ``X-Frame-Options: DENY`` and ``nosniff`` to every answer.

    The page and its assets load only from this origin and cannot be framed (clickjacking); Swagger UI
    (``/docs``) also needs inline styles and ``data:`` images.
    """

    PAGE_CSP = (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
    DOCS_CSP = (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "connect-src 'self'; worker-src 'self' blob:; object-src 'none'; base-uri 'none'; "
        "frame-ancestors 'none'"
    )

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        csp = self.DOCS_CSP if path == "/docs" or path.startswith("/docs-assets/") else self.PAGE_CSP
        extra = [
            (b"content-security-policy", csp.encode()),
            (b"x-frame-options", b"DENY"),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
        ]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                added = [(k, v) for k, v in extra if k not in present]
                message = {**message, "headers": [*message.get("headers", []), *added]}
            await send(message)

        await self.app(scope, receive, send_wrapper)


class RedactSecretsFilter(logging.Filter):
    """Blanks secrets in log records: query parameters named like a key, token or password (in
    uvicorn's access log line, which holds the path with its query string), and the given values."""

    _SECRET_NAME = re.compile(r"key|token|secret|passw|auth|session|signature", re.IGNORECASE)

    def __init__(self, secrets: Sequence[str] = ()) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self.redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.msg, str):
            record.msg = self.redact(record.msg)
        return True

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "[redacted]").replace(quote(secret, safe=""), "[redacted]")
        path, sep, query = text.partition("?")
        if not sep:
            return text
        params = []
        for param in re.split(r"([&;])", query):
            name, eq, _ = param.partition("=")
            is_secret = bool(eq) and self._SECRET_NAME.search(unquote_plus(name)) is not None
            params.append(f"{name}=[redacted]" if is_secret else param)
        return path + sep + "".join(params)


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value)
    return None


async def _reply(send: Send, status: int, detail: Any) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
