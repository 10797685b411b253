"""The failover benchmark's arithmetic and table (pure: no processes, no clock).

Inputs: locust's `--json-file` stats, the locustfile's JSON summary (moves, anomalies, and every
request's end time and latency) and the wall times of the kill and the restart. A request
belongs to the phase in which its reply arrived:

- before: until the kill;
- during: from the kill until the last session that had to move was re-stuck (the last move
  before the restart), or until the last failed check before the restart if that is later
  (without replication sessions are not moved but lost);
- after: from then until the restart;
- restarted: from the restart (the victim back on its port) until the end.
"""

from __future__ import annotations

import json
import math
import re
import time
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PHASES = ("before", "during", "after", "restarted")
FAILOVER_TYPE = "FAILOVER"


@dataclass(frozen=True)
class PhaseStats:
    name: str
    start: float
    end: float
    requests: int
    failures: int
    p50_ms: float | None
    p99_ms: float | None

    @property
    def seconds(self) -> float:
        return max(self.end - self.start, 0.0)

    def as_dict(self, origin: float = 0.0) -> dict[str, Any]:
        """JSON-ready, with start and end in seconds after `origin` (e.g. the kill)."""
        return {
            "name": self.name, "start": self.start - origin, "end": self.end - origin,
            "seconds": self.seconds, "requests": self.requests, "failures": self.failures,
            "p50_ms": self.p50_ms, "p99_ms": self.p99_ms,
        }  # fmt: skip


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of an ascending sequence; None when empty."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return float(sorted_values[rank - 1])


def settled_at(events: Sequence[dict[str, Any]], kill: float, restart: float) -> float:
    """The last event (`{"t": wall time}`) between the kill and the restart (else the kill)."""
    times = [e["t"] for e in events if kill <= e["t"] < restart]
    return max(times, default=kill)


def split_moves(
    moves: Sequence[dict[str, Any]], victim: str, kill: float, restart: float
) -> dict[str, Any]:
    """Moves off the killed node between kill and restart, and every other move.

    Other moves are sessions the balancer sent from one live node to another: mod_jk's lb
    fails a sticky request over when its member is busy (pool exhausted) or in error, and the
    node that serves it takes the session over.
    """
    off = [m for m in moves if m["from"] == victim and kill <= m["t"] < restart]
    other = [m for m in moves if not (m["from"] == victim and kill <= m["t"] < restart)]
    pairs: dict[str, int] = {}
    for m in other:
        phase = "before" if m["t"] < kill else "after kill" if m["t"] < restart else "restarted"
        key = f"{m['from']}->{m['to']} {phase}"
        pairs[key] = pairs.get(key, 0) + 1
    return {
        "off_list": off,
        "off_victim": len(off),
        "restick_max_s": max((m["restick_s"] for m in off), default=None),
        "restuck": settled_at(off, kill, restart),
        "other_moves": len(other),
        "other_restick_max_s": max((m["restick_s"] for m in other), default=None),
        "other_pairs": dict(sorted(pairs.items())),
    }


def phase_bounds(first: float, kill: float, restuck: float, restart: float,
                 last: float) -> list[tuple[str, float, float]]:  # fmt: skip
    return [
        ("before", first, kill),
        ("during", kill, restuck),
        ("after", restuck, restart),
        ("restarted", restart, last),
    ]


def phase_stats(
    ends: Sequence[float], ms: Sequence[float], ok: Sequence[int],
    bounds: Sequence[tuple[str, float, float]],
) -> list[PhaseStats]:  # fmt: skip
    """Requests, failures and latency percentiles per phase; samples sorted by end time."""
    order = sorted(range(len(ends)), key=ends.__getitem__)
    ends_sorted = [ends[i] for i in order]
    out = []
    for index, (name, start, end) in enumerate(bounds):
        lo = bisect_left(ends_sorted, start)
        # the last phase keeps its final sample
        hi = len(ends_sorted) if index == len(bounds) - 1 else bisect_left(ends_sorted, end)
        chosen = order[lo:hi]
        latencies = sorted(ms[i] for i in chosen)
        failures = sum(1 for i in chosen if not ok[i])
        out.append(PhaseStats(name, start, end, len(chosen), failures,
                              percentile(latencies, 50), percentile(latencies, 99)))  # fmt: skip
    return out


def read_locust_json(path: Path) -> dict[str, Any]:
    """HTTP totals from locust's `--json-file` output (the FAILOVER rows are not requests).

    The JSON is written after the last user stopped; `--csv`'s stats file can miss the last
    requests.
    """
    requests = failures = failover_rows = 0
    for entry in json.loads(path.read_text()):
        if entry["method"] == FAILOVER_TYPE:
            failover_rows += int(entry["num_requests"])
            continue
        requests += int(entry["num_requests"])
        failures += int(entry["num_failures"])
    return {"requests": requests, "failures": failures, "failover_rows": failover_rows}


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def table(results: Sequence[dict[str, Any]]) -> str:
    """One row per mode: totals and checks, then p50/p99 (ms) and req/s per phase.

    `failures` is locust's count of failed HTTP requests (every failed check, and 5xx and
    connection errors); the check columns count replies that failed that check.
    """
    head = ["mode", "requests", "failures", "lost writes", "applied twice", "wrong node",
            "moved off victim", "kill->write p50 ms", "max re-stick s", "re-stuck after s",
            "other moves", "their max re-stick s"]  # fmt: skip
    rows = []
    for r in results:
        rows.append([
            r["mode"], f"{r['requests']:,}", f"{r['failures']:,}", str(r["lost_writes"]),
            str(r["double_writes"]), str(r["wrong_node"]), str(r["sessions_moved"]),
            _ms(r.get("kill_to_write_p50_ms")), _s(r["restick_max_s"]), _s(r["restuck_after_s"]),
            str(r["other_moves"]), _s(r["other_restick_max_s"]),
        ])  # fmt: skip
    lines = _grid(head, rows)
    head2 = ["mode", "phase", "seconds", "requests", "req/s", "failures", "p50 ms", "p99 ms"]
    rows2 = []
    for r in results:
        for p in r["phases"]:
            rps = p["requests"] / p["seconds"] if p["seconds"] > 0 else None
            rows2.append([
                r["mode"], p["name"], f"{p['seconds']:.1f}", f"{p['requests']:,}",
                "-" if rps is None else f"{rps:,.0f}", str(p["failures"]), _ms(p["p50_ms"]),
                _ms(p["p99_ms"]),
            ])  # fmt: skip
    return "\n".join([*lines, "", *_grid(head2, rows2)])


