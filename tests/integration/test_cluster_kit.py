"""The kit the cluster tests share (no tests here): real worker processes on 127.0.0.1 joined
by real loopback multicast. Each cluster gets its own name and group port, so parallel runs
never merge; every process is stopped at teardown, whatever happened."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from replication.keyfile import create_key
from tests.support.procs import Proc, ProcGroup, free_port, proc_group, wait_for

# Fast timings so the whole suite stays short; the rules under test are the same.
FAST = {
    "membership": {"frequency": 100, "drop_time": 1000, "probe_timeout": 300},
    "replication": {
        "ack_timeout": 1000,
        "state_transfer_timeout": 10000,
        "anti_entropy_interval": 500,
        "touch_interval": 300,
    },
}


def http(
    url: str, headers: dict[str, str] | None = None, data: bytes | None = None
) -> tuple[int, Any, bytes]:
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


def session_cookie(headers: Any) -> str:
    for value in headers.get_all("Set-Cookie") or []:
        if value.startswith("JSESSIONID="):
            return value.split(";")[0]
    raise AssertionError(f"no session cookie in {headers}")


class Node:
    def __init__(self, route: str, port: int, proc: Proc, config: Path) -> None:
        self.route, self.port, self.proc, self.config = route, port, proc, config
        self.url = f"http://127.0.0.1:{port}"

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any, bytes]:
        return http(self.url + path, headers)

    def manager(self) -> dict[str, Any]:
        status, _, body = self.get("/cluster-manager")
        assert status == 200, body
        return json.loads(body)

    def routes(self) -> set[str]:
        return {m["route"] for m in self.manager()["members"]}

    def counters(self) -> dict[str, int]:
        return self.manager()["counters"]

    def ready(self) -> bool:
        try:
            return self.get("/-/ready")[0] == 200
        except OSError:
            return False

    def up(self, ready: bool) -> bool:
        """Alive, and ready (or at least its cluster node answering)."""
        if not self.proc.alive():
            raise AssertionError(f"{self.route} exited:\n{self.log()[-3000:]}")
        return self.ready() if ready else self.get("/cluster-manager")[0] == 200

    def cut(self, on: bool) -> None:
        body = json.dumps({"cut": on}).encode()
        status, _, _ = http(self.url + "/-/cluster/faults", {"Content-Type": "application/json"},
                            body)  # fmt: skip
        assert status == 200

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def log(self) -> str:
        return self.proc.output()


class Cluster:
    """Workers of one test cluster; `config()` writes a cluster.toml variant into tmp."""

    def __init__(self, group: ProcGroup, tmp: Path) -> None:
        self.group, self.tmp = group, tmp
        self.name = f"t-{uuid.uuid4().hex[:12]}"
        self.mport = random.randint(20000, 60000)
        self.default_config = self.config()

    def config(self, *, name: str | None = None, key_dir: Path | None = None,
               **sections: dict[str, Any]) -> Path:  # fmt: skip
        tables = {k: dict(v) for k, v in FAST.items()}
        tables.setdefault("membership", {}).update(port=self.mport)
        for section, values in sections.items():
            tables.setdefault(section, {}).update(values)
        directory = key_dir or self.tmp
        directory.mkdir(parents=True, exist_ok=True)
        lines = [f'name = "{name or self.name}"']
        for section, values in tables.items():
            lines.append(f"[{section}]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in values.items()]
        path = directory / f"cluster-{uuid.uuid4().hex[:6]}.toml"
        path.write_text("\n".join(lines) + "\n")
        if tables.get("store", {}).get("kind") == "redis":
            # a worker on Redis only announces itself: it refuses to make the key (the
            # balancer, or a replicating member, does), so the operator's copy is made here
            create_key(directory / "cluster.key")
        return path

    def start(
        self, route: str, config: Path | None = None, *, wait_ready: bool = True, **kw: Any
    ) -> Node:
        return self.start_many([route], config, wait_ready=wait_ready, **kw)[0]

    def start_many(
        self,
        routes: list[str],
        config: Path | list[Path] | None = None,
        *,
        wait_ready: bool = True,
        args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> list[Node]:
        """Start workers side by side (one config, or one per route), then wait for each
        (ready, or at least its cluster node answering)."""
        configs = (
            config if isinstance(config, list) else [config or self.default_config] * len(routes)
        )
        nodes = []
        for route, path in zip(routes, configs, strict=True):
            port = free_port()
            proc = self.group.python(
                "-m", "worker", "--route", route, "--listen", f"127.0.0.1:{port}",
                "--cluster", str(path), *args, name=f"{route}-{port}",
                env={"PYJK_CLUSTER_FAULTS": "1", **(env or {})},
            )  # fmt: skip
            nodes.append(Node(route, port, proc, path))
        for node in nodes:
            try:
                wait_for(lambda n=node: n.up(wait_ready), 20, what=f"{node.route} to start")
            except AssertionError:
                raise AssertionError(f"{node.route} did not start:\n{node.log()[-3000:]}") from None
        return nodes


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with proc_group(tmp_path) as group:
        yield Cluster(group, tmp_path)
        for proc in group.procs:  # all stop together; proc_group then waits for each
            proc.signal(signal.SIGTERM)
        for proc in group.procs:  # pytest shows captured output only when the test failed
            print(f"--- {proc.log_path.name}\n{proc.log_path.read_text(errors='replace')[-4000:]}")


def wait_until(check: Any, timeout: float, what: str) -> float:
    """Poll until `check()` is true; returns the seconds it took (AssertionError on timeout)."""
    started = time.monotonic()
    wait_for(check, timeout, interval=0.01, what=what)
    return time.monotonic() - started


def multicast_socket(group: str, port: int) -> socket.socket:
    """A loopback socket joined to the cluster's group: to capture and send heartbeats."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((group, port))
    mreq = socket.inet_aton(group) + socket.inet_aton("127.0.0.1")
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 0)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
    sock.settimeout(5)
    return sock
