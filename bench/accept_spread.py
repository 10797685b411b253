"""How evenly pyjk's data-plane processes share the work: inherited socket vs SO_REUSEPORT.

    python bench/accept_spread.py                    # --processes 2, 5 s per run
    python bench/accept_spread.py --processes 4 --duration 10

For each accept mode (``--accept inherit``: every process accepts on the supervisor's one
listening socket; ``--accept reuseport``: one SO_REUSEPORT socket per process, the kernel hashes
connections over them) and each load shape (keep-alive: wrk's 50 long connections; close: a new
connection per request), it runs wrk against ``pyjk --processes N`` and reads how many requests
each process routed from the status page's ``Process:`` lines. Backends: the race's nginx.
docs/benchmarks.md reports the numbers and what they mean.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import backend
import race_configs as cfg
from race_checks import find_binary
from race_procs import Supervisor, free_ports, wait_http_ready
from race_wrk import run_wrk, wrk_argv

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
SHAPES = {"keepalive": (), "close": ("Connection: close",)}


def process_requests(port: int) -> dict[str, int]:
    """slot → requests routed, from the status page."""
    with urllib.request.urlopen(f"http://{HOST}:{port}/jkmanager?mime=txt", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("Process: "):
            fields = dict(t.split("=", 1) for t in line.split()[1:] if "=" in t)
            out[fields["slot"]] = int(fields["requests"])
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--duration", type=int, default=5, help="seconds per wrk run (default 5)")
    p.add_argument("--connections", type=int, default=50)
    args = p.parse_args(argv)
    if not (2 <= args.processes <= 63 and 1 <= args.duration <= 120):
        p.error("need 2 <= --processes <= 63 and 1 <= --duration <= 120")
    wrk, nginx = find_binary("wrk"), find_binary("nginx")
    if wrk is None or nginx is None:
        print("accept_spread: needs wrk and nginx (bench/setup.sh)", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="pyjk-spread-"))
    sup = Supervisor(None)
    sup.install_signal_handlers()
    try:
        members = cfg.members_for(free_ports(3))
        conf = backend.write_backend(members, workdir)
        back = sup.start(
            "backends",
            backend.nginx_argv(nginx, conf, workdir),
            cpu=None,
            log=workdir / "backends.log",
        )
        for m in members:
            wait_http_ready(back, m.host, m.port, "/100", 10.0)
        workers = workdir / "workers.properties"
        text = cfg.workers_properties(members).replace("worker.list=lb", "worker.list=lb,jkstatus")
        workers.write_text(text + "worker.jkstatus.type=status\n")
        mounts = workdir / "uriworkermap.properties"
        mounts.write_text("/jkmanager|/*=jkstatus\n/*=lb\n")
        print(f"{'accept':10} {'load':10} {'req/s':>8}  share of each process (%)  max/mean")
        for mode in ("inherit", "reuseport"):
            (port,) = free_ports(1)
            cmd = [
                sys.executable,
                "-m",
                "balancer",
                "--workers",
                str(workers),
                "--mounts",
                str(mounts),
                "--listen",
                f"{HOST}:{port}",
                "--processes",
                str(args.processes),
                "--accept",
                mode,
            ]
            child = sup.start(f"pyjk-{mode}", cmd, cpu=None, log=workdir / f"{mode}.log", cwd=REPO)
            wait_http_ready(child, HOST, port, "/100", 20.0)
            # every process up (a row is written once its socket accepts), or the first one
            # alone gets the long connections and the run measures the start, not the spread
            deadline = time.monotonic() + 30
            while len(process_requests(port)) < args.processes and time.monotonic() < deadline:
                time.sleep(0.1)
            for shape, headers in SHAPES.items():
                before = process_requests(port)
                url = f"http://{HOST}:{port}/100"
                argv_wrk = wrk_argv(
                    wrk,
                    url,
                    duration_s=args.duration,
                    connections=args.connections,
                    headers=headers,
                )
                result, _ = run_wrk(argv_wrk, duration_s=args.duration)
                after = process_requests(port)
                done = {k: after.get(k, 0) - before.get(k, 0) for k in after}
                total = sum(done.values()) or 1
                shares = [100.0 * n / total for _, n in sorted(done.items())]
                worst = max(shares) / (100.0 / len(shares)) if shares else 0.0
                cells = " ".join(f"{s:5.1f}" for s in shares)
                print(
                    f"{mode:10} {shape:10} {result.rps:8.0f}  {cells:24}  {worst:5.2f}", flush=True
                )
            child.popen.terminate()
            child.popen.wait(timeout=40)
    finally:
        sup.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
