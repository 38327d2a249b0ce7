"""Who a queue session's jobs count against: the per-client limit is per network address, pages and API together.

A queue session names who watches a job: `api:<address>` for an API client, `web-<token>@<address>` for a
browser session (one per tab), `cli`, a batch's name. The limit on unfinished jobs
(`STUDIO_MAX_JOBS_PER_SESSION`) counts every session of one address together, so opening many tabs, or
mixing tabs and API calls, gives one address no more than the limit. Sessions that carry no address
(the CLI, scripts and tests driving the queue) count on their own.

Which address: the connection's peer as the server sees it, the same for a page's websocket and for an
API request. Behind a reverse proxy that is the proxy's address, for every client, unless the server
trusts the proxy's `X-Forwarded-For`: uvicorn (what `streamlit run` serves with) takes that header only
from the addresses in `FORWARDED_ALLOW_IPS` (default 127.0.0.1: a proxy on the same host). Set
`FORWARDED_ALLOW_IPS` to the proxy's address, or all of its clients share one limit. A header the server
does not trust is never read: anyone can send one.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import TYPE_CHECKING

from core.errors import BusyError

if TYPE_CHECKING:
    from core.jobs.record import JobRecord

LOCAL = "local"  # loopback, however it is spelled (Streamlit reports it to pages as no address at all)


def address(host: str | None) -> str:
    """One spelling per address: loopback is `LOCAL`, an IPv4-mapped IPv6 address is its IPv4 one."""
    if not host:
        return LOCAL
    try:
        parsed = ipaddress.ip_address(host)
    except ValueError:
        return host  # not an IP (a Unix socket's peer, a test client's name): as it is
    if parsed.is_loopback:
        return LOCAL
    mapped = getattr(parsed, "ipv4_mapped", None)
    return str(mapped if mapped is not None else parsed)


def page_session(token: str, host: str | None) -> str:
    """The queue session of a browser session (`token` holds no '@': see core.sessions.valid_token)."""
    return f"web-{token}@{address(host)}"


def client_of(session: str) -> str:
    """What a session's jobs count against: its address when it has one, else itself."""
    if session.startswith("api:"):
        return "address " + address(session.removeprefix("api:"))
    if session.startswith("web-") and "@" in session:
        return "address " + address(session.rpartition("@")[2])
    return session


def client_load(unfinished: Iterable[JobRecord], session: str) -> int:
    """Unfinished jobs (not being cancelled) that any session of `session`'s client watches."""
    client = client_of(session)
    return sum(
        1
        for record in unfinished
        if not record.state.finished
        and not record.cancel_requested
        and any(client_of(watcher) == client for watcher in record.watchers)
    )


def over_the_limit(session: str, jobs: int) -> BusyError:
    """The one-line refusal when `session`'s client already has `jobs` jobs, its limit."""
    where = " from your address (pages and API calls count together)" if client_of(session).startswith("address ") else ""
    return BusyError(f"you already have {jobs} jobs waiting or running{where}; wait for one to finish or cancel one")


__all__ = ["LOCAL", "address", "client_load", "client_of", "over_the_limit", "page_session"]
