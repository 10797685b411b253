"""Workers with `[store] kind = "redis"`: sessions in a real redis-server (or a real Redis
Cluster of 3 masters and 3 replicas), behind the real balancer. The guarantees are the built-in
cluster's: no acknowledged write lost, none applied twice, 503 (never a new empty session)
while the store cannot be read, exactly-once replays across nodes.
"""

from __future__ import annotations

import http.client
import json
import re
import signal
from pathlib import Path

import pytest

from tests.integration.conftest import Stack, http_get
from tests.integration.counter_load import CounterLoad, counter, kill_under_load
from tests.integration.redis_kit import RedisClusterKit, RedisServer, cli, needs_redis
from tests.support.procs import free_port, until, wait_for

pytestmark = [pytest.mark.integration, needs_redis]

HEALTH = "".join(
    f"worker.n{i}.health_check_interval=200\nworker.n{i}.health_check_rise=1\n"
    f"worker.n{i}.fail_on_status=-503\n"
    for i in (1, 2, 3)
)
COOKIE_RE = re.compile(r"JSESSIONID=([0-9A-F]+)\.(\w+)")


def store_config(tmp: Path, body: str) -> str:
    path = tmp / "cluster.toml"
    path.write_text(f'name = "redis-test"\n\n[store]\nkind = "redis"\n{body}')
    return str(path)


def workers(stack: Stack, config: str, names=("n1", "n2", "n3"), app: str | None = None) -> None:
    extra = ("--app", app) if app else ()
    for name in names:
        stack.start_worker(name, "--cluster", config, *extra)
    stack.start_balancer(stack.workers_properties(list(names), HEALTH))


@pytest.fixture
def redis(stack: Stack) -> RedisServer:
    return RedisServer(stack.group, stack.tmp / "redis", free_port()).start()


async def test_kill_9_of_a_worker_under_load_loses_no_write_and_applies_none_twice(
    stack: Stack, redis: RedisServer
):
    workers(stack, store_config(stack.tmp, f'url = "{redis.url}"\n'))
    await kill_under_load(
        stack.url, 16, "n2", lambda: stack.backends["n2"].proc.signal(signal.SIGKILL)
    )


def test_a_retry_is_answered_once_from_the_ledger_on_another_node(stack: Stack, redis: RedisServer):
    workers(stack, store_config(stack.tmp, f'url = "{redis.url}"\n'), ("n1", "n2"))
    n1, n2 = (f"http://127.0.0.1:{stack.backends[n].port}" for n in ("n1", "n2"))
    status, headers, body = counter(n1, rid="first-visit")
    cookie = COOKIE_RE.search(headers["Set-Cookie"])
    assert status == 200 and cookie
    # the retry of the first request (no cookie yet) on another node: same answer, same cookie
    status, headers, replayed = counter(n2, rid="first-visit")
    assert (status, replayed, headers["X-Pyjk-Replayed"]) == (200, body, "1")
    session = f"{cookie[1]}.n1"
    # the session's TTL is its max_inactive (the worker's default, 1800 s), from the last use
    ttl = int(cli(redis.port, "pttl", f"pyjk:{{{cookie[1]}}}").strip())
    assert 1_790_000 < ttl <= 1_800_000, ttl
    assert json.loads(counter(n1, session, rid="second")[2])["count"] == 2
    status, headers, body = counter(n2, session, rid="second")  # its retry after a failover
    assert (status, json.loads(body)["count"], headers["X-Pyjk-Replayed"]) == (200, 2, "1")
    assert json.loads(counter(n2, session, rid="third")[2])["count"] == 3
    # scripts go by digest; a Redis that lost them (restarted, a promoted replica) gets them
    # again and the request goes through
    assert "OK" in cli(redis.port, "script", "flush")
    assert json.loads(counter(n1, session, rid="fourth")[2])["count"] == 4
    assert json.loads(counter(n2, session, rid="fifth")[2])["count"] == 5


