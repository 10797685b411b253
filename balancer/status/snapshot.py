"""A snapshot of the engines as plain rows (``balancer.status.model``): every format renders
from the same snapshot, so they always agree.

Field names and order are mod_jk's (reference modjk.md §5.2), pyjk's own fields follow, marked
``pyjk``. Single-member workers come wrapped as one-member engines under their own name and are
shown as mod_jk shows ajp workers. ``now`` is monotonic, ``wall`` the Unix time of the same
instant; engine timestamps are monotonic and shown as wall time by their distance to ``now``.
Date texts are UTC.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping

from balancer.config.model import Activation, MemberConfig
from balancer.lb.engine import LbEngine
from balancer.lb.member import Member
from balancer.lb.rating import rate
from balancer.mounts import MountRule, RuleSource, UriMap
from balancer.status.model import (
    TEXT_TIME,
    Field,
    Head,
    Row,
    Selection,
    Snapshot,
    Sources,
    WorkerView,
)


def head(src: Sources, wall: float) -> Head:
    tm = time.gmtime(wall)
    return Head(
        server_name=src.server.host,
        server_port=src.server.port,
        datetime=time.strftime(TEXT_TIME, tm),
        tz="UTC",
        unix=int(wall),
        web_server=src.server.version,
        jk_version=src.server.version,
        started_at=int(src.started),
        uptime=max(0, int(wall - src.started)),
    )


def snapshot(src: Sources, sel: Selection, now: float, wall: float) -> Snapshot:
    live = _live_sessions(src)
    lbs: list[WorkerView] = []
    ajps: list[WorkerView] = []
    listing = sel.worker is None
    kinds = [src.is_lb(name) for name, _ in src.ordered()]
    lb_count = kinds.count(True) if listing and not sel.hide_lbs else 0
    ajp_count = kinds.count(False) if listing and not sel.hide_ajp else 0
    for name, engine in src.ordered():
        if sel.worker is not None and name != sel.worker:
            continue
        maps = () if sel.hide_maps else _maps(src.uri_map, name)
        if src.is_lb(name):
            if sel.hide_lbs and sel.worker is None:
                continue
            members = (
                ()
                if sel.hide_members
                else tuple(
                    _member_row(src, engine, m, live, now, wall)
                    for m in engine.members
                    if sel.member is None or m.name == sel.member
                )
            )
            row = _lb_row(src, engine, live, now, wall)
            lbs.append(WorkerView(name, "lb", row, members, maps, engine))
        else:
            if sel.hide_ajp and sel.worker is None:
                continue
            row = _single_row(src, name, engine, live, now, wall)
            ajps.append(WorkerView(name, "ajp", row, (), maps, engine))
    tls = src.tls_view() if src.tls_view is not None and listing else None
    procs = tuple(src.processes()) if src.processes is not None and listing else ()
    pair = src.pair() if src.pair is not None and listing else None
    return Snapshot(
        head(src, wall),
        tuple(lbs),
        tuple(ajps),
        lb_count or None,
        ajp_count or None,
        tls,
        procs,
        pair,
    )


def _live_sessions(src: Sources) -> Mapping[str, int] | None:
    if src.cluster_view is None:
        return None
    try:
        return src.cluster_view()
    except Exception:  # a broken view must not take the status page down: show "-"
        return None


def _limit(src: Sources, lb: str) -> int | None:
    """The cluster's max_active_sessions behind ``lb`` (None: not reported)."""
    if src.cluster_limits is None:
        return None
    try:
        return src.cluster_limits().get(lb)
    except Exception:  # as _live_sessions: the page must not fail on a broken view
        return None


def _count_maps(uri_map: UriMap | None, name: str) -> int:
    if uri_map is None:
        return 0
    return len(uri_map.rules_for(name))


