"""The REST API under /api/v1: the pages' queue, model pool and result cache, over HTTP.

`streamlit run Home.py` serves it from the same process as the pages (Home.py passes
`api_routes()` to `st.App`), so a request made here and the same request made on a page share one
job queue, one model pool and one result store: `core.services` holds them for the process.

Handlers never run inference: they validate, enqueue on the shared queue and await the job with
the blocking wait in a worker thread (a limiter of its own, so waiting clients never take the
threads Streamlit serves its files with). Every failure leaves as `{"error": {"code", "message"}}`
with the matching status; details of unexpected failures go to the server log only.

Modules: `schemas` (request and response bodies), `routes` (the app and its handlers), `errors`
(statuses and error bodies), `auth` (the key, the body cap, who a client is).
"""

from core.api.routes import API_PREFIX, api_routes, create_api

__all__ = ["API_PREFIX", "api_routes", "create_api"]
