"""The aiohttp side of the exactly-once ledger (`ledger.py`, pure): what a worker's response
leaves as its record, and the response a replay of that record answers with.
"""

from __future__ import annotations

import logging
from collections import Counter
from contextvars import ContextVar
from dataclasses import dataclass

from aiohttp import web

from .ledger import MAX_HEADERS, RECORDED_HEADERS, Ledger, RecordedResponse, header_value_ok

log = logging.getLogger("pyjk.cluster")

# Tells the client (and the tests) that the handler did not run again.
REPLAY_HEADER = "X-Pyjk-Replayed"
_LOWER = {h.lower(): h for h in RECORDED_HEADERS}


def snapshot_response(
    response: web.StreamResponse, now: float, max_body: int
) -> RecordedResponse | None:
    """What to replay for `response`, or None if it cannot be recorded (streamed or too big)."""
    if not isinstance(response, web.Response) or response.prepared:
        return None
    body = response.body
    if body is None:
        body = b""
    if not isinstance(body, bytes | bytearray) or len(body) > max_body:
        return None
    headers: list[tuple[str, str]] = []
    for name, value in response.headers.items():
        canonical = _LOWER.get(name.lower())
        if canonical is not None and canonical != "Set-Cookie" and header_value_ok(value):
            headers.append((canonical, value))
    # aiohttp keeps cookies aside until the response is prepared
    for morsel in response.cookies.values():
        text = morsel.OutputString()
        if header_value_ok(text):
            headers.append(("Set-Cookie", text))
    return RecordedResponse(response.status, tuple(headers[:MAX_HEADERS]), bytes(body), now)


def record_of(
    request_id: str | None,
    response: web.StreamResponse,
    now: float,
    *,
    max_body: int,
    max_entries: int,
) -> RecordedResponse | None:
    """What a committed request with `request_id` leaves for its retries (None: no id,
    recording off — `[exactly_once] max_entries = 0`, on every store — or nothing
    recordable): the start of every session backend's `committed`."""
    if request_id is None or max_entries <= 0:
        return None
    return snapshot_response(response, now, max_body)


def replay_response(record: RecordedResponse) -> web.Response:
    """The response to answer a retried request with, from its record."""
    response = web.Response(status=record.status, body=record.body)
    for name, value in record.headers:
        response.headers.add(name, value)
    response.headers[REPLAY_HEADER] = "1"
    return response


def replay_from(
    ledger: Ledger, request_id: str, now: float, counters: Counter[str]
) -> web.Response | None:
    """The replay of `request_id` if `ledger` holds its record (counted and logged), else None:
    the CommitObserver.replay of every session backend."""
    record = ledger.get(request_id, now)
    if record is None:
        return None
    counters["replays_answered"] += 1
    log.info("request replayed from the ledger request_id=%s", request_id)
    return replay_response(record)


# Request ids whose retry record could not be read, at most remembered at once: far more than
# the requests one worker has in flight.
MAX_UNVERIFIED = 65_536
UNVERIFIED = "its retry record could not be read: an earlier attempt may have written"


@dataclass(slots=True)
class _Serving:
    """The decision about one request, kept in its task's context: the handler's cache writes,
    its commit and any task the handler spawns (which copies the context, and so shares this
    object) all read the same one; the next request in the task gets a new one."""

    request_id: str | None
    unverified: bool = False
    unheard: bool = False  # a record lookup of this request went unanswered: stays refused


# Set by the store's `load`, which runs in the request's task (awaited by the session
# middleware, not spawned): the handler that runs next sees it, and only that request does.
_SERVING: ContextVar[_Serving | None] = ContextVar("pyjk_unverified_request", default=None)


class Unverified:
    """Requests served without knowing whether an earlier attempt of theirs wrote (their
    retry record could not be read): such a request may run — a page that needs no session is
    served while the store is out of reach — but its session writes and its cluster-cache
    writes are refused (503), so none is applied twice if the store is back by the time it
    writes. Shared by the external session stores (Redis, distributed mode).

    Two things are kept apart. The decision is per request (`_Serving` in its context): it is
    never consumed — a write after the commit (a background task of the handler) is refused
    too — and two attempts of one id in flight on one node do not decide for each other. The
    ids *in doubt* are per node (bounded): a request id whose record some attempt could not
    read stays in doubt until a later attempt reads it, so the store's `load` knows to look
    it up again even where it would not otherwise (distributed mode's sticky read)."""

    def __init__(self, max_entries: int = MAX_UNVERIFIED) -> None:
        self.max_entries = max_entries
        self._doubted: dict[str, None] = {}

    def serving(self, request_id: str | None) -> None:
        """The store's `load` starts on `request_id`: the request this task serves from now
        on. An id in doubt starts unverified: only a lookup that is heard (`discard`) clears it."""
        _SERVING.set(_Serving(request_id, request_id in self._doubted if request_id else False))

    def in_doubt(self, request_id: str | None) -> bool:
        """Whether an earlier attempt of `request_id` could not read its record (and no attempt
        read it since): its load must look the record up, wherever it would find the session."""
        return request_id is not None and request_id in self._doubted

    def add(self, request_id: str) -> None:
        """A lookup of `request_id`'s record went unanswered: the request being served may run
        but not write, and the id is in doubt until an attempt reads its record."""
        self._doubted.pop(request_id, None)
        self._doubted[request_id] = None
        if len(self._doubted) > self.max_entries:
            del self._doubted[next(iter(self._doubted))]
        if (current := self._current(request_id)) is not None:
            current.unverified = current.unheard = True

    def discard(self, request_id: str | None) -> None:
        """A lookup of `request_id`'s record was answered by everyone asked: unless another
        lookup of the same request went unanswered, it may write, and the id is no longer in
        doubt."""
        if request_id is None:
            return
        current = self._current(request_id)
        if current is None:
            self._doubted.pop(request_id, None)
        elif not current.unheard:
            self._doubted.pop(request_id, None)
            current.unverified = False

    def refusal(self, request_id: str | None) -> str | None:
        """At commit: why this request's session writes are refused (None: they may go). Read,
        not consumed (see the class docstring); outside the request's context, by the id."""
        if request_id is None:
            return None
        current = self._current(request_id)
        unverified = current.unverified if current is not None else request_id in self._doubted
        return UNVERIFIED if unverified else None

    def cache_refusal(self) -> str | None:
        """During a request (or a task its handler spawned): why its writes to the app's
        caches are refused (None: they may go). The same rule as its session writes
        (`refusal`): an earlier attempt may have updated the cache, and its record, which
        would have answered this retry, could not be read."""
        current = _SERVING.get()
        return UNVERIFIED if current is not None and current.unverified else None

    def _current(self, request_id: str) -> _Serving | None:
        current = _SERVING.get()
        return current if current is not None and current.request_id == request_id else None

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._doubted
