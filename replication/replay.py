"""The aiohttp side of the exactly-once ledger (`ledger.py`, pure): what a worker's response
leaves as its record, and the response a replay of that record answers with.
"""

from __future__ import annotations

import logging
from collections import Counter
from contextvars import ContextVar

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
    request_id: str | None, response: web.StreamResponse, now: float, max_body: int
) -> RecordedResponse | None:
    """What a committed request with `request_id` leaves for its retries (None: no id, or
    nothing recordable): the start of every session backend's `committed`."""
    return None if request_id is None else snapshot_response(response, now, max_body)


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
# The request id the task serves (set by the store's `load`, which runs in the request's task,
# awaited by the session middleware, not spawned): the handler that runs next sees it, and
# only that request's task does (aiohttp gives each its own).
_SERVING: ContextVar[str | None] = ContextVar("pyjk_unverified_request", default=None)


class Unverified:
    """Request ids served without knowing whether an earlier attempt of theirs wrote (their
    retry record could not be read): such a request may run — a page that needs no session is
    served while the store is out of reach — but its session writes are refused (503), so
    none is applied twice if the store is back by the time it writes. Shared by the external
    session stores (Redis, distributed mode)."""

    def __init__(self, max_entries: int = MAX_UNVERIFIED) -> None:
        self.max_entries = max_entries
        self._ids: dict[str, None] = {}

    def serving(self, request_id: str | None) -> None:
        """The store's `load` starts on `request_id`: the request this task serves from now
        on (aiohttp gives each request its own task; set anyway, so no earlier request's id
        can linger in a task that serves another)."""
        _SERVING.set(request_id)

    def add(self, request_id: str) -> None:
        self._ids[request_id] = None
        _SERVING.set(request_id)
        if len(self._ids) > self.max_entries:
            del self._ids[next(iter(self._ids))]

    def discard(self, request_id: str | None) -> None:
        if request_id is not None:
            self._ids.pop(request_id, None)

    def refusal(self, request_id: str | None) -> str | None:
        """At commit: why this request's writes are refused (None: they may go); once."""
        if request_id is None or request_id not in self._ids:
            return None
        del self._ids[request_id]
        return UNVERIFIED

    def cache_refusal(self) -> str | None:
        """During a request: why its writes to the app's cluster caches are refused (None:
        they may go). The same rule as its session writes (`refusal`): an earlier attempt may
        have updated the cache, and its record, which would have answered this retry, could
        not be read. Not consumed: a handler may try several writes."""
        request_id = _SERVING.get()
        if request_id is None or request_id not in self._ids:
            return None
        return UNVERIFIED

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._ids
