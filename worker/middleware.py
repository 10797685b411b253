"""aiohttp integration: `setup_sessions(app, route=...)` and `await get_session(request)`.

Per request (paths under `/-/`, pyjk's own endpoints, are left alone):
1. The requested session id comes from the `JSESSIONID` cookie(s) or a `;jsessionid=` path
   parameter (cookie first, as Tomcat does; every duplicate cookie is tried, mod_jk bug 44116).
2. If that session is held here but routed to another node, this is a failover: the session
   is renamed to this node's route (same random part) and the client gets the new cookie
   (Tomcat's JvmRouteBinderValve, tomcat-cluster.md §5.2). Unknown ids mean "no session".
3. `get_session(request)` returns that session, or creates one (Tomcat's getSession());
   `get_session(request, create=False)` returns None instead of creating.
4. When the handler returns (or raises an HTTPException, which is a response too), the views
   are committed and each delta is awaited through the DeltaSink *before* the response leaves
   the middleware, so replication can hold the response until peers acknowledge. Any other
   exception discards the request's session changes.
5. Clustered nodes (`SessionManager.peers`, set by replication; see peers.py): while this
   node's sessions are known to be incomplete (state transfer, resync), requests it cannot
   vouch for get 503 with `Retry-After: 1`; when ready, a session id not held here is first
   asked of the other members (and taken over if one has it), so a session that exists is
   never replaced by a new one. Standalone (peers None): unknown ids simply mean "no session".
6. Optional exactly-once hook (`SessionManager.observer`, set by replication): a request whose
   `X-Pyjk-Request-Id` has a recorded response gets that response without running the handler
   (asked again after a lookup brought the session in: the records of its writes come with it);
   after a request's views are committed, the observer is told synchronously (deltas, request
   id, response) before any delta is shipped, so it can stamp them and record the response.
7. External store (`SessionManager.loader`, set by a backend such as Redis; worker/backend.py):
   before anything else the loader brings the request's sessions and its request id's record
   into the local store (UNKNOWN: 503 `Retry-After: 1`), and forgets them when the request
   ends. A sink raising SessionNotSaved (the store did not keep the change) turns the
   response into 503 `Retry-After: 1`: a change is acknowledged only once it is kept.

The `;jsessionid=` parameter is removed from the path before routing. A middleware runs only
after the route was matched, so setup_sessions wraps the app router's `resolve()` to match on
the cleaned path, and the middleware hands the handler a clone whose path is clean too. This
works the same under web.run_app, AppRunner and the test client; the original path (kept by
aiohttp's access log) is what the client sent.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, overload

from aiohttp import web
from aiohttp.typedefs import Handler
from yarl import URL

from .backend import SessionLoader, SessionNotSaved
from .cache_table import CacheUnavailable
from .delta import SessionDelta
from .peers import (
    ABSENT,
    FOUND,
    RETRY_AFTER,
    UNKNOWN,
    SessionPeers,
    missing,
    own_or_none,
    taken_over,
    unavailable,
)
from .refusals import REFUSAL_HEADER, RETRY_AFTER_S, SESSIONS_FULL, RefusalLog
from .request_session import RequestSession, TooManySessions
from .session_ids import split_session_id
from .sessions import SessionStore

log = logging.getLogger("pyjk.worker.sessions")

DeltaSink = Callable[[SessionDelta], Awaitable[None]]


class CommitObserver(Protocol):
    """Replication's synchronous view of requests (see point 6 of the module docstring)."""

    def replay(self, request_id: str) -> web.StreamResponse | None: ...

    def committed(
        self, deltas: Sequence[SessionDelta], request_id: str | None, response: web.StreamResponse
    ) -> None: ...


REQUEST_ID_HEADER = "X-Pyjk-Request-Id"
INTERNAL_PREFIX = "/-/"

_TOKEN_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_REQUEST_ID_RE = re.compile(r"[\x21-\x7e]{1,128}")


def _request_key(name: str) -> Any:
    # web.RequestKey (aiohttp >= 3.14) avoids NotAppKeyWarning; plain str keys before that.
    factory = getattr(web, "RequestKey", None)
    return factory(name, object) if factory is not None else name