def test_rotation_ends_the_old_id_in_redis(stack: Stack, redis: RedisServer):
    config = store_config(stack.tmp, f'url = "{redis.url}"\n')
    workers(stack, config, ("n1", "n2"), app="tests.integration.apps.login:make_app")
    n1 = f"http://127.0.0.1:{stack.backends['n1'].port}"
    n2 = f"http://127.0.0.1:{stack.backends['n2'].port}"
    _, headers, _ = counter(n1)
    old = "{}.{}".format(*COOKIE_RE.search(headers["Set-Cookie"]).groups())
    import urllib.request

    req = urllib.request.Request(f"{n1}/app/login", data=b"", method="POST")
    req.add_header("Cookie", f"JSESSIONID={old}")
    with urllib.request.urlopen(req, timeout=10) as resp:
        new = json.loads(resp.read())["session"]
    assert new.split(".")[0] != old.split(".")[0]
    assert cli(redis.port, "exists", f"pyjk:{{{old.split('.')[0]}}}").strip() == "0"
    # the old id names no session on any node: a request with it gets a new one
    _, headers, body = counter(n2, old)
    assert json.loads(body)["count"] == 1 and old.split(".")[0] not in headers["Set-Cookie"]
    assert json.loads(counter(n2, new)[2])["count"] == 2  # the data came along


def test_redis_stopped_answers_503_and_resumes_with_nothing_lost_or_invented(
    stack: Stack, redis: RedisServer
):
    workers(stack, store_config(stack.tmp, f'url = "{redis.url}"\ntimeout = 500\n'), ("n1",))
    n1 = f"http://127.0.0.1:{stack.backends['n1'].port}"
    _, headers, _ = counter(n1)
    session = "{}.{}".format(*COOKIE_RE.search(headers["Set-Cookie"]).groups())
    for expected in (2, 3):
        assert json.loads(counter(n1, session)[2])["count"] == expected
    redis.stop()  # SIGTERM: redis-server flushes its append-only file and exits
    for _ in range(5):  # with the session, and without one (it could not be saved)
        for cookie in (session, None):
            status, headers, body = counter(n1, cookie)
            assert status == 503, (status, body)
            assert headers["Retry-After"] == "1"
            assert "Set-Cookie" not in headers  # no new session handed out
    # a request with a request id but no session: its retry record cannot be read, so it
    # may run (a page that needs no session is served) but not write: its first attempt may
    # have written just before Redis went away (the session-creating counter above: 503)
    conn = http.client.HTTPConnection("127.0.0.1", stack.backends["n1"].port, timeout=10)
    conn.request("GET", "/app", headers={"X-Pyjk-Request-Id": "retried-1"})
    assert conn.getresponse().status in (301, 302, 303, 307, 308)
    conn.close()
    # one with neither asks Redis nothing and runs: the demo's /app answers its redirect
    conn = http.client.HTTPConnection("127.0.0.1", stack.backends["n1"].port, timeout=10)
    conn.request("GET", "/app")
    assert conn.getresponse().status in (301, 302, 303, 307, 308)
    conn.close()
    through_balancer = counter(stack.url, session)
    assert through_balancer[0] == 503
    metrics = http_get(f"{n1}/metrics")[2].decode()
    assert re.search(r'pyjk_store_events_total\{event="read_failures"\} [1-9]', metrics), metrics
    assert "pyjk_store_up 0.0" in metrics
    redis.restart()
    # it recovers by itself: the next request reads the session again, none was invented
    assert json.loads(counter(n1, session)[2])["count"] == 4
    assert "session store reachable again" in stack.backends["n1"].proc.output()
    assert json.loads(counter(stack.url, session)[2])["count"] == 5


def test_a_malformed_value_planted_in_redis_is_refused_and_logged(stack: Stack, redis: RedisServer):
    workers(stack, store_config(stack.tmp, f'url = "{redis.url}"\n'), ("n1",))
    n1 = f"http://127.0.0.1:{stack.backends['n1'].port}"
    sessions = []
    for _ in range(2):
        _, headers, _ = counter(n1)
        sessions.append("{}.{}".format(*COOKIE_RE.search(headers["Set-Cookie"]).groups()))
    bad, good = sessions
    key = f"pyjk:{{{bad.split('.')[0]}}}"
    cli(redis.port, "hset", key, "a:count", '{"__class__": ')  # not JSON
    status, headers, body = counter(n1, bad)
    assert status == 503 and "Set-Cookie" not in headers, (status, body)
    assert "session store value refused" in stack.backends["n1"].proc.output()
    assert "a:count" in stack.backends["n1"].proc.output()
    # the worker lives on and serves the other sessions; the bad one was not replaced
    assert json.loads(counter(n1, good)[2])["count"] == 2
    assert cli(redis.port, "hget", key, "a:count").strip() == '{"__class__":'
    metrics = http_get(f"{n1}/metrics")[2].decode()
    assert re.search(r'pyjk_store_events_total\{event="malformed"\} 1', metrics), metrics
    # a field that is no part of the schema is refused too
    cli(redis.port, "hset", f"pyjk:{{{good.split('.')[0]}}}", "x:pickle", "cos\nsystem")
    assert counter(n1, good)[0] == 503


