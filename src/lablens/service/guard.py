"""The gate every request passes before the application reads a byte of its body.

A pure ASGI middleware (Starlette's ``BaseHTTPMiddleware`` would read bodies through a second stream):

- ``/api/*`` requests (``/api/health`` excepted) must carry a valid API token of an active account, else 401 is
  answered at once, so an anonymous upload is never parsed or spooled;
- a body larger than ``settings.max_request_bytes`` is refused with 413: from its ``Content-Length`` before anything is read, and
  while it streams in when the length is not declared (or is understated);
- every response carries security headers: a Content-Security-Policy without inline script, ``X-Frame-Options:
  DENY``, ``X-Content-Type-Options: nosniff`` and ``Referrer-Policy: no-referrer``.

The signed-in user is handed on in ``request.state.user`` (a :class:`~lablens.service.auth.Principal`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anyio
from fastapi import HTTPException

from lablens.service.auth import Principal
from lablens.service.settings import ServiceSettings

PUBLIC_API = ("/api/health",)
CSP = (
    "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)
SECURITY_HEADERS = [
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]
DOCS = ("/docs", "/redoc")  # FastAPI's API explorer pages load their script from a CDN: no CSP there


class Guard:
    """Authenticate and size-check ``/api`` requests before their bodies are read; add security headers."""

    def __init__(
        self, app: Any, lookup: Callable[[str], Principal | None], settings: ServiceSettings
    ) -> None:
        self.app, self.lookup, self.settings = app, lookup, settings

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = _with_security_headers(send, scope["path"])
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if scope["path"].startswith("/api/") and scope["path"] not in PUBLIC_API:
            auth = headers.get("authorization", "")
            if not auth.lower().startswith("bearer ") or not auth[7:].strip():
                await _reply(send, 401, "an API token is needed: send 'Authorization: Bearer <token>'")
                return
            principal = await anyio.to_thread.run_sync(self.lookup, auth[7:].strip())
            if principal is None:
                await _reply(send, 401, "unknown, revoked or deactivated API token")
                return
            scope.setdefault("state", {})["user"] = principal
        limit = self.settings.max_request_bytes
        declared = headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _reply(send, 413, f"request body of {declared} bytes; the limit is {limit:,} bytes")
            return
        await self.app(scope, _counting(receive, limit), send)


def _counting(receive: Callable, limit: int) -> Callable:
    """``receive`` that refuses (413) once more than ``limit`` body bytes have arrived."""
    total = 0

    async def wrapped() -> dict:
        nonlocal total
        message = await receive()
        if message["type"] == "http.request":
            total += len(message.get("body", b""))
            if total > limit:
                raise HTTPException(413, f"request body over the limit of {limit:,} bytes")
        return message

    return wrapped


def _with_security_headers(send: Callable, path: str) -> Callable:
    async def wrapped(message: dict) -> None:
        if message["type"] == "http.response.start":
            extra = list(SECURITY_HEADERS)
            if not path.startswith(DOCS):
                extra.append((b"content-security-policy", CSP.encode()))
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await send(message)

    return wrapped


async def _reply(send: Callable, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    headers.append((b"connection", b"close"))  # the unread body is not waited for
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
