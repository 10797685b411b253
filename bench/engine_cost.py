"""The lb engine alone, per request: plan, first Forward, response head, finish.

    python bench/engine_cost.py                  # µs per request, best of 5 runs of 20,000
    python bench/engine_cost.py --callgrind      # instructions per request (valgrind)

What the data plane asks of the engine for one request that is served at the first try
(balancer/lb/decisions.py), for two requests (a new session on a plain lb of three members, and
a sticky request whose route names an OK member) and two places the numbers live: plain
objects (``--processes 1``, state.py) and shared records (``--processes N``, shared.py over a
table in a bytearray, as a data-plane process binds to the supervisor's). The µs figures
depend on the machine's load; the callgrind figures do not (N and 3N requests, the difference
over 2N: imports and set-up cancel out). ``PYJK_PURE=1`` measures the sources.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

from balancer.config.model import LbConfig, MemberConfig
from balancer.lb.decisions import Forward, RequestFacts
from balancer.lb.engine import LbEngine
from balancer.lb.shared import ShmState
from balancer.lb.shm import Table, table_size
from balancer.lb.state import LOCAL, LbState

MEMBERS = tuple(MemberConfig(f"n{i}", route=f"n{i}") for i in (1, 2, 3))
LB = LbConfig("lb", balance_workers=tuple(m.name for m in MEMBERS))
REQUESTS = {
    "new-session": RequestFacts("GET", b"/100"),
    "sticky": RequestFacts("GET", b"/100", cookies=(b"JSESSIONID=0123456789ABCDEF.n2",)),
}
STATES = ("local", "shared")


def engine(where: str) -> LbEngine:
    state: LbState = LOCAL
    if where == "shared":
        table = Table(bytearray(table_size(16)), 16)
        table.format()
        LbEngine(LB, MEMBERS, 60, 0.0, ShmState(table, slot=63, owner=True))  # the supervisor
        state = ShmState(table, slot=0, owner=False)
    return LbEngine(LB, MEMBERS, 60, 0.0, state)


def loop(where: str, request: str) -> Callable[[int], None]:
    lb, facts = engine(where), REQUESTS[request]

    def requests(n: int) -> None:
        now = 1.0
        for _ in range(n):
            plan = lb.plan(facts, now)
            step = plan.next(now)
            assert isinstance(step, Forward)
            plan.response_head(200, now)
            plan.finish(100, 200, now)

    return requests


def microseconds(where: str, request: str, n: int, runs: int) -> float:
    run = loop(where, request)
    run(1000)  # warm up
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        run(n)
        best = min(best, time.perf_counter() - t0)
    return best / n * 1e6


def instructions(where: str, request: str, n: int) -> float:
    def total(count: int) -> int:
        argv = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
        argv += [sys.executable, __file__, "--once", where, request, str(count)]
        done = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=600)
        found = re.search(r"refs:\s+([\d,]+)", done.stderr)
        if found is None:
            raise RuntimeError(f"no callgrind summary: {done.stderr[-2000:]}")
        return int(found.group(1).replace(",", ""))

    return (total(3 * n) - total(n)) / (2 * n)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", type=int, default=20_000, help="requests per run (callgrind: 2,000)")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--callgrind", action="store_true", help="instructions, not µs")
    p.add_argument("--once", nargs=3, metavar=("STATE", "REQUEST", "N"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.once:
        where, request, n = args.once
        loop(where, request)(int(n))
        return 0
    from pyjk.hotpath import describe

    print(describe())
    if args.callgrind and shutil.which("valgrind") is None:
        print("needs valgrind (apt-get install -y valgrind)", file=sys.stderr)
        return 2
    for where in STATES:
        for request in REQUESTS:
            if args.callgrind:
                n = min(args.n, 2_000)
                print(
                    f"{where:7s} {request:12s} {instructions(where, request, n):10,.0f} instr/req"
                )
            else:
                us = microseconds(where, request, args.n, args.runs)
                print(f"{where:7s} {request:12s} {us:6.2f} µs/req", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
