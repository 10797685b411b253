"""What one session costs a worker in RSS: the number behind max_active_sessions' default.

    .venv/bin/python bench/session_cost.py                  # 20,000 sessions, clustered node
    .venv/bin/python bench/session_cost.py --sessions 5000 --standalone

Starts one real worker (`python -m worker`, the demo app; by default with `--cluster`, a
one-member cluster on loopback with a fresh key, so the replication bookkeeping per session and
the exactly-once record per request are counted too), then opens sessions one request each
(`GET /app/counter` without a cookie, with an `X-Pyjk-Request-Id` as the balancer sends) and
reads the worker's VmRSS from /proc at every step. Prints RSS per step and the slope in bytes
per session (least squares over the steps after the first: the first absorbs one-time
allocations). Runs on 127.0.0.1 only; every wait has a deadline; the worker is killed at exit.
"""

from __future__ import annotations

import argparse
import http.client
import secrets
import sys
import tempfile
import time
import uuid
from pathlib import Path

from failover_stack import ROOT, cluster_toml
from race_procs import StartError, Supervisor, free_ports, wait_http_ready


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def slope(points: list[tuple[int, int]]) -> float:
    """Least-squares bytes per session over (sessions, rss_kb) points."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    var = sum((x - mx) ** 2 for x, _ in points)
    return 1024 * sum((x - mx) * (y - my) for x, y in points) / var if var else 0.0


def open_sessions(port: int, count: int, deadline: float) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        for _ in range(count):
            if time.monotonic() > deadline:
                raise StartError("out of time opening sessions")
            conn.request("GET", "/app/counter", headers={"X-Pyjk-Request-Id": uuid.uuid4().hex})
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                raise StartError(f"GET /app/counter answered {resp.status}")
    finally:
        conn.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sessions", type=int, default=20_000)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--standalone", action="store_true", help="no --cluster")
    p.add_argument("--timeout", type=float, default=300.0, help="s for the whole run")
    args = p.parse_args(argv)
    deadline = time.monotonic() + args.timeout
    sup = Supervisor(None)
    sup.install_signal_handlers()
    tmp = Path(tempfile.mkdtemp(prefix="pyjk-session-cost-"))
    (port,) = free_ports(1)
    argv_ = [sys.executable, "-m", "worker", "--route", "node1", "--listen",
             f"127.0.0.1:{port}", "--max-active-sessions", str(args.sessions + 1000)]  # fmt: skip
    if not args.standalone:
        key = tmp / "cluster.key"
        key.write_text(secrets.token_hex(32) + "\n")
        key.chmod(0o600)
        conf = tmp / "cluster.toml"
        mport = 20000 + secrets.randbelow(40000)
        conf.write_text(cluster_toml(f"cost-{uuid.uuid4().hex[:8]}", mport, "sync", key))
        argv_ += ["--cluster", str(conf)]
    try:
        child = sup.start("node1", argv_, cpu=None, log=tmp / "node1.log", cwd=ROOT)
        wait_http_ready(child, "127.0.0.1", port, "/-/ready", 60)
        points = [(0, rss_kb(child.pid))]
        step = args.sessions // args.steps
        print(f"worker {'standalone' if args.standalone else 'clustered'}; sessions -> RSS")
        print(f"{0:>8,}  {points[0][1] / 1024:8.1f} MiB", flush=True)
        for i in range(1, args.steps + 1):
            open_sessions(port, step, deadline)
            points.append((i * step, rss_kb(child.pid)))
            print(f"{i * step:>8,}  {points[-1][1] / 1024:8.1f} MiB", flush=True)
        print(f"bytes per session (slope after the first step): {slope(points[1:]):,.0f}")
        print(f"bytes per session (end vs start): "
              f"{1024 * (points[-1][1] - points[0][1]) / points[-1][0]:,.0f}")  # fmt: skip
    except StartError as exc:
        print(f"session cost: {exc}; logs in {tmp}", file=sys.stderr)
        return 1
    finally:
        sup.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
