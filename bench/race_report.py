"""Turning race runs into a summary table, pyjk/peer ratios and JSON. Pure: no processes here."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Run:
    """One measured wrk run of one scenario against one peer."""

    round: int
    scenario: str
    peer: str
    requests: int
    duration_s: float
    rps: float
    p50_us: int
    p90_us: int
    p99_us: int
    p999_us: int
    errors: int
    non_2xx: int
    proxy_cpu_s: float | None  # utime+stime of the proxy's process tree during the run
    cpu_us_per_req: float | None
    proxy_cpu_pct: float | None  # proxy CPU time / wall time
    proxy_core_pct: float  # busy share of the proxy's core (everything on it)
    load_core_pct: float  # busy share of the core running wrk and the backends
    quiet_before: bool | None = None  # with --wait-quiet: were the cores idle before the run?
    # cpu_us_per_req split into utime (the proxy's own code) and stime (the kernel on its
    # behalf: syscalls, the TCP stack; about the same work for every peer)
    user_us_per_req: float | None = None
    sys_us_per_req: float | None = None
    # with --syscalls: system calls per request by group (race_syscalls.GROUPS)
    syscalls_per_req: dict[str, float] | None = None


@dataclass(frozen=True)
class Row:
    """Median over rounds of one (scenario, peer)."""

    scenario: str
    peer: str
    rounds: int
    rps: float
    rps_min: float
    rps_max: float
    p50_us: float
    p99_us: float
    cpu_us_per_req: float | None
    proxy_cpu_pct: float | None
    proxy_core_pct: float
    load_core_pct: float
    errors: int
    user_us_per_req: float | None = None  # medians of the split, each on its own
    sys_us_per_req: float | None = None


def _median_or_none(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarise(runs: Sequence[Run], peer_order: Sequence[str]) -> list[Row]:
    """Rows in first-seen scenario order, peers in peer_order."""
    scenarios = list(dict.fromkeys(r.scenario for r in runs))
    rows = []
    for scenario in scenarios:
        for peer in peer_order:
            mine = [r for r in runs if r.scenario == scenario and r.peer == peer]
            if not mine:
                continue
            rows.append(
                Row(
                    scenario=scenario,
                    peer=peer,
                    rounds=len(mine),
                    rps=statistics.median(r.rps for r in mine),
                    rps_min=min(r.rps for r in mine),
                    rps_max=max(r.rps for r in mine),
                    p50_us=statistics.median(r.p50_us for r in mine),
                    p99_us=statistics.median(r.p99_us for r in mine),
                    cpu_us_per_req=_median_or_none(r.cpu_us_per_req for r in mine),
                    proxy_cpu_pct=_median_or_none(r.proxy_cpu_pct for r in mine),
                    proxy_core_pct=statistics.median(r.proxy_core_pct for r in mine),
                    load_core_pct=statistics.median(r.load_core_pct for r in mine),
                    errors=sum(r.errors for r in mine),
                    user_us_per_req=_median_or_none(r.user_us_per_req for r in mine),
                    sys_us_per_req=_median_or_none(r.sys_us_per_req for r in mine),
                )
            )
    return rows


@dataclass(frozen=True)
class Ratio:
    scenario: str
    other: str
    rps: float  # pyjk req/s / other req/s (above 1: pyjk faster)
    p99: float  # pyjk p99 / other p99 (above 1: pyjk slower)
    cpu_per_req: float | None  # pyjk CPU per request / other's (above 1: pyjk costlier)


def ratios(rows: Sequence[Row], *, ours: str = "pyjk", others: Sequence[str]) -> list[Ratio]:
    """pyjk against each other peer, per scenario; empty when pyjk was not measured."""
    by_key = {(r.scenario, r.peer): r for r in rows}
    out = []
    for scenario in dict.fromkeys(r.scenario for r in rows):
        mine = by_key.get((scenario, ours))
        if mine is None:
            continue
        for other in others:
            theirs = by_key.get((scenario, other))
            if theirs is None or theirs.rps == 0 or theirs.p99_us == 0:
                continue
            cpu = None
            if mine.cpu_us_per_req is not None and theirs.cpu_us_per_req:
                cpu = mine.cpu_us_per_req / theirs.cpu_us_per_req
            out.append(
                Ratio(
                    scenario=scenario,
                    other=other,
                    rps=mine.rps / theirs.rps,
                    p99=mine.p99_us / theirs.p99_us,
                    cpu_per_req=cpu,
                )
            )
    return out


def crowded(rows: Sequence[Row], *, slack: float = 20.0) -> list[Row]:
    """Rows where the proxy's core was busier than the proxy: something else ran there."""
    return [
        r
        for r in rows
        if r.proxy_cpu_pct is not None and r.proxy_core_pct - r.proxy_cpu_pct > slack
    ]


def _ms(us: float) -> str:
    return f"{us / 1000:.3f}"


def _opt(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _split(user: float | None, system: float | None) -> str:
    return "-" if user is None or system is None else f"{user:.1f}/{system:.1f}"


def format_table(rows: Sequence[Row]) -> str:
    header = (
        "scenario",
        "peer",
        "req/s",
        "(min-max)",
        "p50 ms",
        "p99 ms",
        "CPU µs/req",
        "user/sys µs",
        "proxy CPU%",
        "proxy core%",
        "load core%",
        "errors",
    )
    body = [
        (
            r.scenario,
            r.peer,
            f"{r.rps:,.0f}",
            f"{r.rps_min:,.0f}-{r.rps_max:,.0f}" if r.rounds > 1 else "",
            _ms(r.p50_us),
            _ms(r.p99_us),
            _opt(r.cpu_us_per_req, ".1f"),
            _split(r.user_us_per_req, r.sys_us_per_req),
            _opt(r.proxy_cpu_pct, ".0f"),
            f"{r.proxy_core_pct:.0f}",
            f"{r.load_core_pct:.0f}",
            str(r.errors),
        )
        for r in rows
    ]
    return _grid([header, *body], left_columns=2)


def format_ratios(items: Sequence[Ratio]) -> str:
    header = ("scenario", "pyjk vs", "req/s ×", "p99 ×", "CPU/req ×")
    body = [
        (x.scenario, x.other, f"{x.rps:.2f}", f"{x.p99:.2f}", _opt(x.cpu_per_req, ".2f"))
        for x in items
    ]
    return _grid([header, *body], left_columns=2)


def _grid(lines: Sequence[Sequence[str]], *, left_columns: int) -> str:
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    out = []
    for n, line in enumerate(lines):
        cells = [
            cell.ljust(w) if i < left_columns else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        ]
        out.append("  ".join(cells).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def as_json(items: Iterable[Run | Row | Ratio]) -> list[dict[str, object]]:
    return [asdict(x) for x in items]
