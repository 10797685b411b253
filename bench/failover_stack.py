"""The failover benchmark's processes: three replicated workers and the balancer, on 127.0.0.1.

Every file is generated into the run's directory: a cluster.toml with its own cluster name and
multicast port (so parallel runs never merge), a fresh key file, workers.properties with active
health checks and a short recover_time, and the URI map. Processes run in their own process
groups under race_procs.Supervisor, which kills the groups at exit whatever happened.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import secrets
import signal
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from race_procs import Child, StartError, Supervisor, free_ports, wait_http_ready

ROOT = Path(__file__).resolve().parents[1]
ROUTES = ("node1", "node2", "node3")
# as the shipped conf: /-/ready probed, and a worker's 503 (it refuses while taking its sessions
# over after a restart) retried on another member without taking the member out (soft, "-")
HEALTH = {
    "health_check_interval": 500,
    "health_check_rise": 2,
    "health_check_fall": 2,
    "fail_on_status": -503,
}


def get_json(port: int, path: str, timeout: float = 2.0) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        try:
            return resp.status, json.loads(body or b"null")
        except ValueError:
            return resp.status, body.decode("utf-8", "replace")
    finally:
        conn.close()


def new_cluster_file(tmp: Path, prefix: str, replication: str = "") -> Path:
    """A fresh sealed cluster in ``tmp``: a key file (0600) and a cluster.toml with a unique
    name and multicast port, sync replication (plus ``replication``'s lines, e.g. the mode)."""
    key = tmp / "cluster.key"
    key.write_text(secrets.token_hex(32) + "\n")
    key.chmod(0o600)
    file = tmp / "cluster.toml"
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    file.write_text(cluster_toml(name, random.randint(20000, 60000), "sync", key, replication))
    return file


def wait(check: Any, timeout: float, what: str) -> float:
    """Poll ``check`` every 10 ms; the seconds it took, or SystemExit after ``timeout``."""
    began = time.monotonic()
    while not check():
        if time.monotonic() - began > timeout:
            raise SystemExit(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)
    return time.monotonic() - began


def cluster_toml(name: str, mport: int, mode: str, key_file: Path, replication: str = "") -> str:
    """The shipped conf/cluster.toml's settings, with this run's name, port, key and send
    mode; ``replication``: more lines of that section (e.g. ``mode = "distributed"``)."""
    return (
        f'name = "{name}"\n'
        "[membership]\n"
        f'multicast = true\ngroup = "228.0.0.4"\nport = {mport}\ninterface = "127.0.0.1"\n'
        "ttl = 1\nfrequency = 500\ndrop_time = 3000\nprobe_timeout = 1000\n"
        '[receiver]\nhost = "127.0.0.1"\nport = 0\n'
        "[replication]\n"
        f'send_mode = "{mode}"\nack_timeout = 3000\nstate_transfer_timeout = 60000\n'
        "anti_entropy_interval = 5000\ntouch_interval = 2000\n"
        f"{replication}"
        f'[security]\nkey_file = "{key_file}"\ninsecure = false\n'
    )


def workers_properties(ports: dict[str, int], pool_size: int = 0) -> str:
    """Members with health checks; `pool_size` > 0 sets connection_pool_size (else default)."""
    lines = [
        "worker.list=lb,jkstatus",
        "worker.maintain=1",
        "worker.lb.type=lb",
        f"worker.lb.balance_workers={','.join(ports)}",
        "worker.lb.sticky_session=on",
        "worker.lb.recover_time=1",
    ]
    for route, port in ports.items():
        lines += [
            f"worker.{route}.type=http",
            f"worker.{route}.host=127.0.0.1",
            f"worker.{route}.port={port}",
            f"worker.{route}.route={route}",
        ]
        lines += [f"worker.{route}.{key}={value}" for key, value in HEALTH.items()]
        if pool_size > 0:
            lines.append(f"worker.{route}.connection_pool_size={pool_size}")
    lines.append("worker.jkstatus.type=status")
    return "\n".join(lines) + "\n"


MOUNTS = "/app|/*=lb\n/jkmanager|/*=jkstatus\n"


@dataclass
class Stack:
    """Balancer + three cluster workers of one run (one send mode; "none": no cluster)."""

    sup: Supervisor
    tmp: Path
    mode: str
    ports: dict[str, int] = field(default_factory=dict)
    workers: dict[str, Child] = field(default_factory=dict)
    balancer_port: int = 0
    balancer_pid: int = 0
    cluster_file: Path | None = None
    starts: int = 0
    pool_size: int = 0  # the balancer's connection_pool_size per member; 0: its default
    store_toml: str = ""  # a whole cluster.toml instead of the generated one (store_bench.py)
    replication: str = ""  # more [replication] lines of the generated one (the session mode)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.balancer_port}"

    def start(self, timeout: float = 60.0) -> None:
        *worker_ports, self.balancer_port = free_ports(len(ROUTES) + 1)
        self.ports = dict(zip(ROUTES, worker_ports, strict=True))
        if self.store_toml:  # an external store: no membership to wait for
            self.cluster_file = self.tmp / "cluster.toml"
            self.cluster_file.write_text(self.store_toml)
        elif self.mode != "none":
            key = self.tmp / "cluster.key"
            key.write_text(secrets.token_hex(32) + "\n")
            key.chmod(0o600)
            self.cluster_file = self.tmp / "cluster.toml"
            name = f"failover-{self.mode}-{uuid.uuid4().hex[:8]}"
            self.cluster_file.write_text(
                cluster_toml(name, random.randint(20000, 60000), self.mode, key, self.replication)
            )
        for route in ROUTES:
            self.start_worker(route)
        if self.cluster_file is None or self.store_toml:
            for route, child in self.workers.items():
                wait_http_ready(child, "127.0.0.1", self.ports[route], "/-/ready", timeout)
        else:
            self.wait_cluster(timeout)
        workers_file, mounts_file = self.tmp / "workers.properties", self.tmp / "uriworkermap"
        workers_file.write_text(workers_properties(self.ports, self.pool_size))
        mounts_file.write_text(MOUNTS)
        balancer = self.sup.start(
            "balancer",
            [sys.executable, "-m", "balancer", "--workers", str(workers_file), "--mounts",
             str(mounts_file), "--listen", f"127.0.0.1:{self.balancer_port}"],
            cpu=None, log=self.tmp / "balancer.log", cwd=ROOT,
        )  # fmt: skip
        self.balancer_pid = balancer.pid
        wait_http_ready(balancer, "127.0.0.1", self.balancer_port, "/app/counter", timeout)
        self.wait_members_ok(set(ROUTES), timeout)

    def start_worker(self, route: str) -> Child:
        self.starts += 1
        argv = [sys.executable, "-m", "worker", "--route", route, "--listen",
                f"127.0.0.1:{self.ports[route]}"]  # fmt: skip
        if self.cluster_file is not None:
            argv += ["--cluster", str(self.cluster_file)]
        child = self.sup.start(route, argv, cpu=None, log=self.tmp / f"{route}-{self.starts}.log",
                               cwd=ROOT)  # fmt: skip
        self.workers[route] = child
        return child

    def wait_cluster(self, timeout: float) -> None:
        """Until every worker is ready and lists all three members."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            for child in self.workers.values():
                if child.popen.poll() is not None:
                    raise StartError(f"{child.name} exited:\n{child.log_tail()}")
            try:
                views = [get_json(port, "/cluster-manager")[1] for port in self.ports.values()]
                last = [(v["ready"], len(v["members"])) for v in views]
                if all(v["ready"] and len(v["members"]) == len(ROUTES) for v in views):
                    return
            except (OSError, http.client.HTTPException, KeyError, TypeError) as exc:
                last = exc
            time.sleep(0.1)
        raise StartError(f"the cluster did not form within {timeout:.0f}s (last: {last!r}); "
                         f"logs in {self.tmp}")  # fmt: skip

    def member_states(self) -> dict[str, str]:
        """Each lb member's state as the balancer's status worker reports it."""
        status, text = get_json(self.balancer_port, "/jkmanager?mime=txt")
        states: dict[str, str] = {}
        if status == 200 and isinstance(text, str):
            for line in text.splitlines():
                if line.startswith("Member:") and " name=" in line and " state=" in line:
                    name = line.split(" name=", 1)[1].split(" ", 1)[0]
                    states[name] = line.split(" state=", 1)[1].split(" ", 1)[0]
        return states

    def wait_members_ok(self, routes: set[str], timeout: float) -> float:
        started = time.monotonic()
        deadline = started + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, http.client.HTTPException):
                states = self.member_states()
                if all(states.get(r, "").startswith("OK") for r in routes):
                    return time.monotonic() - started
            time.sleep(0.05)
        raise StartError(f"balancer members {sorted(routes)} not OK within {timeout:.0f}s")

    def busiest(self) -> str:
        """The route whose node holds the most live sessions (per the cluster's own view);
        node2 without a cluster."""
        counts: dict[str, int] = {}
        if self.cluster_file is None:
            return "node2"
        for port in self.ports.values():
            with contextlib.suppress(OSError, http.client.HTTPException, KeyError, TypeError):
                for member in get_json(port, "/cluster-manager")[1]["members"]:
                    counts[member["route"]] = max(counts.get(member["route"], 0),
                                                  member["live_sessions"])  # fmt: skip
        return max(sorted(counts), key=lambda r: counts[r]) if counts else "node2"

    def kill9(self, route: str) -> float:
        """SIGKILL the worker's whole process group; returns the wall time of the kill."""
        child = self.workers[route]
        at = time.time()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        child.popen.wait(10)
        return at

    def restart(self, route: str, timeout: float = 60.0) -> dict[str, float]:
        """Start the route again on its port; wall times of start, ready, and back in the lb."""
        times = {"restart": time.time()}
        child = self.start_worker(route)
        wait_http_ready(child, "127.0.0.1", self.ports[route], "/-/ready", timeout)
        times["ready"] = time.time()
        self.wait_members_ok({route}, timeout)
        times["in_lb"] = time.time()
        return times

    def counters(self) -> dict[str, dict[str, int]]:
        out = {}
        for route, port in self.ports.items():
            with contextlib.suppress(OSError, http.client.HTTPException, KeyError, TypeError):
                out[route] = get_json(port, "/cluster-manager")[1]["counters"]
        return out
