"""The xml format (reference modjk.md §5.2): mod_jk's elements and attribute names.

``<jk:status>`` holds ``server``, ``time``, ``software``, then ``balancers`` (count) with a
``balancer`` per lb holding its ``member`` and ``map`` elements, ``ajp_workers`` (count) with
``ajp`` and ``map`` elements, and last ``result``. The element prefix (``ns``), the root's
namespace declaration (``xmlns``) and the ``doctype`` come from the config; ``-`` means none.
They are markup the operator wrote, printed as given; every value is attribute-escaped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from balancer.config.model import StatusConfig
from balancer.status.escape import xml_attr, xml_name
from balancer.status.model import Document, Field, Snapshot, WorkerView

_PREFIX = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*:")


def _ns(config: StatusConfig) -> str:
    ns = config.ns
    if ns in ("", "-"):
        return ""
    return ns if _PREFIX.fullmatch(ns) else "jk:"


class _Xml:
    def __init__(self, ns: str) -> None:
        self.ns = ns
        self.out: list[str] = []

    def element(self, depth: int, name: str, fields: Iterable[Field], close: bool = True) -> None:
        pad = "  " * depth
        attrs = "".join(
            f'\n{pad}  {key}="{xml_attr(f.value)}"'
            for f in fields
            if (key := xml_name(f.key)) is not None
        )
        self.out.append(f"{pad}<{self.ns}{name}{attrs}{'/' if close else ''}>\n")

    def end(self, depth: int, name: str) -> None:
        self.out.append(f"{'  ' * depth}</{self.ns}{name}>\n")


def _worker(x: _Xml, depth: int, view: WorkerView) -> None:
    if view.kind == "lb":
        x.element(depth, "balancer", view.row, close=False)
        for m in view.members:
            x.element(depth + 1, "member", m)
        for m in view.maps:
            x.element(depth + 1, "map", m)
        x.end(depth, "balancer")
    else:
        x.element(depth, "ajp", view.row)
        for m in view.maps:
            x.element(depth, "map", m)


def _snapshot(x: _Xml, snap: Snapshot) -> None:
    for count, views, wrapper in (
        (snap.lb_count, snap.lbs, "balancers"),
        (snap.ajp_count, snap.ajps, "ajp_workers"),
    ):
        if count is not None:
            x.element(1, wrapper, [Field("count", count)], close=False)
        for view in views:
            _worker(x, 2 if count is not None else 1, view)
        if count is not None:
            x.end(1, wrapper)


def render_xml(doc: Document, config: StatusConfig) -> bytes:
    x = _Xml(_ns(config))
    x.out.append('<?xml version="1.0" encoding="UTF-8" ?>\n')
    if config.doctype and config.doctype != "-":
        x.out.append(config.doctype + "\n")
    xmlns = "" if config.xmlns in ("", "-") else " " + config.xmlns
    x.out.append(f"<{x.ns}status{xmlns}>\n")
    hd = doc.head
    if hd is not None:
        x.element(
            1,
            "server",
            [
                Field("name", hd.server_name),
                Field("port", hd.server_port),
                Field("started_at", hd.started_at, pyjk=True),
                Field("uptime", hd.uptime, pyjk=True),
            ],
        )
        x.element(
            1, "time", [Field("datetime", hd.datetime), Field("tz", hd.tz), Field("unix", hd.unix)]
        )
        x.element(
            1,
            "software",
            [Field("web_server", hd.web_server), Field("jk_version", hd.jk_version)],
        )
    if doc.snapshot is not None:
        _snapshot(x, doc.snapshot)
    if doc.dump is not None:
        x.element(1, "configuration", [Field(k, v) for k, v in doc.dump])
    r = doc.result
    x.element(1, "result", [Field("type", r.type), Field("message", r.message)])
    x.end(0, "status")
    return "".join(x.out).encode("utf-8")
