"""Who may call and how much they may send: the API key, the body cap, and the queue session of a client."""

from __future__ import annotations

import hmac
import json
import os

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

API_KEY_ENV = "STUDIO_API_KEY"
OPEN_PATHS = frozenset({"/health"})  # everything else needs the key when one is set


def client_session(request: Request) -> str:
    """The queue session of an API client: its address, so one client cannot fill the queue. (Not
    the key: every client holds the same one. Not X-Forwarded-For: anyone can send that; uvicorn
    already applies it for trusted proxies.)"""
    return f"api:{request.client.host if request.client else 'unknown'}"


def _bearer_token(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def _route_path(scope: Scope) -> str:
    path, root = scope["path"], scope.get("root_path", "")
    return path[len(root) :] or "/" if root and path.startswith(root) else path


async def _send_error(send: Send, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw_headers += [(name.lower().encode(), value.encode()) for name, value in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


class RequireKey:
    """With `STUDIO_API_KEY` set, every route but /health needs `Authorization: Bearer <key>`.

    The key is read on every request (a rotated key applies at once) and compared in constant
    time; it is never logged or echoed.
    """

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        expected = os.environ.get(API_KEY_ENV, "").strip()
        if scope["type"] != "http" or not expected or _route_path(scope) in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        header = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
        token = _bearer_token(header)
        if token is None:
            message = "this API needs a key: send the header 'Authorization: Bearer <key>'"
        elif not hmac.compare_digest(token.encode("latin-1", "replace"), expected.encode("utf-8")):
            message = "the API key is wrong"
        else:
            await self.app(scope, receive, send)
            return
        await _send_error(send, 401, "unauthorized", message, {"WWW-Authenticate": "Bearer"})


class BodyLimit:
    """Refuses bodies over `max_bytes` with 413 before reading them: by Content-Length at once,
    and by counting the bytes of a streamed (chunked) body as they arrive. The body is read here
    in full (the JSON parser needs all of it anyway) and handed to the app unchanged."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = f"the request body is over the {self._limit_text()} limit (STUDIO_MAX_BODY_MB)"
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await _send_error(send, 400, "invalid_request", "the Content-Length header is not a number")
                return
            if int(declared) > self.max_bytes:
                await _send_error(send, 413, "body_too_large", too_large)
                return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left; nobody to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _send_error(send, 413, "body_too_large", too_large)
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
