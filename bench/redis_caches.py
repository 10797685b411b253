"""Cluster caches on a Redis store against the built-in cluster, same run, two workers each:
write -> visible on the other worker (p50/p99 per mode, as bench/cluster_caches.py measures
it) and an atomic increment (`update`, i.e. get + compare-and-set) from both workers at once.

    .venv/bin/python bench/redis_caches.py --writes 200          # about 20 s

Redis: one redis-server on a free loopback port (no persistence); every cache but local lives
there (replication/redis_cache.py). Built-in: two workers over loopback multicast (distributed
owners = 2, replicated, invalidated). Bounded: every wait has a deadline; every process is
killed at exit whatever happened.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from cluster_caches import APP, Cluster, Conn, pct, visible
from race_procs import Child, Supervisor, free_ports, wait_http_ready
from store_bench import ROOT, store_toml


class RedisWorkers:
    """Two workers whose cluster file names a fresh redis-server (the shape `visible` reads)."""

    def __init__(self, sup: Supervisor, tmp: Path) -> None:
        self.file = tmp / "cluster-redis.toml"
        self.file.write_text(store_toml("redis", sup, tmp))
        self.routes = ["node1", "node2"]
        self.ports = dict(zip(self.routes, free_ports(2), strict=True))
        procs: dict[str, Child] = {}
        for route, port in self.ports.items():
            procs[route] = sup.start(
                route,
                [sys.executable, "-m", "worker", "--route", route, "--listen",
                 f"127.0.0.1:{port}", "--cluster", str(self.file), "--app", APP],
                cpu=None, log=tmp / f"{route}.log", cwd=ROOT,
            )  # fmt: skip
        for route, port in self.ports.items():
            wait_http_ready(procs[route], "127.0.0.1", port, "/-/ready", 60)


def increments(c: Cluster | RedisWorkers, per_worker: int) -> tuple[list[float], int]:
    """Both workers increment one key at once; each call's ms, and the final count."""
    lat: list[float] = []
    lock = threading.Lock()

    def run(port: int) -> None:
        conn = Conn(port)
        for _ in range(per_worker):
            began = time.perf_counter()
            conn.call("POST", "/c/dist/count/incr")
            with lock:
                lat.append((time.perf_counter() - began) * 1000)

    threads = [threading.Thread(target=run, args=(p,)) for p in c.ports.values()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    final = Conn(c.ports[c.routes[0]]).call("GET", "/c/dist/count")["value"]
    return lat, int(final)


def report(label: str, c: Cluster | RedisWorkers, writes: int) -> None:
    print(f"{label}: write -> visible on the other worker, ms ({writes} writes)")
    for mode, xs in visible(c, writes).items():
        print(f"  {mode:<20} p50 {statistics.median(xs):6.2f}  p99 {pct(xs, 0.99):6.2f}")
    lat, final = increments(c, writes)
    print(f"  {'update (2 workers)':<20} p50 {statistics.median(lat):6.2f}  "
          f"p99 {pct(lat, 0.99):6.2f}  count {final} of {2 * writes}")  # fmt: skip
    if final != 2 * writes:
        raise SystemExit(f"{label}: {2 * writes - final} increments lost or doubled")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writes", type=int, default=200)
    args = parser.parse_args()
    sup = Supervisor(None)
    sup.install_signal_handlers()
    with tempfile.TemporaryDirectory(prefix="pyjk-redis-caches-") as tmp:
        try:
            (Path(tmp) / "r").mkdir()
            report("redis (one server)", RedisWorkers(sup, Path(tmp) / "r"), args.writes)
            sup.stop_all()
            (Path(tmp) / "c").mkdir()
            report("built-in cluster", Cluster(sup, Path(tmp) / "c", 2), args.writes)
        finally:
            sup.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
