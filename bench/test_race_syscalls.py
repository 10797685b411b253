"""race_syscalls: perf stat's CSV read into syscalls per request, and one real count."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import race_syscalls as rs

SAMPLE = """# started on Mon Dec  7 00:20:00 2026

40741,,raw_syscalls:sys_enter,5002108447,100.00,,
20000,,syscalls:sys_enter_read,5002108447,100.00,,
0,,syscalls:sys_enter_recvfrom,5002108447,100.00,,
<not counted>,,syscalls:sys_enter_readv,0,0.00,,
20002,,syscalls:sys_enter_write,5002108447,100.00,,
612,,syscalls:sys_enter_epoll_pwait,5002108447,100.00,,
"""


def test_perf_csv_is_read_by_event_and_uncounted_events_are_left_out() -> None:
    counts = rs.parse(SAMPLE)
    assert counts == {
        "raw_syscalls:sys_enter": 40741,
        "syscalls:sys_enter_read": 20000,
        "syscalls:sys_enter_recvfrom": 0,
        "syscalls:sys_enter_write": 20002,
        "syscalls:sys_enter_epoll_pwait": 612,
    }


def test_groups_add_their_events_up_per_request() -> None:
    per = rs.per_request(rs.parse(SAMPLE), 10000)
    assert per["total"] == pytest.approx(4.0741)
    assert per["read"] == pytest.approx(2.0) and per["write"] == pytest.approx(2.0002)
    assert per["wait"] == pytest.approx(0.0612) and per["accept"] == 0
    assert rs.per_request({"raw_syscalls:sys_enter": 5}, 0) == {}


@pytest.mark.skipif(rs.available() is not None, reason=f"perf: {rs.available()}")
def test_a_real_process_writes_are_counted() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c",
         "import os, sys\nsys.stdin.readline()\n"
         "fd = os.open('/dev/null', os.O_WRONLY)\nfor _ in range(3000): os.write(fd, b'x')"],
        stdin=subprocess.PIPE,
    )  # fmt: skip
    counter = rs.SyscallCounter([child.pid])
    counter.start()
    try:
        assert child.stdin is not None  # start() returned: perf counts from here
        child.stdin.write(b"go\n")
        child.stdin.flush()
        child.wait(timeout=30)
    finally:
        counts = counter.stop()
    per = rs.per_request(counts, 3000)
    assert 1.0 <= per["write"] < 1.1  # its 3000 writes (and little else)


def test_the_table_shows_the_median_of_rounds_per_scenario_and_peer() -> None:
    from race_report import Run

    def run(peer: str, total: float, rnd: int = 1) -> Run:
        calls = dict.fromkeys(rs.GROUPS, 0.0) | {"total": total}
        return Run(rnd, "keepalive-100B", peer, 1000, 1.0, 1000.0, 1, 1, 1, 1, 0, 0, 0.1, 100.0,
                   50.0, 100.0, 50.0, syscalls_per_req=calls)  # fmt: skip

    runs = [run("pyjk", 4.0), run("pyjk", 4.2, 2), run("pyjk", 9.0, 3), run("nginx", 5.1)]
    text = rs.format_table(runs, ["pyjk", "nginx", "haproxy"])
    lines = text.splitlines()
    assert lines[3].split()[:3] == ["keepalive-100B", "pyjk", "4.20"]
    assert lines[4].split()[:3] == ["keepalive-100B", "nginx", "5.10"]
    assert len(lines) == 5  # haproxy not measured: no row


def _threaded_child(n: int) -> subprocess.Popen[bytes]:
    """A python with n threads besides its main one, all started, waiting for its stdin."""
    child = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, threading\nev = threading.Event()\n"
         f"for _ in range({n}): threading.Thread(target=ev.wait, daemon=True).start()\n"
         "print('up', flush=True)\nsys.stdin.readline()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )  # fmt: skip
    assert child.stdout is not None
    if child.stdout.readline() != b"up\n":
        child.kill()
        child.wait()
        raise RuntimeError("the threaded child did not start")
    return child


def test_threads_are_counted_from_proc_and_a_gone_process_counts_none() -> None:
    child = _threaded_child(4)
    try:
        assert rs.threads([child.pid]) == 5  # the main thread and four
    finally:
        child.kill()
        child.wait()
    assert rs.threads([child.pid]) == 0


def test_start_waits_for_a_counter_per_event_and_thread_not_per_event() -> None:
    """perf opens one counter per event and per thread, and enables them when all are open: a
    process of 5 threads is counted once 5 x len(EVENTS) counters are open, not len(EVENTS)."""

    class Running:  # perf, as _wait_attached sees it: still running
        pid = 0

        def poll(self) -> None:
            return None

    opening = iter(range(0, 100 * len(rs.EVENTS), len(rs.EVENTS)))  # one thread's at a time
    seen: list[int] = []

    def counters_open() -> int:
        seen.append(next(opening))
        return seen[-1]

    child = _threaded_child(4)
    counter = rs.SyscallCounter([child.pid])
    try:
        counter._proc = Running()  # type: ignore[assignment]
        counter._counters_open = counters_open  # type: ignore[method-assign]
        counter._wait_attached(timeout=10.0)
        assert seen[-1] == 5 * len(rs.EVENTS)  # not len(EVENTS): the first thread's
    finally:
        child.kill()
        child.wait()
        counter._proc = None
        counter.stop()


@pytest.mark.skipif(rs.available() is not None, reason=f"perf: {rs.available()}")
def test_start_returns_with_every_counter_of_a_threaded_process_open() -> None:
    n_threads = 40
    child = _threaded_child(n_threads)
    counter = rs.SyscallCounter([child.pid])
    try:
        counter.start()
        perf = counter._proc
        assert perf is not None
        opened = len(os.listdir(f"/proc/{perf.pid}/fd"))  # (its other fds: a handful)
        assert opened >= len(rs.EVENTS) * (n_threads + 1)
    finally:
        counter.stop()
        child.kill()
        child.wait()
