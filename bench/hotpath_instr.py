"""Instructions per request of the whole balancer process (callgrind, free of machine load).

    python bench/hotpath_instr.py                       # keepalive-100B, sticky-100B, close-100B
    python bench/hotpath_instr.py -n 2000 --scenario sticky-100B
    python bench/hotpath_instr.py -n 300 --scenario keepalive-64KiB   # or close-64KiB: /64k
    python bench/hotpath_instr.py --processes 2        # the shared lb state (supervisor + 2)
    python bench/hotpath_instr.py --relay              # the floor: bench/bare_relay.py instead
    python bench/hotpath_instr.py --relay-headers      # the floor of a balancer (--read-headers)
    python bench/hotpath_instr.py --breakdown          # and by kind (bench/instr_breakdown.py)

The balancer runs as in the race (``python -m balancer`` over three nginx backends,
bench/backend.py), but under ``valgrind --tool=callgrind``. A client in this process sends N
requests one after another (keep-alive on one connection, or one connection per request for
close-100B), then stops the balancer; callgrind's total is read from its exit summary. Each
scenario runs twice, with N and 3N requests, and the difference divided by 2N is the cost of
one request: start-up, imports, config reading and shutdown cancel out. Instruction counts do
not depend on the machine's load, so this can be measured on a busy machine (a wall-clock race
cannot). ``PYJK_PURE`` and any other environment variable pass through to the balancer.

``--relay`` counts bench/bare_relay.py (the race's ``relay`` peer: the same stack without pyjk's
features) in the balancer's place, over the same backends and requests; ``--relay-headers``
counts it with ``--read-headers`` (the peer ``relay-headers``: URL, Host and Cookie read in
Python, sticky routing, a deadline per request).

``--processes`` is passed to the balancer (default 1: one process, no supervisor; without it
the balancer would start a supervisor and a data-plane process per CPU, which callgrind does
not follow, and count nothing). With N > 1 valgrind follows the data-plane processes
(``--trace-children``); the supervisor's count is left out, and the count is the process that
served the keep-alive connection (close-100B: the data-plane processes added up). What a
process does per unit of time (its 50 ms publishing timer) does not cancel out between the
two runs when the machine's load makes their durations differ: expect a few thousand
instructions of noise per request.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import race_configs as cfg
from backend import find_nginx, nginx_argv, write_backend
from bare_relay import command as relay_command
from instr_breakdown import breakdown, format_breakdown
from race_checks import STICKY_COOKIE_VALUE
from race_procs import Supervisor, free_ports, wait_http_ready

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
# name -> (extra header lines, keep-alive, path); the default run is the first three
SCENARIOS: dict[str, tuple[str, bool, str]] = {
    "keepalive-100B": ("", True, "/100"),
    "sticky-100B": (f"Cookie: {STICKY_COOKIE_VALUE}\r\n", True, "/100"),
    "close-100B": ("Connection: close\r\n", False, "/100"),
    "keepalive-64KiB": ("", True, "/64k"),
    "close-64KiB": ("Connection: close\r\n", False, "/64k"),
}
_DEFAULT_SCENARIOS = ["keepalive-100B", "sticky-100B", "close-100B"]
_HEAD_END = b"\r\n\r\n"


def _read_response(sock: socket.socket) -> None:
    """Read one response with a Content-Length body (the backends' /100 and /64k have one)."""
    buf = b""
    while _HEAD_END not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("balancer closed before a response head")
        buf += chunk
    head, _, body = buf.partition(_HEAD_END)
    if not head.startswith(b"HTTP/1.1 200") or b"\r\nX-Backend: " not in head:
        raise RuntimeError(f"unexpected response: {head[:80]!r}")
    length = int(re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head).group(1))  # type: ignore[union-attr]
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("balancer closed inside a body")
        body += chunk


def drive(port: int, scenario: str, n: int) -> None:
    extra, keepalive, path = SCENARIOS[scenario]
    request = f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n{extra}\r\n".encode()
    sock: socket.socket | None = None
    for _ in range(n):
        if sock is None:
            sock = socket.create_connection((HOST, port), timeout=30)
        sock.sendall(request)
        _read_response(sock)
        if not keepalive:
            sock.recv(1)  # the balancer's FIN: the connection is really done before the next one
            sock.close()
            sock = None
    if sock is not None:
        sock.close()


class PortTaken(RuntimeError):
    """Another process answered on the port picked for the balancer (or it could not bind)."""


def instructions(
    python: str,
    source: Path,
    workdir: Path,
    members: Sequence[cfg.Member],
    scenario: str,
    n: int,
    processes: int = 1,
    relay: str = "",
) -> tuple[int, Path]:
    """The process's instruction count for n requests, and its callgrind profile (with
    --processes N > 1: the supervisor's; the count is the data-plane processes'). relay: ""
    for the balancer, or the race's peer "relay" or "relay-headers" in its place."""
    for _ in range(5):  # a free port can be taken by another process before valgrind binds it
        try:
            return _instructions(python, source, workdir, members, scenario, n, processes, relay)
        except PortTaken:
            continue
    raise RuntimeError("no free port for the balancer after 5 tries")