def _grid(head: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(head)]  # fmt: skip

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True)))  # fmt: skip

    return [line(head), line(["-" * w for w in widths]), *(line(r) for r in rows)]


# -- where a failover's time goes -------------------------------------------------------------

_STAMP_RE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) ")
_TAKEOVER_RE = re.compile(r"session takeover id=([^. ]+)\.\S* from=(\S+) to=(\S+)")
_LOOKUP_RE = re.compile(r"session (?:lookup found|refresh) ids=\d+ took_ms=([\d.]+)")


def log_time(line: str) -> float | None:
    """The wall time of a `2026-12-06 16:20:56,892 ...` log line (local time), or None."""
    m = _STAMP_RE.match(line)
    if m is None:
        return None
    return time.mktime(time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")) + int(m.group(2)) / 1000


def worker_events(lines: Sequence[str]) -> tuple[dict[str, float], list[tuple[float, float]]]:
    """From worker logs: each takeover's time by the session's random part, and each found
    lookup or takeover refresh (asking the members for the session) as (time, ms)."""
    takeovers: dict[str, float] = {}
    lookups: list[tuple[float, float]] = []
    for line in lines:
        t = log_time(line)
        if t is None:
            continue
        if (m := _TAKEOVER_RE.search(line)) is not None:
            takeovers.setdefault(m.group(1), t)
        elif (m := _LOOKUP_RE.search(line)) is not None:
            lookups.append((t, float(m.group(1))))
    return takeovers, lookups


@dataclass(frozen=True)
class Failover:
    """One session moved off the victim, in ms relative to the kill (log times: 1 ms steps)."""

    session: str
    sent_ms: float  # the request that moved it started (negative: in flight at the kill)
    takeover_ms: float | None  # the new node renamed the session (its log line)
    write_ms: float  # the reply with the new cookie arrived: the session's next write

    @property
    def balancer_ms(self) -> float | None:
        """From the later of kill and request start to the takeover: failed tries on the dead
        member, pauses, the connect to the new node, the new node's queue and any lookup."""
        if self.takeover_ms is None:
            return None
        return self.takeover_ms - max(self.sent_ms, 0.0)

    @property
    def request_ms(self) -> float:
        """From the later of kill and request start to the reply: what the failover cost this
        request (kill->write also holds the time the client had not sent anything yet)."""
        return self.write_ms - max(self.sent_ms, 0.0)

    @property
    def new_node_ms(self) -> float | None:
        """From the takeover to the reply: the handler, the sync replication ack, the relay."""
        return None if self.takeover_ms is None else self.write_ms - self.takeover_ms


def failovers(moves: Sequence[dict[str, Any]], kill: float,
              takeovers: dict[str, float]) -> list[Failover]:  # fmt: skip
    """The breakdown of each move off the victim (moves as split_moves counts them)."""
    out = []
    for m in moves:
        sid = str(m.get("session") or "").split(".", 1)[0]
        taken = takeovers.get(sid)
        out.append(Failover(
            sid, (m.get("started", m["t"]) - kill) * 1000,
            None if taken is None else (taken - kill) * 1000, (m["t"] - kill) * 1000,
        ))  # fmt: skip
    return sorted(out, key=lambda f: f.write_ms)


def breakdown(items: Sequence[Failover], lookups: Sequence[float], refused: dict[str, int]) -> str:
    """Per moved session, then medians; `lookups`: ms of found lookups after the kill;
    `refused`: the survivors' 503s by reason (requests_refused_* counters)."""
    if not items:
        return "failover breakdown: no session moved off the victim"

    def cell(v: float | None) -> str:
        return "-" if v is None else f"{v:.0f}"

    rows = [[f.session[:8], cell(f.sent_ms), cell(f.balancer_ms), cell(f.new_node_ms),
             cell(f.request_ms), cell(f.write_ms)] for f in items]  # fmt: skip

    def median(vals: list[float | None]) -> str:
        got = sorted(v for v in vals if v is not None)
        return "-" if not got else cell(percentile(got, 50))

    rows.append(["median", median([f.sent_ms for f in items]),
                 median([f.balancer_ms for f in items]), median([f.new_node_ms for f in items]),
                 median([f.request_ms for f in items]),
                 median([f.write_ms for f in items])])  # fmt: skip
    head = ["session", "sent ms", "to takeover ms", "takeover->reply ms", "request ms",
            "kill->write ms"]  # fmt: skip
    lines = [
        "failover breakdown (ms after the kill; 'sent' < 0: in flight at the kill; 'to "
        "takeover': failed tries, pauses, the new node's queue and lookup; 'request': from the "
        "later of kill and send to the reply; log times in 1 ms steps):",
        *_grid(head, rows),
        f"lookups and takeover refreshes after the kill: {len(lookups)}"
        + (f", max {max(lookups):.1f} ms" if lookups else ""),
        f"503s the workers answered (by reason, whole run): {refused or 'none'}",
    ]
    return "\n".join(lines)
