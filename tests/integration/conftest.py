"""Fixtures that start real processes: backends, the balancer, workers. Always stopped."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.procs import ROOT, Proc, ProcGroup, free_port, port_open, wait_for

BACKENDS = Path(__file__).parent / "backends"


def http_get(url: str, headers: dict[str, str] | None = None, timeout: float = 10.0):
    """GET returning (status, headers, body bytes) without raising on 4xx/5xx."""
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


def http_json(url: str, headers: dict[str, str] | None = None) -> dict:
    status, _, body = http_get(url, headers)
    assert status == 200, (status, body[:300])
    return json.loads(body)


@dataclass
class Backend:
    name: str
    port: int
    proc: Proc


@dataclass
class Stack:
    """Backends and a balancer of one test."""

    group: ProcGroup
    tmp: Path
    backends: dict[str, Backend] = field(default_factory=dict)
    balancer: Proc | None = None
    port: int = 0
    workers_file: Path | None = None
    mounts_file: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start_backend(self, name: str, port: int | None = None) -> Backend:
        port = port or free_port()
        proc = self.group.python(str(BACKENDS / "app_backend.py"), name, str(port), name=name)
        wait_for(lambda: port_open(port), 15, what=f"backend {name} on {port}")
        backend = Backend(name, port, proc)
        self.backends[name] = backend
        return backend

    def start_worker(self, name: str, *args: str, port: int | None = None) -> Backend:
        """A real ``python -m worker`` node with route ``name``; ready when /-/ready is 200."""
        port = port or free_port()
        proc = self.group.python(
            "-m", "worker", "--route", name, "--listen", f"127.0.0.1:{port}", *args, name=name
        )
        wait_for(
            lambda: http_get(f"http://127.0.0.1:{port}/-/ready", timeout=1)[0] == 200,
            20,
            what=f"worker {name} ready",
        )
        backend = Backend(name, port, proc)
        self.backends[name] = backend
        return backend

    def restart_backend(self, name: str) -> Backend:
        old = self.backends[name]
        return self.start_backend(name, old.port)

    def workers_properties(self, members: list[str], extra: str = "", lb: str = "") -> str:
        lines = [
            "worker.list=lb,jkstatus",
            "worker.maintain=1",
            "worker.lb.type=lb",
            f"worker.lb.balance_workers={','.join(members)}",
            "worker.lb.recover_time=1",
        ]
        lines += [line for line in lb.splitlines() if line.strip()]
        for name in members:
            b = self.backends[name]
            lines += [
                f"worker.{name}.type=http",
                f"worker.{name}.host=127.0.0.1",
                f"worker.{name}.port={b.port}",
                f"worker.{name}.route={name}",
            ]
        lines += ["worker.jkstatus.type=status", extra]
        return "\n".join(lines) + "\n"

    def start_balancer(
        self,
        workers: str,
        mounts: str = "/app|/*=lb\n/jkmanager|/*=jkstatus\n",
        args: tuple[str, ...] = (),
    ) -> Proc:
        self.workers_file = self.tmp / "workers.properties"
        self.mounts_file = self.tmp / "uriworkermap.properties"
        self.workers_file.write_text(workers)
        self.mounts_file.write_text(mounts)
        self.port = free_port()
        proc = self.group.python(
            "-m",
            "balancer",
            "--workers",
            str(self.workers_file),
            "--mounts",
            str(self.mounts_file),
            "--listen",
            f"127.0.0.1:{self.port}",
            *args,
            name="balancer",
        )
        self.balancer = proc
        wait_for(lambda: port_open(self.port) or not proc.alive(), 20, what="balancer")
        assert proc.alive(), proc.output()
        return proc

    def status_txt(self) -> str:
        status, _, body = http_get(f"{self.url}/jkmanager?mime=txt")
        assert status == 200, body
        return body.decode()

    def member_state(self, member: str) -> str:
        for line in self.status_txt().splitlines():
            if line.startswith("Member:") and f" name={member} " in line:
                return line.split(" state=", 1)[1].split(" ", 1)[0]
        raise AssertionError(f"member {member} not in status output")


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    group = ProcGroup(tmp_path)
    try:
        yield Stack(group, tmp_path)
    finally:
        group.stop_all()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach the processes' logs to a failed integration test's report."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and "stack" in item.funcargs:
        report.sections.append(("process logs", item.funcargs["stack"].group.logs()))


__all__ = ["ROOT", "Stack", "http_get", "http_json", "wait_for"]
