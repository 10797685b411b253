"""How long the front door is closed when the active balancer of a pair dies: from kill -9 of
the active (its supervisor and every data-plane process) to the first request the standby
serves with the client's session (same worker, count continued). Three replicated workers and
a pair of balancers with the shipped timings (heartbeat 500 ms, drop_time 3000 ms); each round
kills the active, times the standby's detection (its log) and the first served request, then
starts a new standby behind the new active.

    .venv/bin/python bench/standby_takeover.py --rounds 3 --processes 2   # about 40 s

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

from failover_stack import MOUNTS, ROOT, ROUTES, Stack, new_cluster_file, wait, workers_properties
from race_procs import Child, Supervisor, descendants, free_ports


def counter(port: int, cookie: str | None) -> tuple[int, str | None, dict[str, object]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1.0)
    try:
        conn.request("GET", "/app/counter", headers={"Cookie": cookie} if cookie else {})
        resp = conn.getresponse()
        body = resp.read()
        cookies = [v for k, v in resp.getheaders() if k.lower() == "set-cookie"]
        new = next((c.split(";")[0] for c in cookies if c.startswith("JSESSIONID=")), None)
        return resp.status, new or cookie, json.loads(body) if resp.status == 200 else {}
    except (OSError, http.client.HTTPException, ValueError):
        return 0, cookie, {}
    finally:
        conn.close()


class Pair:
    def __init__(self, sup: Supervisor, tmp: Path, processes: int) -> None:
        self.sup, self.tmp, self.processes = sup, tmp, processes
        self.stack = Stack(sup, tmp, "sync")
        *worker_ports, self.port = free_ports(len(ROUTES) + 1)
        self.stack.ports = dict(zip(ROUTES, worker_ports, strict=True))
        self.stack.cluster_file = new_cluster_file(tmp, "standby")
        self.starts = 0

    def start_workers(self) -> None:
        for route in ROUTES:
            self.stack.start_worker(route)
        self.stack.wait_cluster(60)
        (self.tmp / "workers.properties").write_text(workers_properties(self.stack.ports))
        (self.tmp / "uriworkermap").write_text(MOUNTS)

    def balancer(self, *extra: str) -> Child:
        self.starts += 1
        argv = [sys.executable, "-m", "balancer", "--workers", str(self.tmp / "workers.properties"),
                "--mounts", str(self.tmp / "uriworkermap"), "--listen", f"127.0.0.1:{self.port}",
                "--processes", str(self.processes), "--cluster", str(self.stack.cluster_file),
                *extra]  # fmt: skip
        return self.sup.start(f"balancer-{self.starts}", argv, cpu=None,
                              log=self.tmp / f"balancer-{self.starts}.log", cwd=ROOT)  # fmt: skip


def round_trip(pair: Pair, active: Child, standby: Child, cookie: str) -> tuple[float, float]:
    wait(lambda: "hears peer=127.0.0.1 role=active" in standby.log.read_text(), 30,
         "the standby hearing the active")  # fmt: skip
    before = counter(pair.port, cookie)[2]
    for pid in descendants(active.pid):
        os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    detect = wait(lambda: "state=taking-over" in standby.log.read_text(), 30, "the takeover")
    wait(lambda: counter(pair.port, cookie)[0] == 200, 30, "a served request")
    total = time.monotonic() - killed
    after = counter(pair.port, cookie)[2]
    if after.get("node") != before.get("node") or after.get("count") == before.get("count"):
        raise SystemExit(f"the session did not continue: {before} -> {after}")
    return detect, total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--processes", type=int, default=2, help="of each balancer")
    args = parser.parse_args()
    sup = Supervisor(None)
    sup.install_signal_handlers()
    detects, totals = [], []
    with tempfile.TemporaryDirectory(prefix="pyjk-standby-") as tmp:
        try:
            pair = Pair(sup, Path(tmp), args.processes)
            pair.start_workers()
            active = pair.balancer()
            wait(lambda: counter(pair.port, None)[0] == 200, 30, "the active serving")
            _, cookie, _ = counter(pair.port, None)
            assert cookie is not None
            standby = pair.balancer("--standby")
            for i in range(args.rounds):
                detect, total = round_trip(pair, active, standby, cookie)
                detects.append(detect)
                totals.append(total)
                print(f"round {i + 1}: takeover decided {detect:.2f} s, first request served "
                      f"{total:.2f} s after kill -9 of the active")  # fmt: skip
                sup.stop(active)
                active, standby = standby, pair.balancer("--standby")
        finally:
            sup.stop_all()
    print(f"--processes {args.processes}, drop_time 3 s: decided median "
          f"{statistics.median(detects):.2f} s; served median {statistics.median(totals):.2f} s, "
          f"max {max(totals):.2f} s over {len(totals)}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
