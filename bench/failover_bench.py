"""Failover benchmark: kill -9 a replicated worker under saturating locust load, restart it,
and count what the clients noticed.

    .venv/bin/python bench/failover_bench.py                       # 40 s, 50 users, sync + async
    .venv/bin/python bench/failover_bench.py --duration 30 --users 40 --mode sync --json f.json

Per send mode (`--mode both`: sync, then async), on 127.0.0.1 only, with free ports:

1. three workers `python -m worker --route nodeN --cluster <generated cluster.toml>` (a unique
   cluster name and multicast port, loopback interface, a fresh key file, the send mode) and
   the balancer (3 http members, health checks every 500 ms, recover_time 1 s,
   `/app|/*=lb`);
2. locust as a subprocess: `locust -f bench/locustfile.py --headless -u N -r N --run-time Xs
   --csv ...` (no wait between requests);
3. at `--kill-at` of the run the worker holding the most sessions (or `--victim`) gets
   SIGKILL (its process group); at `--restart-at` it starts again on the same route and port;
4. a table: requests, failures, lost writes, writes applied twice, sessions moved and the
   longest re-stick, and p50/p99 per phase (before the kill, during: until every session
   re-stuck, after, and after the restart). Phases: failover_report.py; checks:
   failover_checks.py.

Every process runs in its own process group and is killed at exit (try/finally, atexit,
SIGTERM); every wait has a deadline. Generated files and logs stay in the printed directory
with `--keep-dir` and are deleted otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from failover_report import (
    breakdown,
    failovers,
    percentile,
    phase_bounds,
    phase_stats,
    read_locust_json,
    settled_at,
    split_moves,
    table,
    worker_events,
)
from failover_stack import ROOT, ROUTES, Stack
from race_procs import StartError, Supervisor, core_times, cpu_seconds

REFUSED = "requests_refused_"  # the workers' 503 counters (cluster-manager)
LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"


def machine() -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        mem_kb = 0
    locust = subprocess.run([str(_locust_bin()), "--version"], capture_output=True, text=True,
                            timeout=30).stdout.strip().split(" from ")[0]  # fmt: skip
    return (f"nproc {os.cpu_count()}; cpu {cpu}; memory {mem_kb / 2**20:.1f} GiB; kernel "
            f"{platform.release()}; python {platform.python_version()}; {locust}")  # fmt: skip


def _locust_bin() -> Path:
    beside = Path(sys.executable).parent / "locust"
    return beside if beside.exists() else Path(shutil.which("locust") or "locust")


def _wait_log(path: Path, text: str, child: Any, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text(errors="replace"):
            return time.time()
        if child.popen.poll() is not None:
            raise StartError(f"locust exited early:\n{child.log_tail(30)}")
        time.sleep(0.05)
    raise StartError(f"locust did not log {text!r} within {timeout:.0f}s:\n{child.log_tail(30)}")


def cpu_snapshot(pids: dict[str, int]) -> dict[str, Any]:
    """CPU seconds of each named process tree, the machine's busy/total jiffies, the time."""
    cores = list(range(os.cpu_count() or 1))
    return {"procs": {n: cpu_seconds(p) for n, p in pids.items()}, "cores": core_times(cores),
            "t": time.time()}  # fmt: skip


def cpu_percent(a: dict[str, Any], b: dict[str, Any]) -> dict[str, int]:
    """% of one core per process between two snapshots; `machine`: all cores (100 per core),
    `others`: what processes not started here used."""
    out = {n: round(100 * (b["procs"][n] - a["procs"][n]) / (b["t"] - a["t"])) for n in a["procs"]}
    busy = sum(b["cores"][c][0] - a["cores"][c][0] for c in a["cores"])
    total = sum(b["cores"][c][1] - a["cores"][c][1] for c in a["cores"])
    out["machine"] = round(100 * len(a["cores"]) * busy / max(total, 1))
    out["others"] = out["machine"] - sum(out[n] for n in a["procs"])
    return out


def _sleep_until(wall: float, child: Any) -> None:
    while time.time() < wall:
        if child.popen.poll() is not None:
            raise StartError(f"locust exited early:\n{child.log_tail(30)}")
        time.sleep(min(0.05, max(wall - time.time(), 0)))


