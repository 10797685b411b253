"""Cluster caches (issue 16) on real workers over loopback multicast, shipped timings:

1. bytes sent per write on `--nodes` nodes (default 6): a distributed cache (owners = 2), a
   replicated cache, and the same run's 1-attribute session write (all-to-all), from the
   nodes' own `bytes_out` counters (sealed TCP frames); then the same session write on a
   second cluster of as many nodes with `[replication] mode = "distributed"`, `owners = 2`;
2. write → visible latency, p50/p99 per mode: a put on one node, then a read on another
   (distributed, replicated: the new value; invalidated: no longer the old one), beside the
   same run's session write time;
3. a 1 000-key distributed cache on `--kill-nodes` nodes (default 5): kill -9 one node; every
   key still readable, and the time until every key is back at 2 copies.

    .venv/bin/python bench/cluster_caches.py --writes 200        # about 30 s

Bounded: every wait has a deadline, every process is killed at exit whatever happened.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from failover_stack import ROOT, get_json, new_cluster_file, wait
from race_procs import Child, Supervisor, free_ports, wait_http_ready

APP = "tests.integration.apps.caches:make_app"


class Conn:
    """One keep-alive connection to a worker."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.http = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        self.cookie = ""

    def call(self, method: str, path: str, body: Any = None) -> Any:
        headers = {"Content-Type": "application/json"}
        if self.cookie:
            headers["Cookie"] = self.cookie
        data = None if body is None else json.dumps(body).encode()
        if method == "POST" and data is None:
            data = b""
        self.http.request(method, path, data, headers)
        resp = self.http.getresponse()
        payload = resp.read()
        if resp.status != 200:
            raise SystemExit(f"{method} {path} on :{self.port} answered {resp.status}: {payload!r}")
        for name, value in resp.getheaders():
            if name.lower() == "set-cookie" and value.startswith("JSESSIONID="):
                self.cookie = value.split(";")[0]
        return json.loads(payload)


class Cluster:
    def __init__(self, sup: Supervisor, tmp: Path, count: int, replication: str = "") -> None:
        self.sup, self.tmp = sup, tmp
        self.file = new_cluster_file(tmp, "caches", replication)
        self.routes = [f"node{i + 1}" for i in range(count)]
        self.ports = dict(zip(self.routes, free_ports(count), strict=True))
        self.procs: dict[str, Child] = {}
        for route in self.routes:
            port = self.ports[route]
            self.procs[route] = sup.start(
                route,
                [sys.executable, "-m", "worker", "--route", route, "--listen",
                 f"127.0.0.1:{port}", "--cluster", str(self.file), "--app", APP],
                cpu=None, log=tmp / f"{route}.log", cwd=ROOT,
            )  # fmt: skip
        for route in self.routes:
            wait_http_ready(self.procs[route], "127.0.0.1", self.ports[route], "/-/ready", 60)
        wait(lambda: all(self.members(r) == count for r in self.routes), 30, "membership")

    def members(self, route: str) -> int:
        return len(get_json(self.ports[route], "/cluster-manager")[1]["members"])

    def bytes_out(self, routes: list[str] | None = None) -> int:
        return sum(
            get_json(self.ports[r], "/cluster-manager")[1]["counters"].get("bytes_out", 0)
            for r in routes or self.routes
        )

    def held(self, route: str, cache: str) -> list[str]:
        return list(get_json(self.ports[route], f"/c/{cache}/-/held")[1])


def pct(xs: list[float], q: float) -> float:
    return sorted(xs)[min(len(xs) - 1, int(q * len(xs)))]


def bytes_per_write(c: Cluster, writes: int) -> dict[str, float]:
    writer = Conn(c.ports[c.routes[0]])
    out: dict[str, float] = {}
    for label, do in (
        ("distributed", lambda i: writer.call("POST", f"/c/dist/b{i}", {"n": i})),
        ("replicated", lambda i: writer.call("POST", f"/c/repl/b{i}", {"n": i})),
        ("session all-to-all", lambda i: writer.call("POST", "/s")),
    ):
        do(-1)  # the session's creation, links connected
        time.sleep(0.3)
        before = c.bytes_out()
        for i in range(writes):
            do(i)
        time.sleep(0.3)  # copies and acks already counted (sync); heartbeats are UDP, not here
        out[label] = (c.bytes_out() - before) / writes
    return out


def session_bytes(c: Cluster, writes: int) -> float:
    """Bytes sent per 1-attribute session write, sticky on the first node (its route)."""
    writer = Conn(c.ports[c.routes[0]])
    writer.call("POST", "/s")  # the session's creation, links connected
    time.sleep(0.3)
    before = c.bytes_out()
    for _ in range(writes):
        writer.call("POST", "/s")
    time.sleep(0.3)
    return (c.bytes_out() - before) / writes


