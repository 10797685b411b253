"""Checks around the proxy race: tools and machine, a quiet machine, each peer's behaviour."""

from __future__ import annotations

import http.client
import os
import platform
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from race_procs import other_load

HOST = "127.0.0.1"
STICKY_ROUTE = "node2"
QUIET_PCT = 10.0  # a core busier than this with nothing of ours running is "not quiet"
STICKY_COOKIE_VALUE = f"JSESSIONID=abc.{STICKY_ROUTE}"  # as Tomcat with jvmRoute=node2 writes it


def find_binary(name: str) -> str | None:
    return shutil.which(name) or next(
        (p for d in ("/usr/sbin", "/usr/local/sbin") if os.access(p := f"{d}/{name}", os.X_OK)),
        None,
    )


def version_of(argv: Sequence[str]) -> str:
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    text = (proc.stdout + proc.stderr).strip().splitlines()
    return text[0].removeprefix("nginx version: ") if text else "unknown"


def machine_info(bins: dict[str, str | None]) -> dict[str, str]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next(
        (ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith("model name")),
        "unknown",
    )
    mem_kb = next(
        int(ln.split()[1])
        for ln in Path("/proc/meminfo").read_text().splitlines()
        if ln.startswith("MemTotal:")
    )
    info = {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "memory": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "kernel": platform.release(),
        "python": platform.python_version(),
    }
    flags = {"nginx": ["-v"], "haproxy": ["-v"], "wrk": ["-v"]}
    for name, flag in flags.items():
        path = bins.get(name)
        info[name] = version_of([path, *flag]) if path else "missing"
    return info


def wait_until_quiet(
    cores: Sequence[int], wait: float, *, sample: float = 0.5
) -> tuple[bool, dict[int, float], list[str]]:
    """Sample the cores until none is busier than QUIET_PCT, for at most `wait` seconds."""
    deadline = time.monotonic() + wait
    while True:
        busy, busiest = other_load(sample, cores)
        quiet = all(b <= QUIET_PCT for b in busy.values())
        if quiet or time.monotonic() >= deadline:
            return quiet, busy, busiest


def quiet_check(when: str, cores: Sequence[int], *, wait: float = 0.0) -> dict[str, object]:
    """Sample the cores for 1 s (again, for up to `wait` s, until quiet); warn if they are busy.

    Run it while none of the race's processes are running: anything it sees is someone else's.
    """
    quiet, busy, busiest = wait_until_quiet(cores, wait, sample=1.0)
    line = ", ".join(f"core {c} {b:.0f}%" for c, b in busy.items())
    if quiet:
        print(f"quiet check {when}: {line}", flush=True)
    else:
        print(f"!! machine not quiet {when} ({line}); figures will be noisy. Busiest:", flush=True)
        for name in busiest or ["(none above 5%: short-lived processes)"]:
            print(f"     {name}", flush=True)
    return {"when": when, "quiet": quiet, "busy_pct": busy, "busiest": busiest}


def smoke_check(port: int, *, balanced: bool, sticky: bool = True) -> list[str]:
    """Sizes right; if balanced, round robin without a cookie, and (if sticky) route node2
    honoured with one. The bare relay balances but has no stickiness: sticky=False."""
    problems: list[str] = []
    conn = http.client.HTTPConnection(HOST, port, timeout=5)

    def get(path: str, headers: dict[str, str]) -> tuple[int, int, str]:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, len(body), resp.getheader("X-Backend", "")

    try:
        for path, size in (("/100", 100), ("/64k", 65536)):
            status, length, _ = get(path, {})
            if (status, length) != (200, size):
                problems.append(f"GET {path}: status {status}, {length} bytes (want 200, {size})")
        if balanced:
            seen = {get("/100", {})[2] for _ in range(6)}
            if len(seen) < 2:
                problems.append(f"no round robin without a cookie: 6 requests all went to {seen}")
        if balanced and sticky:
            went = [get("/100", {"Cookie": STICKY_COOKIE_VALUE})[2] for _ in range(4)]
            if set(went) != {STICKY_ROUTE}:
                problems.append(f"{STICKY_COOKIE_VALUE} not sticky: went to {went}")
    except (OSError, http.client.HTTPException) as exc:
        problems.append(f"smoke request failed: {type(exc).__name__}: {exc}")
    finally:
        conn.close()
    return problems
