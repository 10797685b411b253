"""Session store benchmark: the same locust load through the balancer on three workers whose
sessions live in the built-in cluster (all-to-all, sync) or in Redis.

    .venv/bin/python bench/store_bench.py                         # 30 s, 30 users, every store
    .venv/bin/python bench/store_bench.py --store redis --duration 20 --json out.json

Stores (`--store`, default all):
- `cluster`: the built-in all-to-all replication, send_mode sync (every node holds every
  session; a write waits for the other two nodes' acks);
- `distributed`: the built-in cluster with `[replication] mode = "distributed"`, `owners = 2`
  (each session on its route's node and one backup; a write waits for the backup's reply);
- `redis`: one redis-server on a free loopback port (no persistence), `[store] kind = "redis"`;
- `redis-cluster`: a Redis Cluster of 3 masters + 3 replicas (redis-cli --cluster create),
  `wait_replicas = 1` (a write waits for a replica's WAIT);

Load: bench/locustfile.py headless (session users: 9 in 10 requests `GET /app/counter`, a
write each). Reported per store: requests/s, failures, p50/p99 of `/app/counter` (a write,
as locust saw it through the balancer), and bytes per write as the workers count them on
/metrics (cluster: replication bytes out per delta sent — to *each* peer; redis: keys and
arguments sent per request's write, the script text aside; distributed: replication bytes out
of every node — the copy to the backup, its reply, takeovers' reads — per session write).
The load generator, balancer, workers and Redis share the machine: compare rows of one run,
not runs of different machines.
Every process runs in its own process group and is killed at exit.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from failover_report import read_locust_json
from failover_stack import ROOT, Stack
from race_procs import StartError, Supervisor, free_ports

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
STORES = ("cluster", "distributed", "redis", "redis-cluster")
DISTRIBUTED = 'mode = "distributed"\nowners = 2\n'


def redis_server(sup: Supervisor, tmp: Path, port: int, extra: list[str]) -> None:
    tmp.mkdir(parents=True, exist_ok=True)
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(tmp), *extra]  # fmt: skip
    sup.start(f"redis-{port}", argv, cpu=None, log=tmp / f"redis-{port}.log", cwd=ROOT)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        out = subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True,
                             text=True, check=False)  # fmt: skip
        if "PONG" in out.stdout:
            return
        time.sleep(0.05)
    raise StartError(f"redis-server on {port} did not answer")


def store_toml(store: str, sup: Supervisor, tmp: Path) -> str:
    if store == "redis":
        (port,) = free_ports(1)
        redis_server(sup, tmp / "redis", port, [])
        return f'name = "bench"\n[store]\nkind = "redis"\nurl = "redis://127.0.0.1:{port}"\n'
    ports = free_ports(12)
    for port, bus in zip(ports[:6], ports[6:], strict=True):
        redis_server(sup, tmp / f"redis-{port}", port, [
            "--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf",
            "--cluster-node-timeout", "2000", "--cluster-port", str(bus),
        ])  # fmt: skip
    nodes = [f"127.0.0.1:{p}" for p in ports[:6]]
    out = subprocess.run(
        ["redis-cli", "--cluster", "create", *nodes, "--cluster-replicas", "1", "--cluster-yes"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    if "All 16384 slots covered" not in out.stdout:
        raise StartError(f"redis-cli --cluster create failed:\n{out.stdout}{out.stderr}")
    time.sleep(2)  # the nodes agree on the slot map (cluster_state:ok) within the node timeout
    listed = ", ".join(f'"{n}"' for n in nodes)
    return (f'name = "bench"\n[store]\nkind = "redis"\nnodes = [{listed}]\n'
            "wait_replicas = 1\ntimeout = 2000\n")  # fmt: skip


def metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return str(resp.read().decode())


def metric_sum(text: str, name: str, label: str = "") -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and label in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def bytes_per_write(store: str, stack: Stack) -> float | None:
    written = sent = 0.0
    for port in stack.ports.values():
        text = metrics(port)
        if store in ("cluster", "distributed"):
            written += metric_sum(text, "pyjk_replication_bytes_total", 'direction="out"')
            event = "deltas_sent" if store == "cluster" else "dist_writes"
            sent += metric_sum(text, "pyjk_replication_events_total", f'event="{event}"')
        else:
            written += metric_sum(text, "pyjk_store_write_bytes_total")
            sent += metric_sum(text, "pyjk_store_events_total", 'event="writes"')
    return written / sent if sent else None


def percentiles(path: Path, name: str) -> tuple[float | None, float | None]:
    """p50 and p99 (ms) of one request name from locust's --json-file histogram."""
    times: dict[float, int] = {}
    for entry in json.loads(path.read_text()):
        if entry["name"] == name:
            for ms, n in entry["response_times"].items():
                times[float(ms)] = times.get(float(ms), 0) + int(n)
    total = sum(times.values())
    if not total:
        return None, None
    out = []
    for q in (0.50, 0.99):
        seen = 0
        for ms in sorted(times):
            seen += times[ms]
            if seen >= q * total:
                out.append(ms)
                break
    return out[0], out[1]


