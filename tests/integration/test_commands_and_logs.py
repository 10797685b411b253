"""The installed commands as a user runs them: from any directory, --version, JSON logs, and an
access log that logrotate can rotate (rename, SIGUSR1, the next line lands in a new file)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import http_get
from tests.support.procs import free_port, port_open, wait_for

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
MYAPP = """
from aiohttp import web

async def hello(request):
    return web.json_response({"app": "myapp"})

def make_app():
    app = web.Application()
    app.router.add_get("/hello", hello)
    return app
"""


@contextlib.contextmanager
def command(args: list[str], cwd: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """An installed command started in ``cwd``, stopped (its group killed if need be) after."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("PYTHONPATH", None)  # what a user's shell has: nothing pointing at the repo
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            args, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize("name", ["pyjk-balancer", "pyjk-worker"])
def test_both_commands_tell_their_version_and_name_themselves_in_help(name, tmp_path):
    version = subprocess.run(
        [str(BIN / name), "--version"], cwd=tmp_path, capture_output=True, text=True, timeout=30
    )
    assert version.returncode == 0
    if name == "pyjk-balancer":  # issue 12: it says whether its hot path runs compiled
        assert re.fullmatch(
            rf"{name} 0\.1\.0, hot path (compiled \(\d+ modules\)|pure \(.+\))",
            version.stdout.strip(),
        ), version.stdout
    else:
        assert version.stdout.strip() == f"{name} 0.1.0"
    helped = subprocess.run(
        [str(BIN / name), "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=30
    )
    assert helped.stdout.startswith(f"usage: {name} ")
    assert "--log-format" in helped.stdout


def test_pyjk_worker_imports_the_app_from_the_current_directory(tmp_path):
    (tmp_path / "myapp.py").write_text(MYAPP)
    port = free_port()
    log = tmp_path / "worker.log"
    args = [str(BIN / "pyjk-worker"), "--route", "n1", "--listen", f"127.0.0.1:{port}"]
    with command([*args, "--app", "myapp:make_app"], tmp_path, log) as proc:
        wait_for(lambda: port_open(port) or proc.poll() is not None, 20, what="worker")
        assert proc.poll() is None, log.read_text()
        status, _, body = http_get(f"http://127.0.0.1:{port}/hello")
        assert status == 200
        assert json.loads(body) == {"app": "myapp"}


def test_installed_commands_run_the_demo_with_json_logs_and_a_rotatable_access_log(tmp_path):
    wport, bport = free_port(), free_port()
    (tmp_path / "workers.properties").write_text(
        "worker.list=lb\nworker.lb.type=lb\nworker.lb.balance_workers=n1\n"
        f"worker.n1.type=http\nworker.n1.host=127.0.0.1\nworker.n1.port={wport}\n"
        "worker.n1.route=n1\n"
    )
    (tmp_path / "uriworkermap.properties").write_text("/app|/*=lb\n")
    access = tmp_path / "access.log"
    worker_log, balancer_log = tmp_path / "worker.log", tmp_path / "balancer.log"
    worker_args = [str(BIN / "pyjk-worker"), "--route", "n1", "--listen", f"127.0.0.1:{wport}"]
    balancer_args = [
        str(BIN / "pyjk-balancer"),
        "--workers=workers.properties",
        "--mounts=uriworkermap.properties",
        f"--listen=127.0.0.1:{bport}",
        "--access-log=access.log",
        "--log-format=json",
    ]
    with (
        command([*worker_args, "--log-format", "json"], tmp_path, worker_log) as worker,
        command(balancer_args, tmp_path, balancer_log) as balancer,
    ):
        wait_for(lambda: http_get(f"http://127.0.0.1:{wport}/-/ready", timeout=1)[0] == 200, 20,
                 what="worker ready")  # fmt: skip
        wait_for(lambda: port_open(bport) or balancer.poll() is not None, 20, what="balancer")
        assert balancer.poll() is None, balancer_log.read_text()
        status, _, body = http_get(f"http://127.0.0.1:{bport}/app/counter")
        assert status == 200
        assert json.loads(body)["node"] == "n1"
        wait_for(lambda: access.exists() and access.stat().st_size > 0, 10, what="access line")

        # logrotate: rename, then postrotate's signal; the next line goes to a new access.log
        access.rename(tmp_path / "access.log.1")
        balancer.send_signal(signal.SIGUSR1)
        wait_for(lambda: access.exists(), 10, what="a reopened access.log")
        assert http_get(f"http://127.0.0.1:{bport}/app/counter")[0] == 200
        wait_for(lambda: access.stat().st_size > 0, 10, what="a line in the new file")
        assert worker.poll() is None

    (old,) = _json_lines((tmp_path / "access.log.1").read_text())
    (new,) = _json_lines(access.read_text())
    for line in (old, new):
        assert line["method"] == "GET"
        assert line["target"] == "/app/counter"
        assert line["status"] == 200
        assert line["worker"] == "lb"
        assert line["member"] == "n1"
        assert line["time"].endswith("+00:00")
        assert 0 <= line["connect_ms"] <= line["first_byte_ms"] <= line["total_ms"]
        assert line["request_id"]
    assert old["request_id"] != new["request_id"]

    for log, logger in ((balancer_log, "pyjk.balancer"), (worker_log, "pyjk.worker")):
        lines = _json_lines(log.read_text())  # every line is one JSON object
        assert lines, log
        assert all(line["time"].endswith("+00:00") for line in lines)
        assert any(line["logger"] == logger for line in lines)
    reopened = [
        line for line in _json_lines(balancer_log.read_text()) if "reopened" in line["message"]
    ]
    assert reopened and reopened[0]["path"] == "access.log"
