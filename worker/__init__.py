"""pyjk worker runtime: aiohttp apps with replicated-ready sessions behind the pyjk balancer.

Put an app behind pyjk::

    from worker import get_session, setup_sessions

    async def counter(request):
        session = await get_session(request)
        session["count"] = session.get("count", 0) + 1
        return web.json_response({"count": session["count"]})

and run it with `pyjk-worker --route node1 --listen 127.0.0.1:8101 --app pkg.mod:factory`
(the CLI calls setup_sessions for you). See docs/worker.md.
"""

from __future__ import annotations

from .delta import SessionDelta, SessionState, apply_delta
from .middleware import (
    DeltaSink,
    SessionManager,
    get_session,
    request_id,
    rotate_session_id,
    setup_sessions,
)
from .request_session import (
    RequestSession,
    SessionClosedError,
    SessionError,
    SessionInvalidatedError,
    SessionTooLarge,
    TooManySessions,
)
from .sessions import SessionStore
from .values import AttributeValueError

__all__ = [
    "AttributeValueError",
    "DeltaSink",
    "RequestSession",
    "SessionClosedError",
    "SessionDelta",
    "SessionError",
    "SessionInvalidatedError",
    "SessionManager",
    "SessionState",
    "SessionStore",
    "SessionTooLarge",
    "TooManySessions",
    "apply_delta",
    "get_session",
    "request_id",
    "rotate_session_id",
    "setup_sessions",
]