_CONTEXT_KEY = _request_key("pyjk.sessions")
_REQUEST_ID_KEY = _request_key("pyjk.request_id")


async def _discard(delta: SessionDelta) -> None:
    return None


@dataclass
class SessionManager:
    """The per-app session settings; `sink` may be replaced later (replication plugs in)."""

    store: SessionStore
    cookie_name: str = "JSESSIONID"
    path_parameter: str = "jsessionid"
    sink: DeltaSink = _discard
    clock: Callable[[], float] = time.time
    internal_prefix: str = INTERNAL_PREFIX
    takeovers: int = field(default=0, init=False)
    observer: CommitObserver | None = field(default=None, init=False)
    peers: SessionPeers | None = field(default=None, init=False)
    loader: SessionLoader | None = field(default=None, init=False)  # an external store's
    refused: Counter[str] = field(default_factory=Counter, init=False)  # 503s by reason
    full_log: RefusalLog = field(default_factory=RefusalLog, init=False)  # sessions-full 503s
    # exact paths outside internal_prefix that have no sessions either (e.g. /cluster-manager)
    internal_paths: set[str] = field(default_factory=set, init=False)

    @property
    def route(self) -> str:
        return self.store.route

    def capacity(self) -> tuple[int, int]:
        """(sessions held here, replicas included; max_active_sessions): how full this node
        is, for /cluster-manager, metrics and the balancer's status page."""
        return len(self.store), self.store.max_active_sessions

    def log_refusals(self, now: float, count: int | None) -> None:
        """One line for ``count`` sessions-full refusals (RefusalLog decides when)."""
        if count:
            live, limit = self.capacity()
            log.warning(
                "sessions refused count=%d live=%d limit=%d: max_active_sessions reached "
                "(every node holds every session; see docs/cluster.md)",
                count,
                live,
                limit,
            )


SESSIONS: web.AppKey[SessionManager] = web.AppKey("pyjk.sessions", SessionManager)


def setup_sessions(
    app: web.Application,
    *,
    route: str,
    store: SessionStore | None = None,
    cookie_name: str = "JSESSIONID",
    path_parameter: str = "jsessionid",
    sink: DeltaSink | None = None,
    clock: Callable[[], float] = time.time,
) -> SessionManager:
    """Enable sessions on `app` (call once, on the top-level app, before it starts)."""
    if store is None:
        store = SessionStore(route)
    elif store.route != route:
        raise ValueError(
            f"setup_sessions: route {route!r} but the store's route is {store.route!r}"
        )
    for what, value in (("cookie_name", cookie_name), ("path_parameter", path_parameter)):
        if not _TOKEN_RE.fullmatch(value):
            raise ValueError(f"setup_sessions: {what} {value!r} is not an HTTP token")
    if SESSIONS in app:
        raise RuntimeError("setup_sessions: sessions are already set up on this app")
    manager = SessionManager(store, cookie_name, path_parameter, sink or _discard, clock)
    app[SESSIONS] = manager
    app.middlewares.insert(0, _make_middleware(manager))
    _route_on_clean_path(app.router, path_parameter)
    return manager


@overload
async def get_session(request: web.Request) -> RequestSession: ...
@overload
async def get_session(request: web.Request, *, create: Literal[True]) -> RequestSession: ...
@overload
async def get_session(request: web.Request, *, create: bool) -> RequestSession | None: ...


async def get_session(request: web.Request, *, create: bool = True) -> RequestSession | None:
    """This request's session; created when absent unless `create=False` (then None).

    Raises TooManySessions when a new one is needed past max_active_sessions (answered 503 by
    the middleware if the handler does not catch it).
    """
    return _context(request).session(create)


def _context(request: web.Request) -> _RequestSessions:
    context: _RequestSessions | None = request.get(_CONTEXT_KEY)
    if context is None:
        raise RuntimeError(
            f"no sessions for {request.path!r}: call worker.setup_sessions(app, route=...) "
            "(paths under /-/ never have sessions)"
        )
    return context