def _instructions(
    python: str,
    source: Path,
    workdir: Path,
    members: Sequence[cfg.Member],
    scenario: str,
    n: int,
    processes: int,
    relay: str = "",
) -> tuple[int, Path]:
    workers = workdir / "workers.properties"
    mounts = workdir / "uriworkermap.properties"
    workers.write_text(cfg.workers_properties(members))
    mounts.write_text(cfg.uriworkermap())
    (port,) = free_ports(1)
    out = workdir / "callgrind.out.%p"
    log = workdir / "balancer.log"
    argv = [
        "valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
        *(["--trace-children=yes"] if processes > 1 else []),
        python, "-m", "balancer", "--workers", str(workers), "--mounts", str(mounts),
        "--listen", f"{HOST}:{port}", "--processes", str(processes),
    ]  # fmt: skip
    if relay:  # the same place in the same run, filled by the bare relay (one process)
        upstreams = [(m.route, m.host, m.port) for m in members]
        at = argv.index(python)
        headers = relay == "relay-headers"
        argv[at:] = relay_command(python, (HOST, port), upstreams, read_headers=headers)
    with log.open("wb") as sink:
        proc = subprocess.Popen(argv, cwd=source, stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 600  # a loaded machine: valgrind starts slowly
        # valgrind start-up is slow; with a supervisor, every data-plane process must listen
        while log.read_bytes().count(b"listening on") < processes:
            if proc.poll() is not None:
                if b"cannot listen" in log.read_bytes():
                    raise PortTaken(port)
                raise RuntimeError(f"balancer did not start: {log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"balancer did not start in time: {log.read_text()[-2000:]}")
            time.sleep(0.5)
        try:
            drive(port, "keepalive-100B", 1)
        except RuntimeError as exc:  # not our balancer's answer
            raise PortTaken(port) from exc
        drive(port, scenario, n)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # one summary per process valgrind ran (the supervisor and its data-plane processes)
    totals = {
        int(pid): int(refs.replace(",", ""))
        for pid, refs in re.findall(r"==(\d+)== I\s+refs:\s+([\d,]+)", log.read_text())
    }
    profile = workdir / f"callgrind.out.{proc.pid}"  # valgrind runs python in its own process
    if processes == 1:
        if len(totals) != 1:
            raise RuntimeError(f"{len(totals)} callgrind summaries in {log}")
        return next(iter(totals.values())), profile
    totals.pop(proc.pid, None)  # the supervisor's: health checks and timers, no requests
    if len(totals) < processes:
        raise RuntimeError(f"{len(totals)} data-plane callgrind summaries in {log}")
    # one keep-alive connection is served by one process: the others only idle
    count = max(totals.values()) if SCENARIOS[scenario][1] else sum(totals.values())
    return count, profile


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", type=int, default=1000, help="requests of the short run (long: 3n)")
    p.add_argument("--scenario", action="append", choices=sorted(SCENARIOS))
    p.add_argument("--python", default=str(ROOT / ".venv" / "bin" / "python"))
    p.add_argument(
        "--source",
        type=Path,
        default=ROOT,
        help="the tree the balancer runs from (e.g. `git archive` of another commit)",
    )
    p.add_argument(
        "--processes",
        type=int,
        default=1,
        help="the balancer's --processes (default 1; N > 1: the shared lb state, see above)",
    )
    p.add_argument(
        "--relay",
        action="store_true",
        help="count bench/bare_relay.py, the race's relay peer, instead of the balancer",
    )
    p.add_argument(
        "--relay-headers",
        action="store_true",
        help="count bench/bare_relay.py --read-headers, the race's relay-headers peer",
    )
    p.add_argument(
        "--breakdown",
        action="store_true",
        help="also say where the instructions go, by kind (one process only)",
    )
    p.add_argument(
        "--keep",
        type=Path,
        help="copy each run's callgrind profile here (SCENARIO.short / SCENARIO.long), for "
        "callgrind_annotate",
    )
    args = p.parse_args(argv)
    if args.relay and args.relay_headers:
        p.error("--relay or --relay-headers: one of them")
    relay = "relay" if args.relay else "relay-headers" if args.relay_headers else ""
    if (relay or args.breakdown) and args.processes != 1:
        p.error("--relay, --relay-headers and --breakdown are for one process: no --processes")
    nginx = find_nginx()
    if nginx is None or shutil.which("valgrind") is None:
        print("needs nginx and valgrind (apt-get install -y nginx valgrind)", file=sys.stderr)
        return 2
    scenarios = args.scenario or _DEFAULT_SCENARIOS
    with tempfile.TemporaryDirectory(prefix="pyjk-instr-") as tmp:
        workdir = Path(tmp)
        members = cfg.members_for(free_ports(3))
        sup = Supervisor(taskset=None)
        sup.install_signal_handlers()  # SIGTERM runs the finally blocks: nothing left running
        try:
            conf = write_backend(members, workdir)
            child = sup.start(
                "backends", nginx_argv(nginx, conf, workdir), cpu=None, log=workdir / "be.log"
            )
            for m in members:
                wait_http_ready(child, m.host, m.port, "/100", 10.0)
            pure = " (PYJK_PURE=1)" if os.environ.get("PYJK_PURE") == "1" else ""
            if args.processes > 1:
                pure += f" (--processes {args.processes})"
            if relay:
                pure = " (bare relay)" if relay == "relay" else " (bare relay, reading headers)"
            for scenario in scenarios:
                run = (args.python, args.source, workdir, members, scenario)
                short, short_profile = instructions(*run, args.n, args.processes, relay)
                long, long_profile = instructions(*run, 3 * args.n, args.processes, relay)
                per = (long - short) / (2 * args.n)
                print(f"{scenario:16s} {per:10,.0f} instructions per request{pure}", flush=True)
                if args.keep is not None:
                    args.keep.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(short_profile, args.keep / f"{scenario}.short")
                    shutil.copyfile(long_profile, args.keep / f"{scenario}.long")
                if args.breakdown:
                    parts = breakdown(short_profile, long_profile, 2 * args.n)
                    print(format_breakdown(parts), flush=True)
        finally:
            sup.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
