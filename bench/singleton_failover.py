"""How long a cluster singleton is without an owner: after kill -9 of its node, and after a
graceful stop (SIGTERM). Three workers run the Immutant counter demo
(worker.examples.singleton_counter) with the shipped timings (heartbeat 500 ms, drop_time
3000 ms); each round kills (or stops) the owner, times until a survivor's /cluster-manager
names a new owner, checks the count went on (no reset), and restarts the node.

    .venv/bin/python bench/singleton_failover.py --rounds 3      # about 40 s

Bounded: every wait has a deadline, every process is killed at exit whatever happened.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
from pathlib import Path

from failover_stack import ROOT, ROUTES, get_json, new_cluster_file, wait
from race_procs import Child, Supervisor, free_ports, wait_http_ready

APP = "worker.examples.singleton_counter:make_app"


def owner(port: int) -> tuple[str | None, int]:
    try:
        status, body = get_json(port, "/cluster-manager")
    except OSError:
        return None, 0
    rows = (
        [s for s in body.get("singletons", []) if s["name"] == "counter"] if status == 200 else []
    )
    return (rows[0]["owner"], rows[0]["epoch"]) if rows else (None, 0)


def count(port: int) -> int:
    return int(get_json(port, "/counter")[1]["count"])


class Cluster:
    def __init__(self, sup: Supervisor, tmp: Path) -> None:
        self.sup, self.tmp = sup, tmp
        self.file = new_cluster_file(tmp, "singleton")
        self.ports = dict(zip(ROUTES, free_ports(len(ROUTES)), strict=True))
        self.procs: dict[str, Child] = {}

    def start(self, route: str) -> None:
        port = self.ports[route]
        self.procs[route] = self.sup.start(
            route,
            [sys.executable, "-m", "worker", "--route", route, "--listen", f"127.0.0.1:{port}",
             "--cluster", str(self.file), "--app", APP],
            cpu=None, log=self.tmp / f"{route}.log", cwd=ROOT,
        )  # fmt: skip
        wait_http_ready(self.procs[route], "127.0.0.1", port, "/-/ready", 60)


def round_trip(c: Cluster, how: str) -> tuple[float, int, int]:
    """Kill or stop the owner; seconds until a survivor owns the counter; counts before/after."""
    wait(lambda: len({owner(p) for p in c.ports.values()}) == 1 and owner(c.ports[ROUTES[0]])[0],
         30, "every node to know the owner")  # fmt: skip
    name, epoch = owner(c.ports[ROUTES[0]])
    assert name is not None
    survivors = [r for r in ROUTES if r != name]
    before = count(c.ports[survivors[0]])
    child = c.procs[name]
    os.kill(child.pid, signal.SIGKILL if how == "kill" else signal.SIGTERM)
    took = wait(lambda: owner(c.ports[survivors[0]])[1] > epoch
                and owner(c.ports[survivors[0]])[0] in survivors, 15, "a new owner")  # fmt: skip
    child.popen.wait(15)
    wait(lambda: count(c.ports[survivors[0]]) > before + 1, 10, "the count to go on")
    after = count(c.ports[survivors[0]])
    c.start(name)
    return took, before, after


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="kill -9 and SIGTERM rounds each")
    args = parser.parse_args()
    sup = Supervisor(None)
    sup.install_signal_handlers()
    results: dict[str, list[float]] = {"kill": [], "term": []}
    with tempfile.TemporaryDirectory(prefix="pyjk-singleton-") as tmp:
        try:
            c = Cluster(sup, Path(tmp))
            for route in ROUTES:
                c.start(route)
            wait(lambda: owner(c.ports[ROUTES[0]])[0] is not None, 20, "a first owner")
            for _ in range(args.rounds):
                for how in ("kill", "term"):
                    took, before, after = round_trip(c, how)
                    if after <= before:
                        raise SystemExit(f"the count went back: {before} -> {after}")
                    results[how].append(took)
                    print(f"{how:>4}: new owner after {took:.2f} s (count {before} -> {after})")
        finally:
            sup.stop_all()
    for how, label in (("kill", "kill -9"), ("term", "SIGTERM")):
        xs = results[how]
        print(f"{label}: median {statistics.median(xs):.2f} s, max {max(xs):.2f} s over {len(xs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
