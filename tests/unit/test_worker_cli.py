"""`python -m worker`: argument parsing, app loading, and the real process on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from worker.__main__ import parse_args
from worker.server import WorkerSetupError, load_app, serve
from worker.sessions import DEFAULT_MAX_ACTIVE_SESSIONS

REPO = Path(__file__).resolve().parents[2]
START_DEADLINE = 20.0


# -- app factories used by the subprocess tests (imported by the worker as --app) ------------
async def slow_app() -> web.Application:
    """An async factory whose /slow handler marks when it starts, then takes a moment."""

    async def slow(request: web.Request) -> web.Response:
        Path(os.environ["PYJK_TEST_MARKER"]).write_text("entered")
        await asyncio.sleep(0.5)
        return web.Response(text="finished")

    app = web.Application()
    app.router.add_get("/slow", slow)
    return app


def not_an_app() -> object:
    return "nope"


# -- in-process -------------------------------------------------------------------------------
def test_parse_args_defaults_and_listen_forms():
    options = parse_args(["--route", "node1"])
    assert (options.host, options.port, options.app) == (
        "127.0.0.1",
        8101,
        "worker.demo:create_app",
    )
    assert options.max_inactive == 1800.0
    options = parse_args(["--route", "n2", "--listen", "[::1]:9000", "--max-inactive", "-1"])
    assert (options.host, options.port, options.max_inactive) == ("::1", 9000, -1.0)


def test_max_active_sessions_has_the_sized_default_and_can_be_set():
    assert parse_args(["--route", "n1"]).max_active_sessions == DEFAULT_MAX_ACTIVE_SESSIONS
    assert parse_args(["--route", "n1", "--max-active-sessions", "3"]).max_active_sessions == 3


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--route", "bad route"],
        ["--route", "n1", "--listen", "8101"],
        ["--route", "n1", "--listen", "h:99999"],
        ["--route", "n1", "--max-inactive", "nan"],
        ["--route", "n1", "--max-active-sessions", "0"],
        ["--route", "n1", "--max-active-sessions", "many"],
        ["--route", "n1", "--failover", "bad group"],
    ],
)
def test_parse_args_refuses_bad_arguments(argv, capsys):
    with pytest.raises(SystemExit) as info:
        parse_args(argv)
    assert info.value.code == 2


def test_failover_takes_a_group_and_needs_a_cluster():
    options = parse_args(["--route", "n1", "--failover", "front", "--cluster", "c.toml"])
    assert options.failover == "front"
    with pytest.raises(WorkerSetupError, match="--failover needs --cluster"):
        asyncio.run(serve(parse_args(["--route", "n1", "--failover", "front"])))


async def test_load_app_accepts_sync_and_async_factories():
    assert isinstance(await load_app("worker.demo:create_app"), web.Application)
    assert isinstance(await load_app("tests.unit.test_worker_cli:slow_app"), web.Application)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("worker.demo", "expected 'package.module:factory'"),
        ("no_such_module_xyz:f", "cannot import"),
        ("worker.demo:missing", "no callable 'missing'"),
        ("tests.unit.test_worker_cli:not_an_app", "returned str"),
    ],
)
async def test_load_app_explains_what_is_wrong(spec, message):
    with pytest.raises(WorkerSetupError, match=message):
        await load_app(spec)


# -- the real process -------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status, dict(resp.headers.items()), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers.items()), exc.read()


class Worker:
    def __init__(self, proc: subprocess.Popen, base: str, log: Path) -> None:
        self.proc, self.base, self.log = proc, base, log

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_DEADLINE
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"worker exited early ({self.proc.returncode}): {self.log.read_text()}")
            try:
                if get(self.base + "/-/ready")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)  # polling interval while the process starts, not synchronisation
        pytest.fail(f"worker not ready within {START_DEADLINE}s: {self.log.read_text()}")


@pytest.fixture
def start_worker(tmp_path) -> Iterator:
    procs: list[subprocess.Popen] = []

    def start(*extra: str, env: dict[str, str] | None = None) -> Worker:
        port = free_port()
        log = tmp_path / f"worker-{port}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "worker", "--route", "node1",
                 "--listen", f"127.0.0.1:{port}", *extra],
                cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
            )  # fmt: skip
        procs.append(proc)
        worker = Worker(proc, f"http://127.0.0.1:{port}", log)
        worker.wait_ready()
        return worker

    yield start
    for proc in procs:  # even when the test failed
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


@pytest.mark.integration
def test_worker_serves_the_counter_per_session_and_exits_0_on_sigterm(start_worker):
    worker = start_worker()
    status, headers, body = get(worker.base + "/-/ready")
    assert status == 200 and json.loads(body)["route"] == "node1"

    status, headers, body = get(worker.base + "/app/counter")
    first = json.loads(body)
    cookie = headers["Set-Cookie"].split(";")[0]
    assert status == 200 and first["count"] == 1 and cookie == f"JSESSIONID={first['session']}"
    status, _, body = get(worker.base + "/app/counter", {"Cookie": cookie})
    assert json.loads(body) == {"node": "node1", "session": first["session"], "count": 2}

    worker.proc.send_signal(signal.SIGTERM)
    assert worker.proc.wait(timeout=15) == 0


@pytest.mark.integration
def test_sigterm_lets_an_in_flight_request_finish(start_worker, tmp_path):
    marker = tmp_path / "entered"
    worker = start_worker(
        "--app", "tests.unit.test_worker_cli:slow_app", env={"PYJK_TEST_MARKER": str(marker)}
    )
    result: dict[str, object] = {}
    thread = threading.Thread(target=lambda: result.update(r=get(worker.base + "/slow")))
    thread.start()
    deadline = time.monotonic() + 10
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert marker.exists(), "the slow request never reached the handler"
    worker.proc.send_signal(signal.SIGTERM)
    thread.join(timeout=15)
    status, _, body = result["r"]  # type: ignore[misc]
    assert (status, body) == (200, b"finished")
    assert worker.proc.wait(timeout=15) == 0


@pytest.mark.integration
def test_ready_answers_503_while_draining_after_sigterm(start_worker):
    worker = start_worker("--drain", "3")
    worker.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 3
    status = 200
    while status == 200 and time.monotonic() < deadline:
        status, _, body = get(worker.base + "/-/ready")
    assert status == 503 and json.loads(body)["waiting_for"] == ["shutting-down"]
    assert worker.proc.wait(timeout=15) == 0


@pytest.mark.integration
def test_a_bad_app_spec_exits_2_with_a_message(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "worker", "--route", "n1", "--listen", f"127.0.0.1:{free_port()}",
         "--app", "tests.unit.test_worker_cli:not_an_app"],
        cwd=REPO, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert proc.returncode == 2 and "returned str" in proc.stderr


def test_route_auto_picks_a_fresh_valid_route_and_port_0_is_accepted():
    from worker.session_ids import check_route

    first = parse_args(["--route", "auto", "--listen", "127.0.0.1:0"])
    second = parse_args(["--route", "auto"])
    assert first.route != second.route and first.route.startswith("w")
    assert check_route(first.route) == first.route and len(first.route) == 9
    assert (first.host, first.port, first.lbfactor) == ("127.0.0.1", 0, 1)
    assert parse_args(["--route", "n1", "--lbfactor", "7"]).lbfactor == 7


@pytest.mark.parametrize("bad", ["0", "100001", "x", "-1"])
def test_lbfactor_out_of_range_is_refused(bad, capsys):
    with pytest.raises(SystemExit):
        parse_args(["--route", "n1", "--lbfactor", bad])
    assert "expected a whole number 1..100000" in capsys.readouterr().err