def _lb_row(
    src: Sources, engine: LbEngine, live: Mapping[str, int] | None, now: float, wall: float
) -> Row:
    s = engine.settings
    ratings = [rate(m, src.status.good, src.status.bad) for m in engine.members]
    to_maintain = engine.seconds_to_maintenance(now)
    tm_min, tm_max = _window(to_maintain, src.maintain_tick)
    sessions = [live.get(m.route) for m in engine.members] if live is not None else []
    known = [n for n in sessions if n is not None]
    return Row(
        [
            Field("name", engine.name),
            Field("type", "lb"),
            Field("sticky_session", s.sticky_session),
            Field("sticky_session_force", s.sticky_session_force),
            Field("retries", s.retries),
            Field("recover_time", s.recover_time),
            Field("error_escalation_time", s.error_escalation_time),
            Field("max_reply_timeouts", s.max_reply_timeouts),
            Field("method", s.method.value),
            Field("lock", s.lock.value),
            Field("member_count", len(engine.members)),
            Field("good", ratings.count("good")),
            Field("degraded", ratings.count("degraded")),
            Field("bad", ratings.count("bad")),
            Field("busy", engine.busy),
            Field("max_busy", engine.max_busy),
            Field("map_count", _count_maps(src.uri_map, engine.name)),
            Field("time_to_maintenance_min", tm_min),
            Field("time_to_maintenance_max", tm_max),
            Field("last_reset_at", _wall_of(engine.last_reset, now, wall)),
            Field("last_reset_ago", _ago(engine.last_reset, now)),
            Field("retry_interval", s.retry_interval, pyjk=True),
            Field("live_sessions", sum(known) if known else None, pyjk=True),
            Field("sessions_limit", _limit(src, engine.name), pyjk=True),
        ]
    )


def _endpoint_fields(m: Member) -> list[Field]:
    """The backend endpoint's settings (mod_jk's ajp part), runtime values where editable."""
    c: MemberConfig = m.config
    host = f"[{c.host}]" if ":" in c.host else c.host
    return [
        Field("type", c.type),
        Field("host", c.host),
        Field("port", c.port),
        Field("address", f"{host}:{c.port}"),
        Field("source", c.source),
        Field("connection_pool_timeout", c.connection_pool_timeout),
        Field("ping_timeout", c.ping_timeout),
        Field("connect_timeout", c.connect_timeout),
        Field("prepost_timeout", c.prepost_timeout),
        Field("reply_timeout", m.reply_timeout),
        Field("retries", m.retries),
        Field("connection_ping_interval", c.connection_ping_interval),
        Field("recovery_options", m.recovery_options),
        Field("busy_limit", m.busy_limit),
        Field("max_packet_size", c.max_packet_size),
    ]


def _traffic_fields(src: Sources, m: Member) -> list[Field]:
    stats = src.pool_stats(m.config) if src.pool_stats is not None else None
    connected, max_connected = stats if stats is not None else (None, None)
    return [
        Field("client_errors", m.client_errors),
        Field("reply_timeouts", m.reply_timeouts),
        Field("transferred", m.bytes_transferred),
        Field("read", m.bytes_read),
        Field("busy", m.busy),
        Field("max_busy", m.max_busy),
        Field("connected", connected),
        Field("max_connected", max_connected),
    ]


def _reset_and_error_fields(m: Member, now: float, wall: float) -> list[Field]:
    fields = [
        Field("last_reset_at", _wall_of(m.last_reset, now, wall)),
        Field("last_reset_ago", _ago(m.last_reset, now)),
    ]
    if m.last_error_time is not None:
        at = _wall_of(m.last_error_time, now, wall)
        fields += [
            Field("error_time_datetime", time.strftime(TEXT_TIME, time.gmtime(at))),
            Field("error_time_tz", "UTC"),
            Field("error_time_unix_seconds", at),
            Field("error_time_ago", _ago(m.last_error_time, now)),
        ]
    return fields