async def rotate_session_id(request: web.Request) -> RequestSession:
    """Give this request's session a new id with the same data (created when there is none).

    Call it where a user's privileges change — at login — against session fixation (Tomcat's
    ``changeSessionId``, Django's ``cycle_key``): the new id carries this node's route, the
    response sets its cookie, and the old id ends on every node in the same replicated change,
    so a request that still presents it finds no session. Returns the session to go on with.
    """
    return _context(request).rotate()


def request_id(request: web.Request) -> str | None:
    """The balancer's `X-Pyjk-Request-Id` for this request (None if absent or malformed)."""
    if _REQUEST_ID_KEY in request:
        known: str | None = request[_REQUEST_ID_KEY]
        return known
    return _read_request_id(request)


def split_path_parameter(raw_path: str, name: str) -> tuple[str | None, str | None]:
    """Find `;name=value` path parameters: (first value, path without them) or (None, None).

    Other path parameters are kept. The value ends at the next `;` or `/`.
    """
    prefix = name + "="
    if ";" + prefix not in raw_path:
        return None, None
    value: str | None = None
    segments = []
    for segment in raw_path.split("/"):
        if ";" + prefix in segment:
            head, *params = segment.split(";")
            kept = [head]
            for param in params:
                if param.startswith(prefix):
                    value = param[len(prefix) :] if value is None else value
                else:
                    kept.append(param)
            segment = ";".join(kept)
        segments.append(segment)
    return value, "/".join(segments)


def cookie_values(request: web.BaseRequest, name: str) -> list[str]:
    """Every value of cookie `name`, in order (aiohttp's request.cookies keeps only one)."""
    found = []
    for header in request.headers.getall("Cookie", ()):
        for part in header.split(";"):
            key, eq, value = part.partition("=")
            if eq and key.strip() == name:
                value = value.strip()
                if len(value) >= 2 and value[0] == value[-1] == '"':
                    value = value[1:-1]
                found.append(value)
    return found


def _with_path(url: URL, raw_path: str) -> URL:
    return URL.build(path=raw_path, query_string=url.raw_query_string, encoded=True)


def _route_on_clean_path(router: web.UrlDispatcher, name: str) -> None:
    original = router.resolve
    marker = f";{name}="

    async def resolve(request: web.Request) -> Any:
        if marker in request.rel_url.raw_path:
            _, clean = split_path_parameter(request.rel_url.raw_path, name)
            assert clean is not None
            request = request.clone(rel_url=_with_path(request.rel_url, clean))
        return await original(request)

    router.resolve = resolve  # type: ignore[method-assign]


def _read_request_id(request: web.BaseRequest) -> str | None:
    value = request.headers.get(REQUEST_ID_HEADER)
    return value if value is not None and _REQUEST_ID_RE.fullmatch(value) else None


def _is_https(request: web.BaseRequest) -> bool:
    forwarded = request.headers.get("X-Forwarded-Proto", "")
    return request.secure or forwarded.split(",")[0].strip().lower() == "https"


