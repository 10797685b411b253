"""race_syscalls: perf stat's CSV read into syscalls per request, and one real count."""

from __future__ import annotations

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
