"""Real balancer, real backends: members dying, retries, force, reply timeouts."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
import urllib.request

import aiohttp
import pytest

from tests.integration.conftest import Stack, http_get, http_json, wait_for
from tests.support.procs import until

pytestmark = pytest.mark.integration

HEALTH = """
worker.n1.health_check_interval=100
worker.n2.health_check_interval=100
worker.n3.health_check_interval=100
worker.n1.health_check_rise=1
worker.n2.health_check_rise=1
worker.n3.health_check_rise=1
"""


def start(stack: Stack, names=("n1", "n2", "n3"), extra: str = "", lb: str = "") -> None:
    for name in names:
        stack.start_backend(name)
    stack.start_balancer(stack.workers_properties(list(names), extra, lb))


async def _hammer(url: str, stop: asyncio.Event, results: list, cookie: str | None = None):
    headers = {"Cookie": cookie} if cookie else {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
        deadline = time.monotonic() + 30  # bounded even if the test logic goes wrong
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                async with session.get(url, headers=headers) as resp:
                    body = await resp.read()
                    results.append((resp.status, body[:200]))
            except aiohttp.ClientError as exc:
                results.append((0, repr(exc).encode()))


async def test_a_backend_killed_under_load_costs_no_get_and_comes_back(stack: Stack):
    start(stack, extra=HEALTH)
    stop = asyncio.Event()
    results: list = []
    clients = [asyncio.create_task(_hammer(f"{stack.url}/app/x", stop, results)) for _ in range(16)]
    sticky = [
        asyncio.create_task(_hammer(f"{stack.url}/app/s", stop, results, "JSESSIONID=s.n2"))
        for _ in range(4)
    ]
    await until(lambda: len(results) >= 300)
    stack.backends["n2"].proc.signal(signal.SIGKILL)
    mark = len(results)
    await until(lambda: len(results) >= mark + 600)
    assert await asyncio.to_thread(stack.member_state, "n2") == "ERR"
    stack.restart_backend("n2")
    await until(lambda: stack.member_state("n2") in {"OK", "OK/IDLE"}, timeout=15)
    mark = len(results)
    await until(lambda: len(results) >= mark + 300)
    stop.set()
    await asyncio.gather(*clients, *sticky)
    failed = [r for r in results if r[0] != 200]
    assert failed == [], failed[:5]
    assert b'"node": "n2"' in b"".join(body for _, body in results[-200:])


def backend_stats(stack: Stack, name: str) -> dict:
    return http_json(f"http://127.0.0.1:{stack.backends[name].port}/-/posts")


def test_a_post_the_backend_may_have_received_is_never_replayed(stack: Stack):
    start(stack, names=("n1", "n2"))
    answer: dict = {}

    def post() -> None:
        answer["status"] = http_get_post(f"{stack.url}/app/slow?ms=5000", b"order=1")

    thread = threading.Thread(target=post)
    # the POST goes to n1 (first in rotation); kill n1 while it holds the request
    thread.start()
    wait_for(lambda: backend_stats(stack, "n1")["posts"] == 1, 10, what="POST at n1")
    stack.backends["n1"].proc.signal(signal.SIGKILL)
    thread.join(20)
    assert answer["status"] == 502
    assert backend_stats(stack, "n2")["posts"] == 0


def http_get_post(url: str, body: bytes) -> int:
    req = urllib.request.Request(url, data=body, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code


def test_a_get_whose_member_died_before_answering_is_answered_by_another(stack: Stack):
    start(stack, names=("n1", "n2"))
    # n1 is killed while it holds the GET: the GET was idempotent, so n2 answers it
    answer: dict = {}

    def get() -> None:
        answer["resp"] = http_get(f"{stack.url}/app/x?slow=n1&ms=5000")

    thread = threading.Thread(target=get)
    thread.start()
    wait_for(lambda: backend_stats(stack, "n1")["inflight"] == 1, 10, what="GET at n1")
    stack.backends["n1"].proc.signal(signal.SIGKILL)
    thread.join(20)
    status, _, body = answer["resp"]
    assert status == 200 and b'"node": "n2"' in body


def test_sticky_session_force_answers_503_for_a_session_it_cannot_honour(stack: Stack):
    start(stack, names=("n1", "n2"), lb="worker.lb.sticky_session_force=true")
    stack.backends["n2"].proc.signal(signal.SIGKILL)
    stack.backends["n2"].proc.wait(5)
    assert http_get(f"{stack.url}/app/x", {"Cookie": "JSESSIONID=a.n2"})[0] == 503
    assert http_get(f"{stack.url}/app/x", {"Cookie": "JSESSIONID=a.n9"})[0] == 503
    assert http_get(f"{stack.url}/app/x", {"Cookie": "JSESSIONID=noroute"})[0] == 503
    # requests without a session are still balanced (to the live member)
    assert http_json(f"{stack.url}/app/x")["node"] == "n1"


def test_reply_timeout_fails_over_and_503_when_every_member_timed_out(stack: Stack):
    start(
        stack,
        names=("n1", "n2"),
        extra="worker.n1.reply_timeout=300\nworker.n2.reply_timeout=300\n",
    )
    began = time.monotonic()
    body = http_json(f"{stack.url}/app/x?slow=n1&ms=3000")
    assert body["node"] == "n2"
    # retried on the same member first (member retries=2), as mod_jk does
    assert time.monotonic() - began >= 0.6
    status, _, _ = http_get(f"{stack.url}/app/slow?ms=3000", timeout=30)
    assert status == 503