class _RequestSessions:
    """The sessions one request opened, and what to do with them at its end."""

    def __init__(self, manager: SessionManager, request: web.Request, path_id: str | None):
        self.manager = manager
        self.request = request
        self.cookie_ids = cookie_values(request, manager.cookie_name)
        self.requested = [*self.cookie_ids, *([path_id] if path_id else [])]
        self.views: list[RequestSession] = []
        self.current: RequestSession | None = None

    def random_parts(self) -> list[str]:
        """Random parts of the sessions this request named or opened (for the loader)."""
        parts = [view._start.random_part for view in self.views]
        for session_id in self.requested:
            split = split_session_id(session_id)
            if split is not None and split[0] not in parts:
                parts.append(split[0])
        return parts

    def open_requested(self) -> bool:
        """Open the first requested session held here (taking it over if routed elsewhere)."""
        store, now = self.manager.store, self.manager.clock()
        for session_id in self.requested:
            view = store.begin(session_id, now)
            if view is None:
                continue
            if view.route != store.route:
                # failover: this node now serves the session; the new cookie routes it here
                log.info("session takeover id=%s from=%s to=%s", view.id, view.route, store.route)
                view.change_route(store.route)
                self.manager.takeovers += 1
            self.views.append(view)
            self.current = view
            return True
        return False

    def session(self, create: bool) -> RequestSession | None:
        if self.current is not None and not self.current.invalidated:
            return self.current
        if not create:
            return None
        view = self.manager.store.create(self.manager.clock())
        self.views.append(view)
        self.current = view
        return view

    def rotate(self) -> RequestSession:
        old = self.current
        if old is None or old.invalidated:
            view = self.session(True)
            assert view is not None
            return view
        new = self.manager.store.rotate(old, self.manager.clock())
        # committed before the old view: if the new one cannot be kept, both are aborted and
        # the old session stays as it was
        self.views.insert(self.views.index(old), new)
        self.current = new
        log.info("session id rotated route=%s", self.manager.route)
        return new

    def abort(self) -> None:
        for view in self.views:
            if not view.ended:
                self.manager.store.abort(view)

    async def finish(self, response: web.StreamResponse) -> None:
        store, now = self.manager.store, self.manager.clock()
        deltas, failure = [], None
        # Only the last view can fail (earlier ones were invalidated in this request), but
        # whatever was committed before a failure is in the store and must still be shipped.
        for view in self.views:
            try:
                delta = store.commit(view, now)
            except Exception as exc:
                failure = exc
                self.abort()
                break
            if delta is not None:
                deltas.append(delta)
        if failure is None:
            self._set_cookie(response)
        observer = self.manager.observer
        if deltas and observer is not None:
            # a failed commit answers 500, not `response`: nothing to record for a replay then
            rid = self.request.get(_REQUEST_ID_KEY) if failure is None else None
            try:
                observer.committed(deltas, rid, response)
            except Exception:  # the sink still ships the deltas
                log.exception("commit observer failed path=%s", self.request.path)
        if deltas:
            # Shielded: the store already holds these changes, so shipping them must not be
            # cut short if the request task is cancelled (client gone, shutdown).
            await asyncio.shield(asyncio.ensure_future(self._ship(deltas)))
        if failure is not None:
            raise failure

    async def _ship(self, deltas: list[SessionDelta]) -> None:
        for delta in deltas:
            try:
                await self.manager.sink(delta)
            except SessionNotSaved:
                raise
            except Exception:
                log.exception("session delta sink failed id=%s", delta.session_id)

    def _set_cookie(self, response: web.StreamResponse) -> None:
        name, view = self.manager.cookie_name, self.current
        if view is not None and not view.invalidated:
            if view.id in self.cookie_ids:
                return
            if response.prepared:
                log.warning("session cookie not sent id=%s: response already started", view.id)
                return
            response.set_cookie(
                name, view.id, path="/", httponly=True, samesite="Lax",
                secure=True if _is_https(self.request) else None,
            )  # fmt: skip
        elif self.cookie_ids and any(v.invalidated for v in self.views) and not response.prepared:
            response.del_cookie(name, path="/")


def _make_middleware(manager: SessionManager) -> Any:
    @web.middleware
    async def sessions_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        path_id, clean = split_path_parameter(request.rel_url.raw_path, manager.path_parameter)
        if clean is not None:
            request = request.clone(rel_url=_with_path(request.rel_url, clean))
        request[_REQUEST_ID_KEY] = _read_request_id(request)
        if (
            request.path.startswith(manager.internal_prefix)
            or request.path in manager.internal_paths
        ):
            return await handler(request)
        rid = request[_REQUEST_ID_KEY]
        context = _RequestSessions(manager, request, path_id)
        loader = manager.loader
        if loader is None:
            return await _serve(manager, request, handler, context, rid)
        # an external store: this request's sessions (and its request id's record) are read
        # from it first, and forgotten here after, so the next request reads them again
        try:
            if await loader.load(context.requested, rid) == UNKNOWN:
                manager.refused["store"] += 1
                return unavailable("the session store did not answer")
            return await _serve(manager, request, handler, context, rid)
        finally:
            loader.release(context.random_parts())

    return sessions_middleware


