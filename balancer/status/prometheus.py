"""The Prometheus text exposition of the same snapshot the other formats render.

A custom collector over the snapshot's rows is registered on a private ``CollectorRegistry``
per answer and written with ``prometheus_client.generate_latest``; the library does the
escaping and the format. Labels: ``worker`` (the lb, or the single-member worker) and
``member``; a single-member worker is its own member. Counters the ``reset`` command clears
restart from 0, which Prometheus reads as a counter reset. States and activations are one-hot
gauges; routes and other settings that change at runtime sit on the ``*_info`` gauges only, so
the counters keep their series when a route is edited. Unknown values (no cluster view, no pool
statistics) are left out rather than written as 0.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from balancer.config.model import Activation
from balancer.lb.member import State
from balancer.status.model import Row, Snapshot
from balancer.status.pair_view import pair_metrics
from balancer.status.processes_view import processes_metrics
from balancer.status.tls_view import tls_metrics
from pyjk.metrics import CONTENT_TYPE, render

__all__ = ["CONTENT_TYPE", "render_prometheus"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_LB = ["worker"]
_MEMBER = ["worker", "member"]

# (metric name, row key, help); counters get "_total" from the library
_MEMBER_COUNTERS = (
    ("pyjk_member_requests", "elected", "lb attempts that chose the member (mod_jk elected/used)"),
    (
        "pyjk_member_requests_without_session",
        "sessions",
        "lb attempts without a session id that chose the member (mod_jk's Sess)",
    ),
    ("pyjk_member_errors", "errors", "failed requests"),
    ("pyjk_member_client_errors", "client_errors", "requests the client broke off"),
    ("pyjk_member_transferred_bytes", "transferred", "bytes sent to the backend"),
    ("pyjk_member_read_bytes", "read", "bytes received from the backend"),
    ("pyjk_member_sticky_hits", "sticky_hits", "lb attempts routed here by the session's route"),
    (
        "pyjk_member_sticky_misses",
        "sticky_misses",
        "requests whose route named the member but went elsewhere",
    ),
    ("pyjk_member_failovers", "failovers", "requests tried here that moved on to another member"),
)
_MEMBER_GAUGES = (
    ("pyjk_member_lbfactor", "lbfactor", "load balancing factor"),
    ("pyjk_member_lb_mult", "lbmult", "load balancing multiplier"),
    ("pyjk_member_lb_value", "lbvalue", "load balancing value"),
    ("pyjk_member_distance", "distance", "distance"),
    ("pyjk_member_reply_timeouts", "reply_timeouts", "reply timeouts (decayed by maintenance)"),
    ("pyjk_member_busy", "busy", "requests in flight"),
    ("pyjk_member_max_busy", "max_busy", "most requests in flight since the last reset"),
    ("pyjk_member_connected", "connected", "open backend connections"),
    ("pyjk_member_max_connected", "max_connected", "most open backend connections"),
    ("pyjk_member_live_sessions", "live_sessions", "live sessions the cluster reports"),
    ("pyjk_member_drained", "drained", "1 = disabled and no live session left"),
    ("pyjk_member_last_reset_timestamp_seconds", "last_reset_at", "time of the last reset"),
    ("pyjk_member_last_error_timestamp_seconds", "error_time_unix_seconds", "last error time"),
    ("pyjk_member_joined_timestamp_seconds", "joined_at", "when a cluster member joined"),
)
_LB_GAUGES = (
    ("pyjk_lb_members", "member_count", "members of the lb"),
    ("pyjk_lb_busy", "busy", "requests in flight through the lb"),
    ("pyjk_lb_max_busy", "max_busy", "most requests in flight since the last reset"),
    ("pyjk_lb_maps", "map_count", "URI map rules naming the lb"),
    ("pyjk_lb_live_sessions", "live_sessions", "live sessions the cluster reports"),
    ("pyjk_lb_sessions_limit", "sessions_limit", "the cluster's max_active_sessions"),
    ("pyjk_lb_last_reset_timestamp_seconds", "last_reset_at", "time of the last reset"),
)


def _label(value: object) -> str:
    """A label value: the library escapes quotes, backslashes and line feeds; other control
    characters (a carriage return could still split a line for a lax reader) become U+FFFD."""
    return _CONTROL.sub("\ufffd", "" if value is None else str(value))


def _number(value: object) -> float | None:
    if value is None or isinstance(value, str):
        return None
    return float(value)  # type: ignore[arg-type]


class _SnapshotCollector(Collector):
    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap

    def collect(self) -> Iterator[Metric]:
        lb_info = GaugeMetricFamily(
            "pyjk_lb_info",
            "lb settings (value 1)",
            labels=["worker", "method", "lock", "sticky_session", "sticky_session_force"],
        )
        rated = GaugeMetricFamily(
            "pyjk_lb_members_rated", "members per rating", labels=["worker", "rating"]
        )
        lb_gauges = {k: GaugeMetricFamily(n, d, labels=_LB) for n, k, d in _LB_GAUGES}
        info = GaugeMetricFamily(
            "pyjk_member_info",
            "member settings (value 1)",
            labels=[
                "worker",
                "member",
                "type",
                "host",
                "port",
                "route",
                "domain",
                "redirect",
                "origin",
            ],
        )
        state = GaugeMetricFamily(
            "pyjk_member_state", "1 for the member's state", labels=[*_MEMBER, "state"]
        )
        activation = GaugeMetricFamily(
            "pyjk_member_activation",
            "1 for the member's activation",
            labels=[*_MEMBER, "activation"],
        )
        counters = {k: CounterMetricFamily(n, d, labels=_MEMBER) for n, k, d in _MEMBER_COUNTERS}
        gauges = {k: GaugeMetricFamily(n, d, labels=_MEMBER) for n, k, d in _MEMBER_GAUGES}

        def member(worker: str, row: Row, used_key: str) -> None:
            labels = [_label(worker), _label(row["name"])]
            settings = ("type", "host", "port", "route", "domain", "redirect", "origin")
            info.add_metric([*labels, *(_label(row.get(k)) for k in settings)], 1.0)
            current = row.get("state")
            for s in State:
                state.add_metric([*labels, s.value], 1.0 if s.value == current else 0.0)
            if "activation" in row:
                for a in Activation:
                    activation.add_metric(
                        [*labels, a.value], 1.0 if a.value == row["activation"] else 0.0
                    )
            for key, family in counters.items():
                value = _number(row.get(used_key if key == "elected" else key))
                if value is not None:
                    family.add_metric(labels, value)
            for key, gauge in gauges.items():
                value = _number(row.get(key))
                if value is not None:
                    gauge.add_metric(labels, value)

        for view in self.snap.lbs:
            r = view.row
            worker = _label(view.name)
            lb_info.add_metric(
                [
                    worker,
                    str(r["method"]),
                    str(r["lock"]),
                    str(r["sticky_session"]).lower(),
                    str(r["sticky_session_force"]).lower(),
                ],
                1.0,
            )
            for rating in ("good", "degraded", "bad"):
                rated.add_metric([worker, rating], float(r[rating]))  # type: ignore[arg-type]
            for key, family in lb_gauges.items():
                value = _number(r.get(key))
                if value is not None:
                    family.add_metric([worker], value)
            for m in view.members:
                member(view.name, m, "elected")
        for view in self.snap.ajps:
            member(view.name, view.row, "used")

        yield lb_info
        yield rated
        yield from lb_gauges.values()
        yield info
        yield state
        yield activation
        yield from counters.values()
        yield from gauges.values()
        yield from tls_metrics(self.snap.tls)
        yield from processes_metrics(self.snap.processes)
        yield from pair_metrics(self.snap.pair)


def render_prometheus(snap: Snapshot, extra: Iterable[Collector] = ()) -> bytes:
    """The snapshot's families, then those of ``extra`` (traffic, process, python)."""
    return render((_SnapshotCollector(snap), *extra))
