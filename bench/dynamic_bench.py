"""How fast a dynamic lb follows `pyjk-cluster scale`: join and leave latencies.

    .venv/bin/python bench/dynamic_bench.py                  # 3 rounds of 0 -> 3 -> 0 workers
    .venv/bin/python bench/dynamic_bench.py --rounds 5 --workers 4 --frequency 500

On 127.0.0.1 only, with free ports and a fresh cluster (unique name and multicast port, a
fresh key, `membership.frequency` as given): a balancer whose lb has only
`worker.lb.cluster=...`, then per round

1. `pyjk-cluster scale N` (workers with `--route auto --listen 127.0.0.1:0`): *scale up* is
   the command's own time (start, state transfer, ready); *to lb* is the time from the command's
   return until /jkmanager lists all N (heartbeat, then the balancer's /-/ready probe);
2. SIGTERM to one of them (what `scale` sends; it runs with `--drain 1`): *disabled* is the
   time until its member shows activation DIS, *removed* until it is no longer listed; then
   `pyjk-cluster scale 0`.

No load runs meanwhile (the failover benchmark does load); this measures the control path.
Every process is stopped at exit (the workers by `scale 0`, the balancer by SIGTERM).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def lb_members(url: str) -> dict[str, dict]:
    with urllib.request.urlopen(f"{url}/jkmanager?mime=json", timeout=2) as resp:
        doc = json.load(resp)
    (lb,) = [w for w in doc["balancers"] if w["name"] == "lb"]
    return {m["name"]: m for m in lb["members"]}


def until(check: Callable[[], bool], timeout: float, interval: float = 0.01) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if check():
                return time.monotonic() - started
        except OSError:
            pass
        time.sleep(interval)
    raise SystemExit(f"timed out after {timeout}s: {check}")


def scale(config: Path, n: int) -> None:
    cmd = [sys.executable, "-m", "worker.cluster", "scale", str(n), "--cluster", str(config),
           "--drain", "1"]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise SystemExit(f"scale {n} failed:\n{done.stdout}{done.stderr}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--frequency", type=int, default=500, help="heartbeat interval, ms")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="pyjk-dynamic-"))
    config = tmp / "cluster.toml"
    config.write_text(
        f'name = "bench-{uuid.uuid4().hex[:10]}"\n[membership]\n'
        f"port = {random.randint(20000, 60000)}\nfrequency = {args.frequency}\n"
    )
    (tmp / "workers.properties").write_text(
        "worker.list=lb,jkstatus\nworker.lb.type=lb\n"
        f"worker.lb.cluster={config}\nworker.jkstatus.type=status\n"
    )
    (tmp / "uri.properties").write_text("/app|/*=lb\n/jkmanager|/*=jkstatus\n")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(tmp / "balancer.log", "wb")  # noqa: SIM115 - closed in finally
    balancer = subprocess.Popen(
        [sys.executable, "-m", "balancer", "--workers", str(tmp / "workers.properties"),
         "--mounts", str(tmp / "uri.properties"), "--listen", f"127.0.0.1:{port}"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    state = tmp / ".cluster.toml.workers.json"  # what pyjk-cluster started (worker/cluster.py)
    rows: dict[str, list[float]] = {"scale up": [], "to lb": [], "disabled": [], "removed": []}
    try:
        until(lambda: lb_members(url) == {}, 20)
        for _ in range(args.rounds):
            started = time.monotonic()
            scale(config, args.workers)
            rows["scale up"].append(time.monotonic() - started)
            rows["to lb"].append(until(lambda: len(lb_members(url)) == args.workers, 30))
            # one worker stopped by hand: SIGTERM -> disabled -> removed, as scale 0 does
            victim = json.loads(state.read_text().splitlines()[0])
            down = time.monotonic()
            os.kill(victim["pid"], signal.SIGTERM)
            name = victim["route"]
            until(lambda n=name: lb_members(url)[n]["activation"] == "DIS", 30)
            rows["disabled"].append(time.monotonic() - down)
            until(lambda n=name: n not in lb_members(url), 30)
            rows["removed"].append(time.monotonic() - down)
            scale(config, 0)
            until(lambda: lb_members(url) == {}, 30)
    finally:
        scale(config, 0)
        balancer.terminate()
        balancer.wait(15)
        log.close()
    print(f"{args.workers} workers, {args.rounds} rounds, heartbeat every {args.frequency} ms")
    print(f"{'':10} {'median s':>9} {'max s':>7}")
    for name, values in rows.items():
        print(f"{name:10} {statistics.median(values):9.2f} {max(values):7.2f}")
    print(f"logs: {tmp}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
