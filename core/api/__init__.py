"""The HTTP APIs: the pages' queue, model pool and result cache, over HTTP, in three dialects.

`streamlit run Home.py` serves them from the same process as the pages (Home.py passes
`api_routes()` to `st.App`), so a request made through any of them and the same request made on a
page share one job queue, one model pool and one result store: `core.services` holds them.

- `/api/v1`: our own REST API (`routes`, `schemas`).
- `/sdapi/v1`: AUTOMATIC1111's API, for the tools that speak it (`a1111_routes`, `a1111_shapes`).
- `/v1/images`: OpenAI's images API, for apps on the `openai` SDK (`openai_routes`, `openai_shapes`).

Handlers never run inference: they validate, enqueue on the shared queue and await the job with
the blocking wait in a worker thread (`runs`). Every failure is one `errors.Failure` (status, code,
one-line message), rendered in each surface's own error shape; details of unexpected failures go to
the server log only. `auth` holds the key check (Bearer, or Basic with the key as password), the
body cap and who a client is.
"""

import logging
from collections.abc import Callable

from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from core.api.a1111_routes import PING_PATH, SDAPI_PREFIX, create_sdapi, ping
from core.api.errors import INTERNAL_MESSAGE
from core.api.openai_routes import OPENAI_PREFIX, create_openai_images
from core.api.routes import API_PREFIX, create_api

log = logging.getLogger(__name__)
_COULD_NOT_START = {"error": {"code": "internal", "message": INTERNAL_MESSAGE}}


def api_routes() -> list[BaseRoute]:
    """What Home.py passes to `st.App(..., routes=...)`. Costs nothing until the first request:
    Home.py runs this on every page rerun, and only the instances the server mounted ever serve."""
    return [
        Mount(API_PREFIX, app=_BuiltOnFirstRequest(create_api)),
        Mount(SDAPI_PREFIX, app=_BuiltOnFirstRequest(create_sdapi)),
        Route(PING_PATH, ping, methods=["GET"]),
        Mount(OPENAI_PREFIX, app=_BuiltOnFirstRequest(create_openai_images)),
    ]


class _BuiltOnFirstRequest:
    def __init__(self, build: Callable[[], ASGIApp]):
        self._build = build
        self._app: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._app is None:  # no await before this assignment: one event loop builds it once
            try:
                self._app = self._build()
            except Exception:  # a bad setting: every route says so in JSON (the log says which), none in plain text
                log.exception("the API could not start")
                if scope["type"] == "http":
                    await JSONResponse(_COULD_NOT_START, status_code=500)(scope, receive, send)
                return
        await self._app(scope, receive, send)


__all__ = [
    "API_PREFIX",
    "OPENAI_PREFIX",
    "SDAPI_PREFIX",
    "api_routes",
    "create_api",
    "create_openai_images",
    "create_sdapi",
]
