"""Processes of the proxy race: start them pinned to a core, wait until they serve, kill them.

Every child gets its own session (process group), so killing the group also takes nginx's
worker processes or anything pyjk forks. `Supervisor.stop_all` runs from try/finally, atexit
and signal handlers alike, and is safe to call more than once.
"""

from __future__ import annotations

import atexit
import contextlib
import http.client
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

CLK_TCK = os.sysconf("SC_CLK_TCK")


class StartError(RuntimeError):
    """A process did not come up; the message says which, why, and the tail of its log."""


@dataclass
class Child:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    argv: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class Supervisor:
    def __init__(self, taskset: str | None) -> None:
        self.taskset = taskset  # path of taskset(1), or None to run unpinned
        self.children: list[Child] = []
        atexit.register(self.stop_all)

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        cpu: int | str | None,  # a core, or a taskset list such as "0,2"
        log: Path,
        cwd: Path | None = None,
    ) -> Child:
        full = list(argv)
        if cpu is not None and self.taskset:
            full = [self.taskset, "-c", str(cpu), *full]
        out = log.open("ab")
        try:
            popen = subprocess.Popen(
                full,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                start_new_session=True,
            )
        finally:
            out.close()
        child = Child(name=name, popen=popen, log=log, argv=full)
        self.children.append(child)
        return child

    def stop(self, child: Child, grace: float = 3.0) -> None:
        if child.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.popen.wait(timeout=grace)
        # The leader may be gone while its group (e.g. nginx workers) lingers: SIGKILL the group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.popen.wait(timeout=grace)

    def stop_all(self) -> None:
        while self.children:
            self.stop(self.children.pop())

    def install_signal_handlers(self) -> None:
        """SIGINT keeps raising KeyboardInterrupt (finally blocks run); SIGTERM/SIGHUP exit too."""

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            self.stop_all()
            raise SystemExit(128 + signum)

        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, on_signal)


def wait_http_ready(child: Child, host: str, port: int, path: str, timeout: float) -> None:
    """Poll GET path until it answers 200; raise StartError if the child dies or time runs out."""
    deadline = time.monotonic() + timeout
    last = "no attempt"
    while time.monotonic() < deadline:
        code = child.popen.poll()
        if code is not None:
            raise StartError(
                f"{child.name} exited with status {code} before serving {host}:{port}\n"
                f"  command: {' '.join(child.argv)}\n{_indent(child.log_tail())}"
            )
        try:
            conn = http.client.HTTPConnection(host, port, timeout=1.0)
            try:
                conn.request("GET", path)
                resp = conn.getresponse()
                resp.read()
                if resp.status == 200:
                    return
                last = f"HTTP {resp.status}"
            finally:
                conn.close()
        except (OSError, http.client.HTTPException) as exc:
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(0.1)
    raise StartError(
        f"{child.name} did not answer GET http://{host}:{port}{path} with 200 within "
        f"{timeout:.0f}s (last: {last})\n  command: {' '.join(child.argv)}\n"
        f"{_indent(child.log_tail())}"
    )


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """n distinct ports the kernel says are free right now (held open together, then released)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


# -- CPU accounting from /proc ---------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # comm (field 2) may contain spaces; everything after the last ")" is fixed-position.
    return raw[raw.rindex(")") + 2 :].split()


def descendants(root: int) -> list[int]:
    """root and every live process below it (nginx master + workers, pyjk + any children)."""
    parent_of: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None:
                parent_of[int(entry)] = int(fields[1])  # ppid is field 4 overall
    found = [root]
    frontier = [root]
    while frontier:
        nxt = [pid for pid, ppid in parent_of.items() if ppid in frontier]
        found += nxt
        frontier = nxt
    return found


def cpu_times(root: int) -> tuple[float, float]:
    """(utime, stime) of root's live process tree, in seconds (resolution 1/CLK_TCK): the time
    spent in the proxy's own code, and in the kernel on its behalf (syscalls, the TCP stack)."""
    user = system = 0
    for pid in descendants(root):
        fields = _stat_fields(pid)
        if fields is not None:
            user += int(fields[11])  # utime: field 14 overall
            system += int(fields[12])  # stime: field 15 overall
    return user / CLK_TCK, system / CLK_TCK


def cpu_seconds(root: int) -> float:
    """utime + stime of root's live process tree, in seconds (resolution 1/CLK_TCK)."""
    return sum(cpu_times(root))


def core_times(cpus: Sequence[int]) -> dict[int, tuple[int, int]]:
    """(busy, total) jiffies per listed core from /proc/stat."""
    out: dict[int, tuple[int, int]] = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *vals = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
            nums = [int(v) for v in vals[:8]]
            idle = nums[3] + nums[4]  # idle + iowait
            out[int(name[3:])] = (sum(nums) - idle, sum(nums))
    return out


def _indent(text: str) -> str:
    return "\n".join(f"    | {line}" for line in text.splitlines())


def other_load(
    seconds: float, cores: Sequence[int], top: int = 3
) -> tuple[dict[int, float], list[str]]:
    """Busy % per core over `seconds`, and the busiest processes then (a shared-machine check).

    The race's figures are only worth something on a quiet machine; this says whether it is.
    """

    def proc_ticks() -> dict[int, int]:
        ticks = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit() and (fields := _stat_fields(int(entry))) is not None:
                ticks[int(entry)] = int(fields[11]) + int(fields[12])
        return ticks

    cores0, procs0 = core_times(cores), proc_ticks()
    time.sleep(seconds)
    cores1, procs1 = core_times(cores), proc_ticks()
    busy = {}
    for core in cores:
        (b0, t0), (b1, t1) = cores0.get(core, (0, 0)), cores1.get(core, (0, 0))
        busy[core] = 100.0 * (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0
    used = sorted(
        (
            (procs1[pid] - procs0[pid], pid)
            for pid in procs1
            if pid in procs0 and pid != os.getpid()
        ),
        reverse=True,
    )
    names = []
    for delta, pid in used[:top]:
        pct = 100.0 * delta / CLK_TCK / seconds
        if pct < 5:
            break
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
            cmd = cmd or f"[{Path(f'/proc/{pid}/comm').read_text().strip()}]"  # kernel thread
        except OSError:
            cmd = "(exited)"
        names.append(f"{pct:.0f}% pid {pid} {cmd[:70]}")
    return busy, names
