"""System calls per request of a peer under the race's load (``proxy_race.py --syscalls``).

``perf stat`` counts the kernel's syscall tracepoints of the peer's processes while wrk runs:
the total (``raw_syscalls:sys_enter``) and the calls a proxy's request path makes (reads,
writes, the event-loop waits, accepts and closes). The count is exact for its run; per
request it still depends on how many events each wait returns, so on the relative speed of the
load and the proxy. The tracepoints cost the traced process time on every system call: the CPU
and req/s columns of a race with --syscalls are not comparable with a race without it (run the
count as a race of its own). The figures answer one question of issue 12: does pyjk ask the
kernel for more than nginx does, or is its extra CPU its own user-space work? Needs ``perf``
(Debian's linux-perf) and the right to trace (root, or ``kernel.perf_event_paranoid`` <= 1);
without them the race goes on without the column.

Beside the syscalls, the same run counts the heap's calls (``heap``: brk, mmap, munmap,
madvise), page faults and context switches per request: a proxy whose allocator gives memory
back to the kernel and takes it again per response pays page faults in system time (issue 12,
the 64 KiB scenarios).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from statistics import median
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from race_report import Run

# (column, tracepoints added up); "total" is every system call
GROUPS: dict[str, tuple[str, ...]] = {
    "total": ("raw_syscalls:sys_enter",),
    "read": ("syscalls:sys_enter_read", "syscalls:sys_enter_recvfrom", "syscalls:sys_enter_readv"),
    "write": ("syscalls:sys_enter_write", "syscalls:sys_enter_writev", "syscalls:sys_enter_sendto",
              "syscalls:sys_enter_sendmsg"),
    "wait": ("syscalls:sys_enter_epoll_wait", "syscalls:sys_enter_epoll_pwait",
             "syscalls:sys_enter_io_uring_enter"),
    "epoll_ctl": ("syscalls:sys_enter_epoll_ctl",),
    "accept": ("syscalls:sys_enter_accept4", "syscalls:sys_enter_accept"),
    "close": ("syscalls:sys_enter_close", "syscalls:sys_enter_shutdown"),
    # the heap's calls: glibc growing (brk, mmap) and giving back (brk, madvise, munmap) memory
    "heap": ("syscalls:sys_enter_brk", "syscalls:sys_enter_mmap", "syscalls:sys_enter_munmap",
             "syscalls:sys_enter_madvise"),
    # software events, not syscalls: a page touched for the first time since it was mapped (or
    # given back) faults; both are exact counts however busy the machine is
    "faults": ("page-faults",),
    "cswitch": ("context-switches",),
}  # fmt: skip
EVENTS = tuple(event for events in GROUPS.values() for event in events)


def available() -> str | None:
    """None when perf can count the tracepoints here, else why not."""
    if shutil.which("perf") is None:
        return "perf is not installed (apt-get install -y linux-perf)"
    try:
        probe = subprocess.run(
            ["perf", "stat", "-x,", "-e", ",".join(EVENTS), "true"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"perf did not run: {exc}"
    counts = parse(probe.stderr)
    if probe.returncode != 0 or "raw_syscalls:sys_enter" not in counts:
        return f"perf cannot count syscall tracepoints: {probe.stderr.strip()[-200:]}"
    return None


def parse(text: str) -> dict[str, int]:
    """perf stat's CSV (-x,) lines: count,unit,event,... — events it could not count are left
    out."""
    counts: dict[str, int] = {}
    for line in text.splitlines():
        fields = line.split(",")
        if len(fields) < 3 or not fields[0].strip().isdigit():
            continue
        counts[fields[2].strip()] = int(fields[0])
    return counts


def per_request(counts: dict[str, int], requests: int) -> dict[str, float]:
    """The groups' counts divided by the number of requests."""
    if requests <= 0:
        return {}
    return {
        group: sum(counts.get(event, 0) for event in events) / requests
        for group, events in GROUPS.items()
    }


def threads(pids: Sequence[int]) -> int:
    """How many threads the processes have now (/proc/<pid>/task; a process gone counts 0)."""
    count = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            count += len(os.listdir(f"/proc/{pid}/task"))
    return count


class SyscallCounter:
    """``perf stat`` attached to some processes from ``start()`` to ``stop()``."""

    def __init__(self, pids: Sequence[int]) -> None:
        self._pids = [int(p) for p in pids]
        self._dir = tempfile.TemporaryDirectory(prefix="race-syscalls-")
        self._out = Path(self._dir.name) / "perf.csv"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = ["perf", "stat", "-x,", "-o", str(self._out), "-e", ",".join(EVENTS),
                "-p", ",".join(map(str, self._pids))]  # fmt: skip
        self._proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._wait_attached(timeout=10.0)

    def _wait_attached(self, timeout: float) -> None:
        """Until perf holds all its counters: what runs after start() is counted. perf opens one
        perf_event fd per event and per thread of the traced processes, and enables them only
        once all are open, so a count of len(EVENTS) fds would return too early."""
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._proc.poll() is None:
            if self._counters_open() >= len(EVENTS) * max(1, threads(self._pids)):
                return
            time.sleep(0.02)

    def _counters_open(self) -> int:
        """How many perf_event fds perf holds now."""
        assert self._proc is not None
        fds = Path(f"/proc/{self._proc.pid}/fd")
        try:
            return sum("perf_event" in str(f.readlink()) for f in fds.iterdir())
        except OSError:  # an fd closed while listed
            return 0

    def stop(self) -> dict[str, int]:
        """Detach and return the counts (empty when perf failed)."""
        proc, self._proc = self._proc, None
        try:
            if proc is None:
                return {}
            proc.send_signal(signal.SIGINT)  # perf prints its counts on SIGINT
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                return {}
            return parse(self._out.read_text()) if self._out.exists() else {}
        finally:
            self._dir.cleanup()


def format_table(runs: Sequence[Run], order: Sequence[str]) -> str:
    """Syscalls per request by scenario and peer (median over rounds)."""
    groups = list(GROUPS)
    head = f"{'scenario':16s} {'peer':13s} " + " ".join(f"{g:>9s}" for g in groups)
    lines = ["syscalls per request (perf stat, median of rounds)", head, "-" * len(head)]
    scenarios = list(dict.fromkeys(r.scenario for r in runs))
    for scenario in scenarios:
        for peer in order:
            counted = [
                r.syscalls_per_req
                for r in runs
                if r.scenario == scenario and r.peer == peer and r.syscalls_per_req
            ]
            if counted:
                cells = " ".join(f"{median(c[g] for c in counted):9.2f}" for g in groups)
                lines.append(f"{scenario:16s} {peer:13s} {cells}")
    return "\n".join(lines)
