"""Users counting visits through the balancer, checking every reply: the checks of the kill -9
tests, shared by the built-in cluster's and the Redis store's.

Each user keeps its cookie and expects the demo counter to go up by exactly one per 200:
lower is a lost write, higher a write applied twice. A reply that moved to another node must
carry the cookie of that node (route rewrite) and the user must stick there. With
`allow_unavailable`, a 503 or a connection error is not an error by itself (the change was
not acknowledged); it may or may not have been applied, so the next count may be one higher
per such request.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable

import aiohttp

from tests.integration.conftest import http_get
from tests.support.procs import until


class CounterLoad:
    def __init__(self, url: str, users: int, *, allow_unavailable: bool = False) -> None:
        self.url, self.users, self.allow_unavailable = url, users, allow_unavailable
        self.stop = asyncio.Event()
        self.errors: list[str] = []
        self.moved: dict[int, tuple[str, str]] = {}
        self.answered = 0
        self.unavailable = 0
        self.disconnects = 0
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._user(i)) for i in range(self.users)]

    async def finish(self) -> None:
        self.stop.set()
        await asyncio.gather(*self._tasks)

    async def _user(self, i: int) -> None:
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(
            cookie_jar=jar, timeout=aiohttp.ClientTimeout(total=20)
        ) as session:
            # aiohttp sends an idempotent request again by itself when a kept-alive connection
            # closes before the answer; that resend is a new request to the balancer (a new
            # request id), so a count would rise twice for one visit: every send is counted here
            session._retry_connection = False  # as aiohttp's own test client does
            expected, uncertain = 0, 0
            node = None
            deadline = time.monotonic() + 90
            while not self.stop.is_set() and time.monotonic() < deadline:
                try:
                    async with session.get(f"{self.url}/app/counter") as resp:
                        if resp.status != 200:
                            self._unacknowledged(f"user {i}: status {resp.status}")
                            uncertain += 1
                            continue
                        answer = await resp.json()
                        set_cookie = resp.headers.get("Set-Cookie", "")
                except (aiohttp.ClientError, TimeoutError) as exc:
                    self.disconnects += isinstance(exc, aiohttp.ServerDisconnectedError)
                    self._unacknowledged(f"user {i}: {exc!r}")
                    uncertain += 1
                    continue
                self.answered += 1
                count = answer["count"]
                if count < expected + 1 or count > expected + 1 + uncertain:
                    kind = "lost" if count <= expected else "applied twice"
                    self.errors.append(f"user {i}: {kind}: count {count} after {expected} "
                                       f"session {answer.get('session')}")  # fmt: skip
                expected, uncertain = count, 0
                if node is not None and answer["node"] != node:
                    # a failover: the response must move the cookie to the serving node
                    if not re.search(rf"JSESSIONID=[0-9A-F]+\.{answer['node']}", set_cookie):
                        self.errors.append(f"user {i}: moved {node}->{answer['node']} "
                                           "without cookie")  # fmt: skip
                    self.moved[i] = (node, answer["node"])
                elif node is not None and i in self.moved and answer["node"] != self.moved[i][1]:
                    self.errors.append(f"user {i}: did not stick after moving")
                node = answer["node"]

    def _unacknowledged(self, what: str) -> None:
        self.unavailable += 1
        if not self.allow_unavailable:
            self.errors.append(what)


async def kill_under_load(
    url: str, users: int, victim: str, kill: Callable[[], None], *, before: int = 400,
    after: int = 600,
) -> CounterLoad:  # fmt: skip
    """`users` counting through the balancer at `url`; `kill()` (a kill -9 of `victim`) after
    `before` answers, then `after` more. Checks that no write was lost or applied twice, that
    some sessions moved, and only from `victim`; returns the load for further checks."""
    load = CounterLoad(url, users)
    load.start()
    try:
        await until(lambda: load.answered >= before, 30, what="load before the kill")
        kill()
        mark = load.answered
        await until(lambda: load.answered >= mark + after, 40, what=f"load after killing {victim}")
    finally:
        await load.finish()
    assert load.errors == [], load.errors[:10]
    assert load.moved, "no session was on the killed node: the test proved nothing"
    assert {old for old, _ in load.moved.values()} == {victim}
    return load


def counter(url: str, cookie: str | None = None, rid: str | None = None):
    """One visit of the demo counter at `url` (a worker or the balancer): (status, headers,
    body), with the session cookie and the balancer's request id when given."""
    headers = {}
    if cookie:
        headers["Cookie"] = f"JSESSIONID={cookie}"
    if rid:
        headers["X-Pyjk-Request-Id"] = rid
    return http_get(f"{url}/app/counter", headers)