def run_mode(mode: str, args: argparse.Namespace, sup: Supervisor, tmp: Path) -> dict[str, Any]:
    tmp.mkdir(parents=True, exist_ok=True)
    stack = Stack(sup, tmp, mode, pool_size=args.pool_size)
    print(f"[{mode}] starting 3 workers + balancer in {tmp}", flush=True)
    stack.start()
    summary_file, prefix = tmp / "locust-summary.json", tmp / "locust"
    argv = [
        "env", f"PYJK_LOCUST_SUMMARY={summary_file}", "PYJK_LOCUST_SAMPLES=1",
        str(_locust_bin()), "-f", str(LOCUSTFILE), "--headless", "-u", str(args.users),
        "-r", str(args.spawn_rate or args.users), "--run-time", f"{args.duration}s",
        "--host", stack.url, "--csv", str(prefix), "--json-file", str(prefix), "--only-summary",
        "--stop-timeout", "5",
    ]  # fmt: skip
    locust = sup.start("locust", argv, cpu=None, log=tmp / "locust.log", cwd=ROOT)
    spawned = _wait_log(tmp / "locust.log", "All users spawned", locust, 30)
    print(f"[{mode}] locust: {args.users} users, {args.duration} s", flush=True)
    pids = {"balancer": stack.balancer_pid, "locust": locust.pid,
            **{r: c.pid for r, c in stack.workers.items()}}  # fmt: skip
    before = cpu_snapshot(pids)
    _sleep_until(spawned + args.duration * args.kill_at, locust)
    busy = cpu_percent(before, cpu_snapshot(pids))
    print(f"[{mode}] CPU % of one core before the kill (machine: all cores; others: processes "
          f"not started here): {busy}", flush=True)  # fmt: skip
    victim = args.victim if args.victim != "busiest" else stack.busiest()
    kill = stack.kill9(victim)
    print(f"[{mode}] kill -9 {victim} at +{kill - spawned:.1f} s", flush=True)
    _sleep_until(spawned + args.duration * args.restart_at, locust)
    times = stack.restart(victim)
    print(f"[{mode}] {victim} restarted at +{times['restart'] - spawned:.1f} s, ready after "
          f"{times['ready'] - times['restart']:.1f} s, OK in the balancer after "
          f"{times['in_lb'] - times['restart']:.1f} s", flush=True)  # fmt: skip
    try:
        locust.popen.wait(args.duration + 60)
    except subprocess.TimeoutExpired:
        raise StartError(f"locust did not stop:\n{locust.log_tail(30)}") from None
    counters = stack.counters()
    sup.stop_all()
    summary = json.loads(summary_file.read_text())
    totals = read_locust_json(Path(f"{prefix}.json"))
    samples = summary.pop("samples")
    moves = split_moves(summary["moves"], victim, kill, times["restart"])
    restuck = moves.pop("restuck")
    logs = sorted(tmp.glob("node*.log"))
    takeovers, lookups = worker_events(
        [line for f in logs for line in f.read_text("utf-8", "replace").splitlines()]
    )
    moved = failovers(moves.pop("off_list"), kill, takeovers)
    refused: Counter[str] = Counter()
    for c in counters.values():
        refused.update({k.removeprefix(REFUSED): v for k, v in c.items() if k.startswith(REFUSED)})
    settled = max(restuck, settled_at(summary["anomalies"], kill, times["restart"]))
    first = min(samples["end"], default=spawned)
    last = max(samples["end"], default=time.time())
    bounds = phase_bounds(first, kill, settled, times["restart"], last)
    phases = phase_stats(samples["end"], samples["ms"], samples["ok"], bounds)
    keys = ("acks_missed", "replays_answered", "concurrent_writes", "syncs_done", "gaps",
            "deltas_buffered")  # fmt: skip
    return {
        "mode": mode,
        "victim": victim,
        **totals,
        "lost_writes": summary["lost_writes"],
        "double_writes": summary["double_writes"],
        "wrong_node": summary["wrong_node"],
        "sessions_opened": summary["sessions_opened"],
        "sessions_moved": moves.pop("off_victim"),
        **moves,
        "restuck_after_s": restuck - kill,
        "kill_to_write_p50_ms": percentile(sorted(f.write_ms for f in moved), 50),
        "request_p50_ms": percentile(sorted(f.request_ms for f in moved), 50),
        "failovers": [
            vars(f)
            | {
                "balancer_ms": f.balancer_ms,
                "new_node_ms": f.new_node_ms,
                "request_ms": f.request_ms,
            }
            for f in moved
        ],
        "breakdown": breakdown(moved, [ms for t, ms in lookups if t >= kill], dict(refused)),
        "balancer_events": balancer_events(tmp / "balancer.log"),
        "cpu_percent_before_kill": busy,
        "restart": {k: v - kill for k, v in times.items()},
        "checks": summary["checks"],
        "phases": [p.as_dict(kill) for p in phases],
        "anomalies": [a | {"t": a["t"] - kill} for a in summary["anomalies"]],
        "cluster": {r: {k: c.get(k, 0) for k in keys} for r, c in counters.items()},
        "locust_exit": locust.popen.returncode,
    }


