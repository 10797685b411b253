"""The README's demo: the balancer in front of three worker nodes, all on 127.0.0.1.

    scripts/demo.sh            (installs what is missing, then runs this)

Starts ``python -m worker --route nodeN --listen 127.0.0.1:810N --cluster conf/cluster.toml``
for N = 1..3 (as conf/workers.properties expects: one replicated cluster over loopback
multicast) and ``python -m balancer`` on 127.0.0.1:8080 with the shipped conf/, waits until each
answers, prints where to look, and stops everything on Ctrl-C or SIGTERM. ``--duration S``
stops by itself after S seconds (used by the demo's own test).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
NODES = (("node1", 8101), ("node2", 8102), ("node3", 8103))


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return resp.status == 200
    except OSError:
        return False


def _free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8080, help="balancer port (default 8080)")
    parser.add_argument("--duration", type=float, default=0, help="stop after S seconds")
    args = parser.parse_args()
    busy = [p for p in (args.port, *(p for _, p in NODES)) if not _free(p)]
    if busy:
        print(f"demo: port(s) {busy} on 127.0.0.1 are in use; stop what holds them", flush=True)
        return 1
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs: list[subprocess.Popen[bytes]] = []

    def stop(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        for route, port in NODES:
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "worker",
                        "--route",
                        route,
                        "--listen",
                        f"127.0.0.1:{port}",
                        "--cluster",
                        str(CONF / "cluster.toml"),
                    ],
                    cwd=ROOT,
                    env=env,
                )
            )
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "balancer",
                    "--workers",
                    str(CONF / "workers.properties"),
                    "--mounts",
                    str(CONF / "uriworkermap.properties"),
                    "--listen",
                    f"127.0.0.1:{args.port}",
                ],
                cwd=ROOT,
                env=env,
            )
        )
        base = f"http://127.0.0.1:{args.port}"
        checks = [f"http://127.0.0.1:{p}/-/ready" for _, p in NODES] + [f"{base}/app/counter"]
        deadline = time.monotonic() + 30
        while not all(_ready(u) for u in checks):
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                print("demo: a process did not come up; see the output above", flush=True)
                return 1
            time.sleep(0.2)
        print(
            "\npyjk demo is up:\n"
            f"  demo app (open in a browser)  {base}/app/\n"
            f"  session counter (JSON)        {base}/app/counter\n"
            f"  status page (jkmanager)       {base}/jkmanager\n"
            f"  status as text                {base}/jkmanager?mime=txt\n"
            f"  workers (one replicated cluster) node1..node3 on 127.0.0.1:8101-8103\n"
            f"  the cluster as node1 sees it  http://127.0.0.1:8101/cluster-manager\n"
            "Try it: note the node serving you, kill it (kill -9 the worker with that --route),\n"
            "and reload: another node answers with the same session and counter.\n"
            "Press Ctrl-C to stop.\n",
            flush=True,
        )
        end = time.monotonic() + args.duration if args.duration else None
        while end is None or time.monotonic() < end:
            if any(p.poll() is not None for p in procs):
                print("demo: a process exited; stopping the others", flush=True)
                return 1
            time.sleep(0.5)
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        print("demo: stopped", flush=True)


if __name__ == "__main__":
    sys.exit(main())
