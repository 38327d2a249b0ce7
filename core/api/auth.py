"""Who may call and how much they may send: the API key, the body cap, and the queue session of a client."""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Callable

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core import secrets
from core.api.errors import Failure, Render, render_error
from core.settings import Settings

API_KEY_ENV = "STUDIO_API_KEY"
OPEN_PATHS = frozenset({"/health"})  # everything else needs the key when one is set


def client_session(request: Request) -> str:
    """The queue session of an API client: its address, so one client cannot fill the queue. (Not
    the key: every client holds the same one. Not X-Forwarded-For: anyone can send that; uvicorn
    already applies it for trusted proxies.)"""
    return f"api:{request.client.host if request.client else 'unknown'}"


def presented_key(header: str | None) -> str | None:
    """The key a client presents: `Bearer <key>`, or HTTP Basic with the key as the password (what
    AUTOMATIC1111 clients send for `--api-auth`; the user name is not checked)."""
    if not header:
        return None
    scheme, _, credentials = header.partition(" ")
    credentials = credentials.strip()
    if scheme.lower() == "bearer":
        return credentials or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            return None
        _user, colon, password = decoded.partition(":")
        return password or None if colon else None
    return None


def _route_path(scope: Scope) -> str:
    path, root = scope["path"], scope.get("root_path", "")
    return path[len(root) :] or "/" if root and path.startswith(root) else path


async def _send_error(send: Send, render: Render, failure: Failure) -> None:
    response = render(failure)
    await send({"type": "http.response.start", "status": response.status_code, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})


class RequireKey:
    """With `STUDIO_API_KEY` set, every route but the open ones needs the key: `Authorization:
    Bearer <key>`, or HTTP Basic with the key as the password.

    The key is read on every request (a rotated key applies at once) and compared in constant
    time; it is never logged or echoed. Refusals are rendered in the surface's own error shape.
    While a secrets file that may hold the key is unreadable, every route but the open ones answers
    503 (fail closed).
    """

    def __init__(
        self,
        app: ASGIApp,
        render: Render = render_error,
        is_open: Callable[[str], bool] = OPEN_PATHS.__contains__,
        scheme: str = "Bearer",
    ):
        self.app = app
        self.render = render
        self.is_open = is_open
        self.scheme = scheme  # what WWW-Authenticate asks for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        open_path = scope["type"] != "http" or self.is_open(_route_path(scope))
        problem = secrets.unreadable()
        if problem is not None and not open_path:
            message = f"the API is off until the operator fixes this: {problem}"
            await _send_error(send, self.render, Failure(503, "misconfigured", message))
            return
        key_setting = Settings.from_env().api_key  # on every request: a key exported from secrets counts at once
        expected = "" if key_setting is None else key_setting.get_secret_value()
        if open_path or not expected:
            await self.app(scope, receive, send)
            return
        header = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
        key = presented_key(header)
        if key is None:
            message = (
                "this API needs a key: send 'Authorization: Bearer <key>' (or HTTP Basic with the key as password)"
            )
        elif not hmac.compare_digest(key.encode("utf-8", "replace"), expected.encode("utf-8")):
            message = "the API key is wrong"
        else:
            await self.app(scope, receive, send)
            return
        await _send_error(send, self.render, Failure(401, "unauthorized", message, {"WWW-Authenticate": self.scheme}))


class BodyLimit:
    """Refuses bodies over `max_bytes` with 413 before reading them: by Content-Length at once,
    and by counting the bytes of a streamed (chunked) body as they arrive. The body is read here
    in full (the JSON parser needs all of it anyway) and handed to the app unchanged."""

    def __init__(self, app: ASGIApp, max_bytes: int, render: Render = render_error):
        self.app = app
        self.max_bytes = max_bytes
        self.render = render

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = f"the request body is over the {self._limit_text()} limit (STUDIO_MAX_BODY_MB)"
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await _send_error(
                    send, self.render, Failure(400, "invalid_request", "the Content-Length header is not a number")
                )
                return
            if int(declared) > self.max_bytes:
                await _send_error(send, self.render, Failure(413, "body_too_large", too_large))
                return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left; nobody to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _send_error(send, self.render, Failure(413, "body_too_large", too_large))
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(b"".join(chunks), receive), send)

    def _limit_text(self) -> str:
        megabytes = self.max_bytes / (1024 * 1024)
        return f"{megabytes:g} MB" if megabytes >= 1 else f"{self.max_bytes} bytes"


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: the client's disconnect, as usual

    return replayed