def visible(c: Cluster, writes: int) -> dict[str, list[float]]:
    a, b = Conn(c.ports[c.routes[0]]), Conn(c.ports[c.routes[1]])
    lat: dict[str, list[float]] = {"distributed": [], "replicated": [], "invalidated": [],
                                   "session write": []}  # fmt: skip
    for i in range(writes):
        for mode, cache in (("distributed", "dist"), ("replicated", "repl"),
                            ("invalidated", "inval")):  # fmt: skip
            if mode == "invalidated":
                b.call("POST", f"/c/{cache}/v", {"old": i})  # b holds a copy to invalidate
            began = time.perf_counter()
            a.call("POST", f"/c/{cache}/v", i)
            deadline = began + 5
            while True:
                got = b.call("GET", f"/c/{cache}/v")
                fresh = got["value"] == i if mode != "invalidated" else got["value"] != {"old": i}
                if fresh or time.perf_counter() > deadline:
                    break
            lat[mode].append((time.perf_counter() - began) * 1000)
        began = time.perf_counter()
        a.call("POST", "/s")
        lat["session write"].append((time.perf_counter() - began) * 1000)
    return lat


def rereplication(c: Cluster, keys: int) -> tuple[float, float]:
    writer = Conn(c.ports[c.routes[0]])
    for i in range(keys):
        writer.call("POST", f"/c/dist/r{i}", i)
    names = {f"r{i}" for i in range(keys)}
    victim = c.routes[-1]
    survivors = c.routes[:-1]

    def copies_ok(routes: list[str]) -> bool:
        counts: dict[str, int] = {}
        for route in routes:
            for key in c.held(route, "dist"):
                if key in names:
                    counts[key] = counts.get(key, 0) + 1
        return len(counts) == keys and all(n == 2 for n in counts.values())

    wait(lambda: copies_ok(c.routes), 10, "2 copies of every key before the kill")
    os.kill(c.procs[victim].pid, signal.SIGKILL)
    c.procs[victim].popen.wait(10)
    killed = time.monotonic()
    wait(lambda: copies_ok(survivors), 60, "every key back at 2 copies")
    back = time.monotonic() - killed
    reader = Conn(c.ports[survivors[0]])
    missing = [k for k in sorted(names) if not reader.call("GET", f"/c/dist/{k}")["found"]]
    if missing:
        raise SystemExit(f"{len(missing)} keys not readable after kill -9: {missing[:5]}")
    return back, time.monotonic() - killed - back


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=6)
    parser.add_argument("--kill-nodes", type=int, default=5)
    parser.add_argument("--writes", type=int, default=200)
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--only-bytes", action="store_true", help="step 1 only (sessions too)")
    args = parser.parse_args()
    sup = Supervisor(None)
    sup.install_signal_handlers()
    with tempfile.TemporaryDirectory(prefix="pyjk-caches-") as tmp:
        try:
            (Path(tmp) / "a").mkdir()
            c = Cluster(sup, Path(tmp) / "a", args.nodes)
            sizes = bytes_per_write(c, args.writes)
            print(f"bytes sent per write on {args.nodes} nodes:")
            for label, n in sizes.items():
                print(f"  {label:<20} {n:8.0f}")
            if not args.only_bytes:
                lat = visible(c, args.writes)
            sup.stop_all()
            (Path(tmp) / "d").mkdir()
            d = Cluster(sup, Path(tmp) / "d", args.nodes, 'mode = "distributed"\nowners = 2\n')
            print(
                f"  {'session distributed':<20} {session_bytes(d, args.writes):8.0f}"
                "   (a second cluster: [replication] mode = distributed, owners = 2)"
            )
            if args.only_bytes:
                return 0
            print(f"write -> visible on another node, ms ({args.writes} writes):")
            for label, xs in lat.items():
                print(f"  {label:<20} p50 {statistics.median(xs):6.2f}  p99 {pct(xs, 0.99):6.2f}")
            sup.stop_all()
            (Path(tmp) / "b").mkdir()
            k = Cluster(sup, Path(tmp) / "b", args.kill_nodes)
            back, reads = rereplication(k, args.keys)
            print(f"{args.keys}-key distributed cache on {args.kill_nodes} nodes, kill -9 one:")
            print(f"  every key back at 2 copies {back:.2f} s after the kill")
            print(f"  then every key read from a survivor, all found ({reads:.2f} s for the reads)")
        finally:
            sup.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