@pytest.fixture
def redis_cluster(stack: Stack) -> RedisClusterKit:
    return RedisClusterKit(stack.group, stack.tmp / "rc").start()


async def test_a_redis_master_killed_under_load_loses_no_write_with_wait_replicas(
    stack: Stack, redis_cluster: RedisClusterKit
):
    nodes = ", ".join(f'"{n}"' for n in redis_cluster.nodes)
    config = store_config(stack.tmp, f"nodes = [{nodes}]\nwait_replicas = 1\ntimeout = 2000\n")
    workers(stack, config, ("n1", "n2"))
    load = CounterLoad(stack.url, 12, allow_unavailable=True)
    load.start()
    try:
        await until(lambda: load.answered >= 300, 30, what="load before the kill")
        keys = cli(redis_cluster.servers[0].port, "--cluster", "call",
                   redis_cluster.nodes[0], "keys", "pyjk:{*}")  # fmt: skip
        some = re.search(r"pyjk:\{[0-9A-F]+\}(?!:)", keys)
        assert some, keys
        victim = redis_cluster.master_of(some[0])
        victim.kill()
        mark = load.answered
        await until(lambda: load.answered >= mark + 400, 60, what="load after the master died")
        # its replica took its slots over (the cluster client followed the MOVED answers)
        promoted = redis_cluster.master_of(some[0])
        assert promoted is not victim
        victim.restart()  # it comes back as a replica of the promoted one
        mark = load.answered
        await until(lambda: load.answered >= mark + 200, 60, what="load after it is back")
    finally:
        await load.finish()
    assert load.errors == [], load.errors[:10]
    # the session on the failed-over slot is served again (the promoted master got the scripts
    # and has a replica again for WAIT); asked after the load: its user is done with it
    random_part = some[0].split("{")[1].rstrip("}")
    await until(lambda: counter(stack.url, f"{random_part}.n1")[0] == 200, 30,
                what="the failed-over session served again")  # fmt: skip
    assert load.unavailable > 0, "no request met the failover: the test proved nothing"
    print(f"answered={load.answered} unavailable={load.unavailable} "
          f"disconnects={load.disconnects}")  # fmt: skip


def test_the_password_comes_from_a_file_beside_the_config(stack: Stack):
    server = RedisServer(stack.group, stack.tmp / "redis-auth", free_port(),
                         ("--requirepass", "s3cret-pw")).start()  # fmt: skip
    (stack.tmp / "redis.pw").write_text("s3cret-pw\n")
    config = store_config(stack.tmp, f'url = "{server.url}"\npassword_file = "redis.pw"\n')
    workers(stack, config, ("n1",))
    n1 = f"http://127.0.0.1:{stack.backends['n1'].port}"
    assert counter(n1)[0] == 200
    assert "s3cret-pw" not in stack.backends["n1"].proc.output()


def test_redis_expires_an_idle_session_after_max_inactive(stack: Stack, redis: RedisServer):
    config = store_config(stack.tmp, f'url = "{redis.url}"\n')
    stack.start_worker("n1", "--cluster", config, "--max-inactive", "1")
    n1 = f"http://127.0.0.1:{stack.backends['n1'].port}"
    _, headers, _ = counter(n1)
    random_part, route = COOKIE_RE.search(headers["Set-Cookie"]).groups()
    key = f"pyjk:{{{random_part}}}"
    assert json.loads(counter(n1, f"{random_part}.{route}")[2])["count"] == 2  # restarts the TTL
    wait_for(lambda: cli(redis.port, "exists", key).strip() == "0", 10, what="the key expired")
    _, headers, body = counter(n1, f"{random_part}.{route}")
    assert json.loads(body)["count"] == 1 and random_part not in headers["Set-Cookie"]