def run_store(store: str, args: argparse.Namespace, sup: Supervisor, tmp: Path) -> dict[str, Any]:
    tmp.mkdir(parents=True, exist_ok=True)
    toml = "" if store in ("cluster", "distributed") else store_toml(store, sup, tmp)
    extra = DISTRIBUTED if store == "distributed" else ""
    stack = Stack(sup, tmp, "sync", store_toml=toml, replication=extra)
    print(f"[{store}] starting 3 workers + balancer in {tmp}", flush=True)
    stack.start()
    prefix = tmp / "locust"
    locust_bin = Path(sys.executable).parent / "locust"
    argv = [
        str(locust_bin), "-f", str(LOCUSTFILE), "--headless", "-u", str(args.users),
        "-r", str(args.users), "--run-time", f"{args.duration}s", "--host", stack.url,
        "--json-file", str(prefix), "--only-summary", "--stop-timeout", "5",
    ]  # fmt: skip
    locust = sup.start("locust", argv, cpu=None, log=tmp / "locust.log", cwd=ROOT)
    locust.popen.wait(args.duration + 60)
    totals = read_locust_json(Path(f"{prefix}.json"))
    p50, p99 = percentiles(Path(f"{prefix}.json"), "/app/counter")
    per_write = bytes_per_write(store, stack)
    sup.stop_all()
    result = {
        "store": store, **totals, "req_per_s": totals["requests"] / args.duration,
        "write_p50_ms": p50, "write_p99_ms": p99, "bytes_per_write": per_write,
    }  # fmt: skip
    print(f"[{store}] {json.dumps(result)}", flush=True)
    return result


def table(results: list[dict[str, Any]]) -> str:
    rows = ["| store | requests | failures | req/s | write p50 ms | write p99 ms | bytes/write |",
            "|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in results:
        per = "-" if r["bytes_per_write"] is None else f"{r['bytes_per_write']:.0f}"
        rows.append(f"| {r['store']} | {r['requests']} | {r['failures']} | {r['req_per_s']:.0f} "
                    f"| {r['write_p50_ms']} | {r['write_p99_ms']} | {per} |")  # fmt: skip
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store", choices=[*STORES, "all"], default="all")
    p.add_argument("--duration", type=int, default=30, help="locust --run-time, s (default 30)")
    p.add_argument("--users", type=int, default=30, help="locust users (default 30)")
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--keep-dir", action="store_true", help="keep configs and logs")
    args = p.parse_args(argv)
    if shutil.which("redis-server") is None and args.store not in ("cluster", "distributed"):
        print("store_bench: redis-server is not installed (apt-get install redis-server)")
        return 2
    base = Path(tempfile.mkdtemp(prefix="pyjk-store-bench-"))
    results = []
    sup = Supervisor(None)
    sup.install_signal_handlers()
    try:
        for store in STORES if args.store == "all" else (args.store,):
            try:
                results.append(run_store(store, args, sup, base / store))
            finally:
                sup.stop_all()
    finally:
        if not args.keep_dir:
            shutil.rmtree(base, ignore_errors=True)
        else:
            print(f"kept {base}")
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
