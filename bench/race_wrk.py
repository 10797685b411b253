"""One bounded wrk run and what it measured."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPORT_LUA = Path(__file__).resolve().parent / "wrk_report.lua"
MARKER = "PYJK-RACE "


@dataclass(frozen=True)
class WrkResult:
    requests: int
    duration_s: float
    bytes: int
    errors: int  # connect + read + write + timeout + non-2xx/3xx responses
    non_2xx: int
    p50_us: int
    p90_us: int
    p99_us: int
    p999_us: int
    max_us: int
    mean_us: float

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0


class WrkError(RuntimeError):
    pass


def parse_report(stdout: str) -> WrkResult:
    """Read the line wrk_report.lua prints; WrkError says what was missing."""
    line = next((ln for ln in stdout.splitlines() if ln.startswith(MARKER)), None)
    if line is None:
        raise WrkError(f"no {MARKER.strip()} line in wrk output:\n{stdout[-2000:]}")
    kv = dict(item.split("=", 1) for item in line[len(MARKER) :].split())
    try:
        errors = sum(int(kv[k]) for k in ("err_connect", "err_read", "err_write", "err_timeout"))
        return WrkResult(
            requests=int(kv["requests"]),
            duration_s=int(kv["duration_us"]) / 1e6,
            bytes=int(kv["bytes"]),
            errors=errors + int(kv["err_status"]),
            non_2xx=int(kv["err_status"]),
            p50_us=int(kv["p50_us"]),
            p90_us=int(kv["p90_us"]),
            p99_us=int(kv["p99_us"]),
            p999_us=int(kv["p999_us"]),
            max_us=int(kv["max_us"]),
            mean_us=float(kv["mean_us"]),
        )
    except KeyError as exc:
        raise WrkError(f"wrk report line lacks {exc}: {line}") from exc


def wrk_argv(
    wrk: str,
    url: str,
    *,
    duration_s: float,
    connections: int,
    headers: Sequence[str] = (),
    timeout_s: float = 5.0,
) -> list[str]:
    argv = [wrk, "-t1", f"-c{connections}", f"-d{max(1, round(duration_s))}s"]
    argv += [f"--timeout={timeout_s:g}s", "--latency", "-s", str(REPORT_LUA)]
    for h in headers:
        argv += ["-H", h]
    return [*argv, url]


def run_wrk(argv: Sequence[str], *, duration_s: float) -> tuple[WrkResult, str]:
    """Run wrk with a hard deadline (duration + 30 s); return the result and wrk's stdout."""
    try:
        proc = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=duration_s + 30,
            check=False,
            start_new_session=True,
        )
    except subprocess.TimeoutExpired as exc:
        raise WrkError(f"wrk did not finish within {duration_s + 30:.0f}s: {argv}") from exc
    if proc.returncode != 0:
        raise WrkError(f"wrk exited {proc.returncode}: {proc.stderr.strip() or proc.stdout}")
    return parse_report(proc.stdout), proc.stdout
