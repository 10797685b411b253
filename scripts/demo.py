"""The README's demo: the balancer in front of three worker nodes, all on 127.0.0.1.

    scripts/demo.sh            (installs what is missing, then runs this)

Starts ``python -m worker --route nodeN --listen 127.0.0.1:810N --cluster conf/cluster.toml``
for N = 1..3 (as conf/workers.properties expects: one replicated cluster over loopback
multicast) and ``python -m balancer`` on 127.0.0.1:8080 with the shipped conf/, waits until each
answers and prints where to look.

The demo is there to show a failover, so a worker that dies does not stop it: it says so, keeps
serving through the other two, and starts the worker again after ``--restart-after`` seconds
(5), then says when it is back and ready (it rejoins and takes the cluster's sessions over by
state transfer). Only Ctrl-C or SIGTERM stops everything, or the balancer itself exiting.
``--duration S`` stops by itself after S seconds (used by the demo's own test).
``--cluster FILE`` gives the workers another cluster file: ``conf/cluster-redis.toml`` keeps
the sessions in a Redis server on 127.0.0.1:6379 instead (docs/redis.md).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
NODES = (("node1", 8101), ("node2", 8102), ("node3", 8103))
POLL = 0.2  # s between looks at the processes


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return resp.status == 200
    except OSError:
        return False


def _free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def _sessions(port: int) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/cluster-manager", timeout=1) as r:
            return int(json.load(r)["sessions"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _exit_text(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


@dataclass
class Restarts:
    """Which dead workers are due to start again (pure: time passed in)."""

    delay: float
    due_at: dict[str, float] = field(default_factory=dict)

    def died(self, route: str, now: float) -> None:
        self.due_at.setdefault(route, now + self.delay)

    def due(self, now: float) -> list[str]:
        routes = [r for r, t in self.due_at.items() if t <= now]
        for r in routes:
            del self.due_at[r]
        return routes


class Demo:
    def __init__(self, port: int, restart_after: float, cluster: Path = CONF / "cluster.toml"):
        self.port = port
        self.cluster = cluster
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self.balancer: subprocess.Popen[bytes] | None = None
        self.restarts = Restarts(restart_after)
        self.rejoining: set[str] = set()  # restarted, not ready yet

    def start_worker(self, route: str, port: int) -> None:
        argv = [sys.executable, "-m", "worker", "--route", route, "--listen",
                f"127.0.0.1:{port}", "--cluster", str(self.cluster)]  # fmt: skip
        self.workers[route] = subprocess.Popen(argv, cwd=ROOT, env=self.env)

    def start(self) -> None:
        for route, port in NODES:
            self.start_worker(route, port)
        argv = [sys.executable, "-m", "balancer", "--workers", str(CONF / "workers.properties"),
                "--mounts", str(CONF / "uriworkermap.properties"), "--listen",
                f"127.0.0.1:{self.port}"]  # fmt: skip
        self.balancer = subprocess.Popen(argv, cwd=ROOT, env=self.env)

    def all_procs(self) -> list[subprocess.Popen[bytes]]:
        return [*self.workers.values(), *([self.balancer] if self.balancer else [])]

    def wait_up(self, timeout: float) -> bool:
        checks = [f"http://127.0.0.1:{p}/-/ready" for _, p in NODES]
        checks.append(f"http://127.0.0.1:{self.port}/app/counter")
        deadline = time.monotonic() + timeout
        while not all(_ready(u) for u in checks):
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.all_procs()):
                return False
            time.sleep(POLL)
        return True

    def pids(self) -> str:
        return ", ".join(f"{r} pid {p.pid}" for r, p in self.workers.items())

    def watch(self, now: float) -> bool:
        """One look at the processes; False when the balancer is gone (the demo ends)."""
        assert self.balancer is not None
        if self.balancer.poll() is not None:
            print(f"demo: the balancer exited ({_exit_text(self.balancer.returncode)}); "
                  "stopping the workers", flush=True)  # fmt: skip
            return False
        for route, _port in NODES:
            proc = self.workers[route]
            if proc.poll() is not None and route not in self.restarts.due_at:
                self.rejoining.discard(route)
                self.restarts.died(route, now)
                gone = _exit_text(proc.returncode)
                print(f"\ndemo: {route} (pid {proc.pid}) is gone ({gone}). The demo keeps "
                      "serving: the balancer sends its sessions to the other nodes, which hold "
                      f"them too — reload the page.\ndemo: starting {route} again in "
                      f"{self.restarts.delay:g} s", flush=True)  # fmt: skip
        for route in self.restarts.due(now):
            port = dict(NODES)[route]
            self.start_worker(route, port)
            self.rejoining.add(route)
            print(f"demo: {route} started again (pid {self.workers[route].pid}); it rejoins the "
                  "cluster and takes the sessions over (state transfer)", flush=True)  # fmt: skip
        for route in list(self.rejoining):
            port = dict(NODES)[route]
            if self.workers[route].poll() is None and _ready(f"http://127.0.0.1:{port}/-/ready"):
                self.rejoining.discard(route)
                held = _sessions(port)
                got = f" with {held} sessions" if held is not None else ""
                print(f"demo: {route} is back and ready{got}; the balancer sends it requests "
                      "again once its health check passes", flush=True)  # fmt: skip
        return True

    def stop(self) -> None:
        procs = self.all_procs()
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8080, help="balancer port (default 8080)")
    parser.add_argument("--duration", type=float, default=0, help="stop after S seconds")
    parser.add_argument("--restart-after", type=float, default=5.0, metavar="S",
                        help="start a dead worker again after S seconds (default 5)")  # fmt: skip
    parser.add_argument("--cluster", type=Path, default=CONF / "cluster.toml", metavar="FILE",
                        help="the workers' cluster file (default conf/cluster.toml; "
                        "conf/cluster-redis.toml: sessions in Redis on :6379)")  # fmt: skip
    args = parser.parse_args()
    busy = [p for p in (args.port, *(p for _, p in NODES)) if not _free(p)]
    if busy:
        print(f"demo: port(s) {busy} on 127.0.0.1 are in use; stop what holds them", flush=True)
        return 1
    demo = Demo(args.port, args.restart_after, args.cluster.resolve())

    def stop(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        demo.start()
        if not demo.wait_up(30):
            print("demo: a process did not come up; see the output above", flush=True)
            return 1
        base = f"http://127.0.0.1:{args.port}"
        print(
            "\npyjk demo is up:\n"
            f"  demo app (open in a browser)  {base}/app/\n"
            f"  session counter (JSON)        {base}/app/counter\n"
            f"  status page (jkmanager)       {base}/jkmanager\n"
            f"  status as text                {base}/jkmanager?mime=txt\n"
            f"  workers (one replicated cluster) node1..node3 on 127.0.0.1:8101-8103\n"
            f"  the cluster as node1 sees it  http://127.0.0.1:8101/cluster-manager\n"
            f"  worker processes              {demo.pids()}\n"
            "Try it: note the node serving you, kill it (kill -9 <its pid>), and reload: another\n"
            "node answers with the same session and counter. The demo keeps running and starts\n"
            f"the killed node again after {args.restart_after:g} s.\n"
            "Press Ctrl-C to stop.\n",
            flush=True,
        )
        end = time.monotonic() + args.duration if args.duration else None
        while end is None or time.monotonic() < end:
            if not demo.watch(time.monotonic()):
                return 1
            time.sleep(POLL)
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        demo.stop()
        print("demo: stopped", flush=True)


if __name__ == "__main__":
    sys.exit(main())
