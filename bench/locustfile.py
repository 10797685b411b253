"""Locust users for pyjk's demo app behind the balancer: every reply is checked.

Always bound a run with `--run-time` (without it locust runs until interrupted; locust 2.x's
core has no iteration limit, `-i` comes with locust-plugins). `--run-time` applies to headless
runs and to `--autostart` web UI runs; when you start from the web UI, fill in its run time.

    .venv/bin/locust -f bench/locustfile.py --host http://127.0.0.1:8080 \
        --web-host 127.0.0.1 --autostart -u 20 -r 20 --run-time 5m
        (web UI on http://127.0.0.1:8089; starts at once, stops by itself after 5 min)
    .venv/bin/locust -f bench/locustfile.py --host http://127.0.0.1:8080 --headless \
        -u 40 -r 40 --run-time 30s --csv /tmp/pyjk-locust

Users (4 of 5 are session users):

- `SessionUser` opens a session (`GET /app/counter` without a cookie), then sends its cookie
  with a series of 20-200 requests, 9 in 10 to `/app/counter` and 1 in 10 to `/app/` (the HTML
  page counts a visit too), then starts a new session. A reply is a locust FAILURE when it
  comes from a node other than the cookie's route without moving the cookie there (a failover
  answers with `Set-Cookie` naming the serving node), when the counter did not go up by one
  (went back or reset: a lost write; jumped: a write applied twice), when the session was
  replaced by a new one, or when there was no usable reply. Rules: failover_checks.py.
- `AnonymousUser` sends no cookie: 1 in 10 requests `GET /app/counter` (a fresh session each
  time: count 1, cookie routed to the serving node), the others `GET /app` (a 303 to `/app/`
  that opens no session).

Custom statistics, via locust events:

- each session move is also reported as a request of type `FAILOVER` named `re-stick`, whose
  "response time" is the re-stick time: from the start of the first request that was not
  answered by the session's node until the reply that moved the cookie. That row (web UI,
  `--csv`) is not HTTP traffic: subtract it from the totals.
- `GET /pyjk` on the web UI and, with `PYJK_LOCUST_SUMMARY=FILE`, a JSON file written at
  test stop: counts per check, every move, the first anomalies, and (with
  `PYJK_LOCUST_SAMPLES=1`) every request's end time and latency (bench/failover_bench.py
  reads it).

Environment: `PYJK_LOCUST_WAIT=A-B` waits a random A..B seconds between requests (default
0: saturating load); `PYJK_LOCUST_FRESH_SHARE` (default 0.1) is the share of anonymous
requests that open a fresh session.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from array import array
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

from failover_checks import (
    BAD_REPLY,
    DOUBLE_WRITE,
    LOST_WRITE,
    MOVED,
    NO_REPLY,
    OK,
    WRONG_NODE,
    Finding,
    Reply,
    SessionCheck,
    check_fresh,
    cookie_value,
    parse_counter,
    parse_page,
)
from locust import FastHttpUser, between, constant, events, task
from locust.env import Environment

log = logging.getLogger("pyjk.locust")

PAGE_SHARE = 0.1
SERIES = (20, 200)  # requests per session, inclusive
MAX_SAMPLES = 5_000_000
MAX_ANOMALIES = 500
FAILOVER_TYPE = "FAILOVER"

# One short message per kind: locust groups failures by message, so ids and numbers stay out
# of it (they go to the summary's anomalies).
MESSAGES = {
    WRONG_NODE: "wrong node: reply from a node the cookie does not name, cookie not moved",
    LOST_WRITE: "lost write: the session counter went back, stayed or restarted",
    DOUBLE_WRITE: "write applied twice: the session counter jumped",
    BAD_REPLY: "bad reply: not the demo app's answer",
    NO_REPLY: "no reply",
}


def _wait_time() -> Any:
    spec = os.environ.get("PYJK_LOCUST_WAIT", "0")
    low, _, high = spec.partition("-")
    try:
        lo, hi = float(low), float(high or low)
    except ValueError:
        raise ValueError(f"PYJK_LOCUST_WAIT: expected SECONDS or A-B, found {spec!r}") from None
    return constant(lo) if lo == hi else between(lo, hi)


FRESH_SHARE = float(os.environ.get("PYJK_LOCUST_FRESH_SHARE", "0.1"))


class Tally:
    """What this locust process saw, beyond locust's own request statistics."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.started = time.time()
        self.stopped: float | None = None
        self.kinds: Counter[str] = Counter()
        self.sessions_opened = 0
        self.moves: list[dict[str, Any]] = []
        self.anomalies: list[dict[str, Any]] = []
        self.keep_samples = os.environ.get("PYJK_LOCUST_SAMPLES") == "1"
        self.sample_end = array("d")
        self.sample_ms = array("f")
        self.sample_ok = array("b")

    def record(
        self, finding: Finding, at: float, user: str, started: float = 0.0, session: str = ""
    ) -> None:
        self.kinds[finding.kind] += 1
        if finding.kind == MOVED:
            # started and session: failover_bench's breakdown (kill -> this request -> takeover)
            self.moves.append({
                "t": at, "restick_s": finding.restick, "from": finding.from_route,
                "to": finding.to_route, "started": started, "session": session,
            })  # fmt: skip
        elif finding.failed and len(self.anomalies) < MAX_ANOMALIES:
            self.anomalies.append({"t": at, "kind": finding.kind, "user": user,
                                   "detail": finding.detail})  # fmt: skip

    def sample(self, end: float, ms: float, ok: bool) -> None:
        if self.keep_samples and len(self.sample_end) < MAX_SAMPLES:
            self.sample_end.append(end)
            self.sample_ms.append(ms)
            self.sample_ok.append(1 if ok else 0)

    def summary(self, samples: bool) -> dict[str, Any]:
        resticks = [m["restick_s"] for m in self.moves]
        out: dict[str, Any] = {
            "started": self.started,
            "stopped": self.stopped,
            "checks": dict(self.kinds),
            "lost_writes": self.kinds[LOST_WRITE],
            "double_writes": self.kinds[DOUBLE_WRITE],
            "wrong_node": self.kinds[WRONG_NODE],
            "sessions_opened": self.sessions_opened,
            "sessions_moved": len(self.moves),
            "restick_max_s": max(resticks, default=None),
            "moves": self.moves,
            "anomalies": self.anomalies,
        }
        if samples:
            out["samples"] = {
                "end": list(self.sample_end),
                "ms": [round(v, 3) for v in self.sample_ms],
                "ok": list(self.sample_ok),
                "truncated": len(self.sample_end) >= MAX_SAMPLES,
            }
        return out