def _member_row(
    src: Sources,
    engine: LbEngine,
    m: Member,
    live: Mapping[str, int] | None,
    now: float,
    wall: float,
) -> Row:
    rs_min, rs_max = _window(engine.seconds_to_recover(m.name, now), src.maintain_tick, zero=True)
    sessions = live.get(m.route) if live is not None else None
    return Row(
        [
            Field("name", m.name),
            *_endpoint_fields(m),
            Field("activation", m.activation.value),
            Field("lbfactor", m.lbfactor),
            Field("route", m.route, quoted=True),
            Field("redirect", m.redirect, quoted=True),
            Field("domain", m.domain, quoted=True),
            Field("distance", m.distance),
            Field("state", m.state.value),
            Field("lbmult", m.lb_mult),
            Field("lbvalue", m.lb_value),
            Field("elected", m.elected),
            Field("sessions", m.sessions),
            Field("errors", m.errors),
            *_traffic_fields(src, m),
            Field("time_to_recover_min", rs_min),
            Field("time_to_recover_max", rs_max),
            *_reset_and_error_fields(m, now, wall),
            Field("rating", rate(m, src.status.good, src.status.bad), pyjk=True),
            Field("retry_interval", m.retry_interval, pyjk=True),
            Field("live_sessions", sessions, pyjk=True),
            Field("drained", _drained(m, sessions), pyjk=True),
            Field("sticky_hits", m.sticky_hits, pyjk=True),
            Field("sticky_misses", m.sticky_misses, pyjk=True),
            Field("failovers", m.failovers, pyjk=True),
            Field("last_error", m.last_error_reason, quoted=True, pyjk=True),
            # static (workers.properties) or cluster (joined by heartbeat: balancer.dynamic)
            Field("origin", m.config.origin, pyjk=True),
            Field("joined_at", int(m.config.joined_at) or None, pyjk=True),
        ]
    )


def _single_row(
    src: Sources,
    name: str,
    engine: LbEngine,
    live: Mapping[str, int] | None,
    now: float,
    wall: float,
) -> Row:
    m = engine.members[0]
    return Row(
        [
            Field("name", name),
            *_endpoint_fields(m),
            Field("used", m.elected),
            Field("errors", m.errors),
            *_traffic_fields(src, m),
            Field("map_count", _count_maps(src.uri_map, name)),
            *_reset_and_error_fields(m, now, wall),
            Field("state", m.state.value, pyjk=True),
            Field("retry_interval", m.retry_interval, pyjk=True),
            Field("live_sessions", live.get(m.route) if live is not None else None, pyjk=True),
            Field("last_error", m.last_error_reason, quoted=True, pyjk=True),
        ]
    )


def _maps(uri_map: UriMap | None, name: str) -> tuple[Row, ...]:
    if uri_map is None:
        return ()
    return tuple(_map_row(i, r) for i, r in enumerate(uri_map.rules_for(name), start=1))


def map_type(rule: MountRule) -> str:
    """mod_jk's match type text: "Disabled "/"Unmount " prefixes, then Exact or Wildchar."""
    text = "" if rule.enabled else "Disabled "
    text += "Unmount " if rule.exclusion else ""
    return text + ("Wildchar" if rule.wildcard else "Exact")


def _map_row(index: int, rule: MountRule) -> Row:
    ext = rule.extensions
    by_activation: dict[Activation, list[str]] = {a: [] for a in Activation}
    for member, activation in ext.activation.items():
        by_activation[activation].append(member)
    source = "uriworkermap" if rule.source is RuleSource.URIWORKERMAP else "worker definition"
    return Row(
        [
            Field("id", index),
            Field("uri", rule.pattern, quoted=True),
            Field("type", map_type(rule), quoted=True),
            Field("source", source, quoted=True),
            Field("reply_timeout", -1 if ext.reply_timeout is None else ext.reply_timeout, True),
            Field("fail_on_status", ",".join(map(str, ext.fail_on_status or ())), True),
            Field("active", ",".join(by_activation[Activation.ACTIVE]), True),
            Field("disabled", ",".join(by_activation[Activation.DISABLED]), True),
            Field("stopped", ",".join(by_activation[Activation.STOPPED]), True),
            Field("use_server_errors", ext.use_server_errors or 0, True),
        ]
    )


def _drained(m: Member, sessions: int | None) -> bool | None:
    """A Disabled member nobody's session needs any more: safe to stop."""
    if m.activation is not Activation.DISABLED:
        return False
    return None if sessions is None else sessions == 0


def _window(
    seconds: float | None, tick: float, *, zero: bool = False
) -> tuple[int | None, int | None]:
    """(min, max) whole seconds until something the maintenance timer does: the timer may
    run up to one tick late. None (maintenance off, nothing scheduled) shows as unknown, or
    as 0/0 for recovery, as mod_jk shows a member that is not in error."""
    if seconds is None:
        return (0, 0) if zero else (None, None)
    return int(seconds), math.ceil(seconds + tick)


def _wall_of(mono: float, now: float, wall: float) -> int:
    return int(wall - (now - mono))


def _ago(mono: float, now: float) -> int:
    return max(0, int(now - mono))
