"""Soak: the demo-shaped stack under steady locust load for a bounded time, with the RSS
curve of the balancer and the workers.

    .venv/bin/python bench/soak.py                          # 20 min, 50 users, 50-150 ms think
    .venv/bin/python bench/soak.py --duration 60 --interval 5 --json /tmp/soak.json

On 127.0.0.1 only, with free ports: three replicated workers (`python -m worker`, sync
replication, a generated cluster.toml and key) and the balancer with the shipped conf's member
settings (health checks, `fail_on_status=-503`), as bench/failover_stack.py starts them; then
locust (bench/locustfile.py: session users and anonymous ones, every reply checked) with
`PYJK_LOCUST_WAIT` think time, stopped by `--run-time`. Every `--interval` seconds it prints the
RSS of each process (MiB), so a leak shows as a curve that keeps rising after the warm-up
(issue 11 item 6 saw the balancer go 44 -> 785 MB in the last 5 minutes of a 20-minute run).
At the end: requests, failures, and the balancer's growth after the first minute.

Every process runs in its own process group and is killed at exit; the run stops by itself.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from failover_bench import LOCUSTFILE, _locust_bin, _wait_log, machine
from failover_report import read_locust_json
from failover_stack import Stack
from race_procs import StartError, Supervisor


def rss_mib(pid: int) -> float | None:
    """Resident memory of a process in MiB (None once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=int, default=1200, help="locust --run-time, s (1200)")
    p.add_argument("--users", type=int, default=50, help="locust users (default 50)")
    p.add_argument("--wait", default="0.05-0.15", help="think time A-B s (default 0.05-0.15)")
    p.add_argument("--interval", type=float, default=10.0, help="RSS sample period, s (10)")
    p.add_argument("--mode", choices=["sync", "async", "none"], default="sync",
                   help="replication send mode (default sync, as the demo)")  # fmt: skip
    p.add_argument("--json", type=Path, help="write the curve and totals here")
    p.add_argument("--keep-dir", action="store_true", help="keep configs and logs")
    args = p.parse_args(argv)
    if args.duration < 10 or args.users < 1 or args.interval <= 0:
        p.error("expected --duration >= 10, --users >= 1, --interval > 0")
    return args


def soak(args: argparse.Namespace, sup: Supervisor, tmp: Path) -> dict[str, object]:
    stack = Stack(sup, tmp, args.mode)
    print(f"starting 3 workers + balancer in {tmp}", flush=True)
    stack.start()
    prefix = tmp / "locust"
    argv = [
        "env", f"PYJK_LOCUST_WAIT={args.wait}", f"PYJK_LOCUST_SUMMARY={tmp / 'summary.json'}",
        str(_locust_bin()), "-f", str(LOCUSTFILE), "--headless", "-u", str(args.users),
        "-r", str(args.users), "--run-time", f"{args.duration}s", "--host", stack.url,
        "--json-file", str(prefix), "--only-summary", "--stop-timeout", "5",
    ]  # fmt: skip
    locust = sup.start("locust", argv, cpu=None, log=tmp / "locust.log", cwd=Path.cwd())
    spawned = _wait_log(tmp / "locust.log", "All users spawned", locust, 30)
    pids = {"balancer": stack.balancer_pid, **{r: c.pid for r, c in stack.workers.items()}}
    print(f"locust: {args.users} users, think {args.wait} s, {args.duration} s", flush=True)
    print("t(s)   " + "  ".join(f"{name:>9}" for name in pids) + "   (RSS, MiB)", flush=True)
    curve: list[dict[str, float | None]] = []
    deadline = spawned + args.duration + 60  # locust stops itself; this bounds the wait
    next_at = time.time()
    while locust.popen.poll() is None and time.time() < deadline:
        if time.time() >= next_at:
            point: dict[str, float | None] = {"t": round(time.time() - spawned, 1)}
            point.update({name: rss_mib(pid) for name, pid in pids.items()})
            curve.append(point)
            cells = "  ".join(
                f"{v:9.1f}" if v is not None else "     gone" for k, v in point.items() if k != "t"
            )
            print(f"{point['t']:6.1f} {cells}", flush=True)
            next_at += args.interval
        time.sleep(0.2)
    try:
        locust.popen.wait(60)
    except subprocess.TimeoutExpired:
        raise StartError(f"locust did not stop:\n{locust.log_tail(30)}") from None
    totals = read_locust_json(Path(f"{prefix}.json"))
    after_minute = [p["balancer"] for p in curve if p["t"] >= 60 and p["balancer"] is not None]
    growth = after_minute[-1] - after_minute[0] if len(after_minute) > 1 else None
    return {"curve": curve, **totals, "balancer_growth_after_1min_mib": growth}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sup = Supervisor(None)
    sup.install_signal_handlers()
    tmp = Path(tempfile.mkdtemp(prefix="pyjk-soak-"))
    print(f"machine: {machine()}", flush=True)
    try:
        result = soak(args, sup, tmp)
    except StartError as exc:
        print(f"soak: {exc}\nlogs in {tmp}", file=sys.stderr)
        args.keep_dir = True
        return 1
    finally:
        sup.stop_all()
        if not args.keep_dir:
            shutil.rmtree(tmp, ignore_errors=True)
    growth = result["balancer_growth_after_1min_mib"]
    print(f"\nrequests {result['requests']}, failures {result['failures']}; balancer RSS "
          + (f"{growth:+.1f} MiB from the first minute to the end" if growth is not None
             else "growth: run longer than a minute to see it"))  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "argv": sys.argv, **result},
                                        indent=1))  # fmt: skip
    if args.keep_dir:
        print(f"configs and logs: {tmp}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