async def _serve(
    manager: SessionManager,
    request: web.Request,
    handler: Handler,
    context: _RequestSessions,
    rid: str | None,
) -> web.StreamResponse:
    recorded = _replay(manager, rid)
    if recorded is not None:  # a retry of a request already answered: same answer
        return recorded
    peers = manager.peers
    hold = peers.holding_back() if peers is not None else None
    if hold is not None and not (
        hold.own_sessions and own_or_none(context.requested, manager.store)
    ):
        manager.refused[hold.reason] += 1
        return unavailable(hold.reason)  # missing here, or maybe stale
    if peers is not None and (taking := taken_over(context.requested, manager.store)):
        asked = time.monotonic()
        if await peers.refresh(taking) != FOUND:
            log.warning("session refresh unanswered ids=%d path=%s", len(taking), request.path)
            manager.refused["refresh"] += 1
            return unavailable("a cluster member did not answer in time")
        log.info(  # the failover bench reads these
            "session refresh ids=%d took_ms=%.1f",
            len(taking),
            (time.monotonic() - asked) * 1000,
        )
        recorded = _replay(manager, rid)  # a newer write came with its record: this one?
        if recorded is not None:
            return recorded
    if not context.open_requested() and peers is not None:
        wanted = missing(context.requested, manager.store)
        asked = time.monotonic()
        lookup = await peers.find(wanted) if wanted else ABSENT
        if lookup == FOUND:
            # one line per found session: how long a failover waited for it (the
            # failover bench reads these)
            took = (time.monotonic() - asked) * 1000
            log.info("session lookup found ids=%d took_ms=%.1f", len(wanted), took)
            # The session came with the records of its writes: if this request is the
            # retry of one of them, it ran already (elsewhere) and must not run again.
            recorded = _replay(manager, rid)
            if recorded is not None:
                return recorded
            context.open_requested()
        elif lookup != ABSENT:  # a member did not answer: the session may well exist
            log.warning("session lookup unanswered ids=%d path=%s", len(wanted), request.path)
            manager.refused["lookup"] += 1
            return unavailable("a cluster member did not answer in time")
    request[_CONTEXT_KEY] = context
    try:
        response = await handler(request)
    except web.HTTPException as exc:  # a response raised: it still commits
        await _finish_or_500(context, exc)
        raise
    except TooManySessions as exc:
        context.abort()
        manager.refused[SESSIONS_FULL] += 1
        now = manager.clock()
        manager.log_refusals(now, manager.full_log.note(now))
        raise web.HTTPServiceUnavailable(
            text="This server cannot open more sessions right now. Please retry later.\n",
            headers={"Retry-After": str(RETRY_AFTER_S), REFUSAL_HEADER: SESSIONS_FULL},
        ) from exc
    except CacheUnavailable as exc:  # the cache's shared copy is out of reach: retry later
        context.abort()
        manager.refused["cache"] += 1
        log.warning("cache unavailable path=%s: %s", request.path, exc)
        raise web.HTTPServiceUnavailable(
            text="A cache this page needs is unavailable right now. Please retry.\n",
            headers={"Retry-After": RETRY_AFTER, "Cache-Control": "no-store"},
        ) from exc
    except BaseException:
        context.abort()
        raise
    await _finish_or_500(context, response)
    return response


def _replay(manager: SessionManager, rid: str | None) -> web.StreamResponse | None:
    if rid is None or manager.observer is None:
        return None
    return manager.observer.replay(rid)


async def _finish_or_500(context: _RequestSessions, response: web.StreamResponse) -> None:
    try:
        await context.finish(response)
    except SessionNotSaved as exc:  # the store did not keep it: not an acknowledged write
        log.warning("session changes not confirmed path=%s: %s", context.request.path, exc)
        context.manager.refused["store"] += 1
        raise web.HTTPServiceUnavailable(
            text="The session store did not confirm this change. Please retry.\n",
            headers={"Retry-After": RETRY_AFTER, "Cache-Control": "no-store"},
        ) from exc
    except (ValueError, TypeError) as exc:  # SessionTooLarge, AttributeValueError
        log.error("session changes not saved path=%s: %s", context.request.path, exc)
        raise web.HTTPInternalServerError(
            text="The session could not be saved; no changes were kept.\n"
        ) from exc
