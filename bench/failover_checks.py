"""What the locust users check on every reply, without locust (pure; unit-tested in
failover_checks_test.py, used by locustfile.py).

A session user sends its cookie `JSESSIONID=<random>.<route>` and reads back the demo app's
`{"node", "session", "count"}`. `SessionCheck.observe` judges each reply:

- **wrong node**: the reply came from a node other than the cookie's route, and did not move the
  cookie there (a failover renames the session to the serving node and sends the new cookie);
- **lost write**: the counter went back or stayed (a write the client saw acknowledged is
  gone), or the session was replaced by a new one (a new random part: the counter restarts);
- **double write**: the counter jumped by more than one per reply (a write applied twice).

A request that got no usable reply (connection error, 5xx) may or may not have counted, so the
next reply may be up to one higher per such request without being called a double write.
Times are plain seconds passed in by the caller (`started`, `ended`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

COOKIE = "JSESSIONID"

OK = "ok"
MOVED = "moved"
WRONG_NODE = "wrong_node"
LOST_WRITE = "lost_write"
DOUBLE_WRITE = "double_write"
BAD_REPLY = "bad_reply"
NO_REPLY = "no_reply"
FAILURES = (WRONG_NODE, LOST_WRITE, DOUBLE_WRITE, BAD_REPLY, NO_REPLY)

_NODE_RE = re.compile(r'<span class="node">([^<]*)</span>')
_SESSION_RE = re.compile(r"<dt>Session</dt><dd><code>([^<]*)</code>")
_COUNT_RE = re.compile(r'<dd class="count">(\d+)</dd>')


@dataclass(frozen=True, slots=True)
class Reply:
    """What one response said. `status` 0 means no response at all (connection error)."""

    status: int
    node: str | None = None
    session: str | None = None
    count: int | None = None
    set_cookie: str | None = None  # the JSESSIONID value of a Set-Cookie, if one came


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str  # one of the constants above
    detail: str = ""
    restick: float | None = None  # seconds, for MOVED: first trouble until this reply
    from_route: str | None = None
    to_route: str | None = None

    @property
    def failed(self) -> bool:
        return self.kind in FAILURES


def route_of(session_id: str | None) -> str | None:
    """The route part of `<random>.<route>` (everything after the first dot), or None."""
    if not session_id or "." not in session_id:
        return None
    return session_id.split(".", 1)[1] or None


def random_part(session_id: str) -> str:
    return session_id.split(".", 1)[0]


def cookie_value(set_cookie_headers: list[str], name: str = COOKIE) -> str | None:
    """The value the last `Set-Cookie: name=...` sets (None if none sets it)."""
    found = None
    for header in set_cookie_headers:
        first = header.split(";", 1)[0]
        key, eq, value = first.partition("=")
        if eq and key.strip() == name:
            found = value.strip().strip('"')
    return found


def parse_counter(status: int, body: bytes | str | None, set_cookie: str | None) -> Reply:
    """A reply of `GET /app/counter` (JSON); fields stay None when the body is not usable."""
    if status != 200 or not body:
        return Reply(status, set_cookie=set_cookie)
    try:
        data: Any = json.loads(body)
        node, session, count = data["node"], data["session"], data["count"]
    except (ValueError, TypeError, KeyError):
        return Reply(status, set_cookie=set_cookie)
    if not isinstance(count, int) or not isinstance(node, str) or not isinstance(session, str):
        return Reply(status, set_cookie=set_cookie)
    return Reply(status, node, session, count, set_cookie)


def parse_page(status: int, body: bytes | str | None, set_cookie: str | None) -> Reply:
    """A reply of `GET /app/` (the demo's HTML page: node, session id, visit count)."""
    if status != 200 or not body:
        return Reply(status, set_cookie=set_cookie)
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    node, session, count = _NODE_RE.search(text), _SESSION_RE.search(text), _COUNT_RE.search(text)
    if node is None or session is None or count is None:
        return Reply(status, set_cookie=set_cookie)
    return Reply(status, node.group(1), session.group(1), int(count.group(1)), set_cookie)


def check_fresh(reply: Reply) -> Finding:
    """A request without a cookie: a new session, counted once, routed to the serving node."""
    if reply.status == 0:
        return Finding(NO_REPLY, "no response")
    if reply.count is None:
        return Finding(BAD_REPLY, f"status {reply.status} without a counter")
    if reply.set_cookie is None or reply.set_cookie != reply.session:
        return Finding(BAD_REPLY, f"new session {reply.session} without its cookie")
    if route_of(reply.session) != reply.node:
        return Finding(WRONG_NODE, f"new session {reply.session} served by {reply.node}")
    if reply.count != 1:
        return Finding(DOUBLE_WRITE, f"new session {reply.session} starts at {reply.count}")
    return Finding(OK)


@dataclass
class SessionCheck:
    """One user's session as the client knows it; `observe` every reply in order."""

    session_id: str | None = None
    count: int = 0  # the last counter value a reply showed
    unknown: int = 0  # requests since then that got no usable reply (may have counted)
    trouble_since: float | None = None  # start of the first request since then not served home
    replies: int = field(default=0, init=False)

    @property
    def cookie(self) -> str | None:
        return None if self.session_id is None else f"{COOKIE}={self.session_id}"

    def reset(self) -> None:
        """Forget the session (the user starts a new one with its next request)."""
        self.session_id, self.count, self.unknown, self.trouble_since = None, 0, 0, None

    def observe(self, reply: Reply, started: float, ended: float) -> Finding:
        if reply.status == 0 or reply.count is None or reply.node is None or not reply.session:
            self.unknown += 1
            if self.trouble_since is None:
                self.trouble_since = started
            kind = NO_REPLY if reply.status == 0 else BAD_REPLY
            return Finding(kind, f"status {reply.status}, no counter")
        self.replies += 1
        if self.session_id is None:
            return self._adopt_first(reply)
        old_id, old_route = self.session_id, route_of(self.session_id)
        new_id = reply.set_cookie or old_id
        finding = Finding(OK)
        if random_part(new_id) != random_part(old_id):
            finding = Finding(LOST_WRITE, f"session {old_id} replaced by {new_id} ({reply.node})")
        elif reply.session != new_id:
            finding = Finding(BAD_REPLY, f"reply names {reply.session}, cookie {new_id}")
        elif reply.node != old_route:
            if route_of(new_id) == reply.node:
                since = self.trouble_since if self.trouble_since is not None else started
                finding = Finding(MOVED, f"{old_id} -> {new_id}", ended - since,
                                  old_route, reply.node)  # fmt: skip
            else:
                finding = Finding(WRONG_NODE, f"{old_id} served by {reply.node}, cookie kept")
        elif route_of(new_id) != reply.node:
            finding = Finding(WRONG_NODE, f"{reply.node} moved {old_id} to {new_id}")
        if finding.kind in (OK, MOVED):
            finding = self._judge_count(reply.count, old_id) or finding
        self.session_id, self.count = new_id, reply.count
        self.unknown, self.trouble_since = 0, None
        return finding

    def _adopt_first(self, reply: Reply) -> Finding:
        self.session_id, self.count = reply.set_cookie or reply.session, reply.count or 0
        self.unknown, self.trouble_since = 0, None
        return check_fresh(reply)  # counting goes on from what the server said

    def _judge_count(self, count: int | None, session_id: str) -> Finding | None:
        assert count is not None
        low, high = self.count + 1, self.count + 1 + self.unknown
        if count < low:
            what = "reset" if count <= 1 else "went back"
            return Finding(LOST_WRITE, f"{session_id}: counter {what} {self.count} -> {count}")
        if count > high:
            return Finding(DOUBLE_WRITE, f"{session_id}: counter jumped {self.count} -> {count}"
                           f" ({self.unknown} unanswered)")  # fmt: skip
        return None
