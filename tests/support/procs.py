"""Real processes for integration tests: start, wait until ready, always stop.

Every process started here is killed at teardown even when the test failed, and every wait has
a deadline, so a broken build fails fast instead of hanging CI.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(
    check: Callable[[], bool], timeout: float = 10.0, interval: float = 0.02, what: str = ""
) -> None:
    """Poll ``check`` until it returns true or ``timeout`` runs out (then AssertionError)."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception as exc:  # the thing polled may not be up yet
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or check}: {last_exc!r}")


async def until(check: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
    """``wait_for`` for async tests: the (blocking) check runs off the event loop."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await asyncio.to_thread(check):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or check}")


def memory_mib(pid: int, field: str = "VmRSS") -> float:
    """A /proc/<pid>/status memory field in MiB: VmRSS (resident now), VmHWM (its peak)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no {field} for pid {pid}")


def open_files(pid: int) -> set[str]:
    """What the descriptors of ``pid`` point at (paths, ``socket:[inode]``)."""
    out = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            out.add(os.readlink(fd))
    return out


def _sockets(table: str, local: set[int], remote: set[int]) -> set[str]:
    """``socket:[inode]`` of the /proc/net/<table> entries with a local or remote port."""
    out = set()
    for name in (table, table + "6"):
        for line in Path(f"/proc/net/{name}").read_text().splitlines()[1:]:
            cols = line.split()
            lport, rport = int(cols[1].rsplit(":", 1)[1], 16), int(cols[2].rsplit(":", 1)[1], 16)
            if lport in local or rport in remote:
                out.add(f"socket:[{cols[9]}]")
    return out


def udp_sockets(port: int) -> set[str]:
    """The UDP sockets bound to ``port`` (e.g. a multicast group's receivers)."""
    return _sockets("udp", {port}, set())


def tcp_connections_to(ports: set[int]) -> set[str]:
    """The TCP sockets connected to one of ``ports``."""
    return _sockets("tcp", set(), ports)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


class Proc:
    """A started child process with its output captured to a file for failure messages."""

    def __init__(self, args: Sequence[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.args = list(args)
        self.log_path = log
        self._log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.popen = subprocess.Popen(
            self.args,
            cwd=ROOT,
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            self.popen.send_signal(sig)

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout=timeout)

    def stop(self, timeout: float = 5.0) -> None:
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=timeout)
        self._log.close()


class ProcGroup:
    """Processes of one test; ``stop_all`` runs at teardown whatever happened."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: list[Proc] = []

    def python(self, *args: str, name: str, env: dict[str, str] | None = None) -> Proc:
        proc = Proc([sys.executable, *args], self.log_dir / f"{name}.log", env)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()

    def logs(self) -> str:
        return "\n".join(f"--- {p.log_path.name}\n{p.output()[-3000:]}" for p in self.procs)


@contextlib.contextmanager
def proc_group(log_dir: Path) -> Iterator[ProcGroup]:
    group = ProcGroup(log_dir)
    try:
        yield group
    finally:
        group.stop_all()