tally = Tally()


def _set_cookie(response: Any) -> str | None:
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    return cookie_value(headers.get_all("set-cookie") or [])


class _CheckedUser(FastHttpUser):
    abstract = True
    wait_time = _wait_time()
    connection_timeout = 5.0
    network_timeout = 30.0

    def on_start(self) -> None:
        # Cookies are this user's own business: exactly the tracked JSESSIONID is sent.
        self.client.client.cookiejar = None

    def _get(self, path: str, name: str, cookie: str | None, parse: Any, judge: Any) -> Finding:
        headers = {"Cookie": cookie} if cookie else {}
        redirects = path != "/app"
        started = time.time()
        with self.client.get(path, name=name, headers=headers, catch_response=True,
                             allow_redirects=redirects) as resp:  # fmt: skip
            ended = time.time()
            reply = parse(resp.status_code, resp.content, _set_cookie(resp))
            finding = judge(reply, started, ended)
            if finding.failed:  # who answered: the balancer (pyjk) or a worker (aiohttp)
                server = resp.headers.get("server") if resp.headers else None
                finding = replace(finding, detail=f"{finding.detail} [server: {server}]")
            tally.record(finding, ended, f"{type(self).__name__}-{id(self):x}", started,
                         reply.session or "")  # fmt: skip
            if finding.failed:
                resp.failure(MESSAGES[finding.kind])
            else:
                resp.success()
        if finding.kind == MOVED and finding.restick is not None:
            self.environment.events.request.fire(
                request_type=FAILOVER_TYPE, name="re-stick", response_time=finding.restick * 1000,
                response_length=0, exception=None, context={}, start_time=ended, url="",
            )  # fmt: skip
        return finding


