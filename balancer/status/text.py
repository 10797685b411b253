"""The txt and prop formats (reference modjk.md §5.2, §9.8).

txt: one line per object, ``Kind: key=value ...``; route, redirect and domain are quoted as
mod_jk quotes them (``route="n1" redirect="" domain=""``), and any value that could break the
line is quoted and escaped. prop: ``<prefix>.<worker>.<key>=<value>``, unquoted, looking like
workers.properties (``worker.list=lb``, ``worker.lb.balance_workers=n1`` once per member).

Where pyjk departs from mod_jk 1.2.48: its prop output repeats the lb's ``last_reset_at``/
``last_reset_ago`` after each member under the lb's name (a bug that makes a properties reader
keep the member's values for the lb); pyjk writes them under the member's name only.
"""

from __future__ import annotations

from collections.abc import Iterable

from balancer.config.model import StatusConfig
from balancer.status.escape import prop_key, prop_value, txt
from balancer.status.model import Document, Field, Head, Snapshot, WorkerView
from balancer.status.pair_view import pair_fields
from balancer.status.processes_view import process_fields


def _line(kind: str, fields: Iterable[Field]) -> str:
    parts = [kind + ":"]
    parts += [f"{f.key}={txt(f.value, f.quoted)}" for f in fields]
    return " ".join(parts) + "\n"


def _head_txt(head: Head) -> str:
    return (
        _line(
            "Server",
            [
                Field("name", head.server_name),
                Field("port", head.server_port),
                Field("started_at", head.started_at, pyjk=True),
                Field("uptime", head.uptime, pyjk=True),
            ],
        )
        + _line(
            "Time",
            [Field("datetime", head.datetime), Field("tz", head.tz), Field("unix", head.unix)],
        )
        + _line(
            "Software",
            [
                Field("web_server", head.web_server, quoted=True),
                Field("jk_version", head.jk_version),
            ],
        )
    )


def _worker_txt(view: WorkerView) -> str:
    out = []
    if view.kind == "lb":
        out.append(_line("Balancer Worker", view.row))
        out += [_line("Member", m) for m in view.members]
    else:
        out.append(_line("AJP Worker", view.row))
    out += [_line("Map", m) for m in view.maps]
    return "".join(out)


def _snapshot_txt(snap: Snapshot) -> str:
    out = []
    if snap.lb_count is not None:
        out.append(f"Balancer Workers: count={snap.lb_count}\n")
    out += [_worker_txt(v) for v in snap.lbs]
    if snap.ajp_count is not None:
        out.append(f"AJP Workers: count={snap.ajp_count}\n")
    out += [_worker_txt(v) for v in snap.ajps]
    out += [_line(kind, fields) for kind, fields in process_fields(snap.processes)]
    out += [_line(kind, fields) for kind, fields in pair_fields(snap.pair)]
    return "".join(out)


def render_txt(doc: Document, config: StatusConfig) -> bytes:
    out = []
    if doc.head is not None:
        out.append(_head_txt(doc.head))
    if doc.snapshot is not None:
        out.append(_snapshot_txt(doc.snapshot))
    if doc.dump is not None:
        out.append("Configuration:\n")
        out += [f"{prop_key(k)}={prop_value(v)}\n" for k, v in doc.dump]
    r = doc.result
    out.append(_line("Result", [Field("type", r.type), Field("message", r.message, True)]))
    return "".join(out).encode("utf-8")


class _Prop:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.lines: list[str] = []

    def add(self, key: str, value: object, worker: str | None = None) -> None:
        name = f"{self.prefix}.{key}" if worker is None else f"{self.prefix}.{worker}.{key}"
        self.lines.append(f"{prop_key(name)}={prop_value(value)}\n")  # type: ignore[arg-type]

    def fields(self, worker: str, fields: Iterable[Field]) -> None:
        for f in fields:
            if f.key != "name":
                self.add(f.key, f.value, worker)


def _worker_prop(p: _Prop, view: WorkerView) -> None:
    p.add("list", view.name)
    p.fields(view.name, view.row)
    for m in view.members:
        member = str(m["name"])
        p.add("balance_workers", member, view.name)
        p.fields(member, m)
    for m in view.maps:
        for f in m:
            if f.key != "id":
                p.add(f"map.{m['id']}.{f.key}", f.value, view.name)


def render_prop(doc: Document, config: StatusConfig) -> bytes:
    p = _Prop(config.prefix or "worker")
    if doc.head is not None:
        hd = doc.head
        p.add("server_name", hd.server_name)
        p.add("server_port", hd.server_port)
        p.add("time_datetime", hd.datetime)
        p.add("time_tz", hd.tz)
        p.add("time_unix", hd.unix)
        p.add("web_server", hd.web_server)
        p.add("jk_version", hd.jk_version)
        p.add("started_at", hd.started_at)
        p.add("uptime", hd.uptime)
    snap = doc.snapshot
    if snap is not None:
        if snap.lb_count is not None:
            p.add("lb_count", snap.lb_count)
        for view in snap.lbs:
            _worker_prop(p, view)
        if snap.ajp_count is not None:
            p.add("ajp_count", snap.ajp_count)
        for view in snap.ajps:
            _worker_prop(p, view)
    out = p.lines
    if doc.dump is not None:
        # mod_jk prints the dump as plain key=value lines, without the prefix
        out += [f"{prop_key(k)}={prop_value(v)}\n" for k, v in doc.dump]
    p.add("type", doc.result.type, "result")
    p.add("message", doc.result.message, "result")
    return "".join(out).encode("utf-8")