def balancer_events(log: Path) -> dict[str, int]:
    """How often each `reason=` of a member state change appears in the balancer's log."""
    counts: dict[str, int] = {}
    for line in log.read_text(errors="replace").splitlines():
        if " state=" in line and " reason=" in line:
            reason = line.split(" reason=", 1)[1].split(" ", 1)[0]
            counts[reason] = counts.get(reason, 0) + 1
    return counts


def print_details(r: dict[str, Any]) -> None:
    print(f"\n[{r['mode']}] victim {r['victim']}; sessions opened {r['sessions_opened']}; "
          f"checks {r['checks']}; restart (s after kill) "
          f"{ {k: round(v, 2) for k, v in r['restart'].items()} }")  # fmt: skip
    print(f"[{r['mode']}] cluster counters at the end (survivors and the restarted node): "
          f"{r['cluster']}")  # fmt: skip
    print(f"[{r['mode']}] balancer member state changes by reason: {r['balancer_events']}")
    print(r["breakdown"])
    if r["other_pairs"]:
        print(f"[{r['mode']}] other moves (from->to, when): {r['other_pairs']}")
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for a in r["anomalies"]:
        by_kind.setdefault(a["kind"], []).append(a)
    for kind, items in by_kind.items():
        when = ", ".join(f"{a['t']:+.2f}s" for a in items[:8])
        print(f"[{r['mode']}] {len(items)} {kind} (s after the kill: {when}"
              f"{' ...' if len(items) > 8 else ''}); first: {items[0]['detail']}")  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=int, default=40, help="locust --run-time, s (default 40)")
    p.add_argument("--users", type=int, default=50, help="locust users (default 50)")
    p.add_argument("--spawn-rate", type=float, default=0, help="users per s (default: --users)")
    p.add_argument("--mode", choices=["sync", "async", "both", "none"], default="both",
                   help="replication send mode; none: no cluster, a control that must lose "
                   "the victim's sessions (default both: sync, then async)")  # fmt: skip
    p.add_argument("--victim", choices=["busiest", *ROUTES], default="busiest")
    p.add_argument("--kill-at", type=float, default=0.3, help="fraction of the run (0.3)")
    p.add_argument("--restart-at", type=float, default=0.6, help="fraction of the run (0.6)")
    p.add_argument(
        "--pool-size",
        type=int,
        default=0,
        help="the balancer's connection_pool_size per member (default: its own, 64)",
    )
    p.add_argument("--json", type=Path, help="write every result (no samples) here")
    p.add_argument("--keep-dir", action="store_true", help="keep configs and logs")
    args = p.parse_args(argv)
    if not 0 < args.kill_at < args.restart_at < 1:
        p.error("expected 0 < --kill-at < --restart-at < 1")
    if args.duration < 10 or args.users < 1:
        p.error("expected --duration >= 10 and --users >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    modes = ["sync", "async"] if args.mode == "both" else [args.mode]
    sup = Supervisor(None)
    sup.install_signal_handlers()
    base = Path(tempfile.mkdtemp(prefix="pyjk-failover-"))
    results = []
    print(f"machine: {machine()}", flush=True)
    try:
        for mode in modes:
            try:
                results.append(run_mode(mode, args, sup, base / mode))
            finally:
                sup.stop_all()
            print_details(results[-1])
    except StartError as exc:
        print(f"failover bench: {exc}\nlogs in {base}", file=sys.stderr)
        args.keep_dir = True
        return 1
    finally:
        sup.stop_all()
        if not args.keep_dir:
            shutil.rmtree(base, ignore_errors=True)
    print("\n" + table(results))
    if args.keep_dir:
        print(f"\nconfigs and logs: {base}")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "argv": sys.argv,
                                         "results": results}, indent=1))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