class SessionUser(_CheckedUser):
    """Holds one session for a series of requests and checks every reply (module docstring)."""

    weight = 4

    def on_start(self) -> None:
        super().on_start()
        self.check = SessionCheck()
        self.left = 0

    @task
    def visit(self) -> None:
        if self.left <= 0:
            self.check.reset()
            self.left = random.randint(*SERIES)
            tally.sessions_opened += 1
        self.left -= 1
        if self.check.session_id is not None and random.random() < PAGE_SHARE:
            path, name, parse = "/app/", "/app/ (page)", parse_page
        else:
            path, name, parse = "/app/counter", "/app/counter", parse_counter
        self._get(path, name, self.check.cookie, parse, self.check.observe)


def _judge_fresh(reply: Reply, started: float, ended: float) -> Finding:
    return check_fresh(reply)


def _parse_stateless(status: int, body: bytes | None, set_cookie: str | None) -> Reply:
    return Reply(status, set_cookie=set_cookie)


def _judge_stateless(reply: Reply, started: float, ended: float) -> Finding:
    if reply.status == 0:
        return Finding(NO_REPLY, "no response")
    if reply.status != 303 or reply.set_cookie is not None:
        return Finding(BAD_REPLY, f"GET /app: status {reply.status}, cookie {reply.set_cookie}")
    return Finding(OK)


class AnonymousUser(_CheckedUser):
    """No cookie: mostly a stateless redirect, sometimes a fresh session (module docstring)."""

    weight = 1

    @task
    def visit(self) -> None:
        if random.random() < FRESH_SHARE:
            self._get("/app/counter", "/app/counter (fresh)", None, parse_counter, _judge_fresh)
        else:
            self._get("/app", "/app (stateless)", None, _parse_stateless, _judge_stateless)


@events.request.add_listener
def _on_request(request_type: str, response_time: float, exception: Any, start_time: float = 0.0,
                **_: Any) -> None:  # fmt: skip
    if request_type != FAILOVER_TYPE:
        tally.sample(start_time + response_time / 1000, response_time, exception is None)


@events.test_start.add_listener
def _on_test_start(environment: Environment, **_: Any) -> None:
    tally.reset()
    options = environment.parsed_options
    if options is not None and not getattr(options, "run_time", None):
        log.warning("no --run-time: this run stops only when you stop it")


@events.test_stop.add_listener
def _on_test_stop(environment: Environment, **_: Any) -> None:
    tally.stopped = time.time()
    s = tally.summary(samples=False)
    log.info(
        "pyjk checks: sessions opened %d, moved %d (longest re-stick %s s), lost writes %d, "
        "writes applied twice %d, wrong node %d; %s",
        s["sessions_opened"], s["sessions_moved"], s["restick_max_s"], s["lost_writes"],
        s["double_writes"], s["wrong_node"], s["checks"],
    )  # fmt: skip
    path = os.environ.get("PYJK_LOCUST_SUMMARY")
    if path:
        Path(path).write_text(json.dumps(tally.summary(samples=tally.keep_samples)))


@events.init.add_listener
def _on_init(environment: Environment, **_: Any) -> None:
    if environment.web_ui is not None:

        @environment.web_ui.app.route("/pyjk")
        def pyjk_summary() -> Any:
            return tally.summary(samples=False)
