"""The json format (pyjk's own): the same snapshot as the other formats, with typed values.

Shape: ``{"server": {...}, "balancers": [{lb fields..., "members": [...], "maps": [...]}],
"ajp_workers": [{worker fields..., "maps": [...]}], "configuration": {...}, "result": {...}}``;
keys that have nothing to show are left out. Numbers stay numbers, booleans booleans, and an
unknown value (no cluster view, no pool statistics) is ``null``.
"""

from __future__ import annotations

import json
from typing import Any

from balancer.config.model import StatusConfig
from balancer.status.model import Document, Row, WorkerView


def _row(row: Row) -> dict[str, Any]:
    return {f.key: f.value for f in row}


def _worker(view: WorkerView) -> dict[str, Any]:
    out = _row(view.row)
    if view.kind == "lb":
        out["members"] = [_row(m) for m in view.members]
    out["maps"] = [_row(m) for m in view.maps]
    return out


def render_json(doc: Document, config: StatusConfig) -> bytes:
    out: dict[str, Any] = {}
    if doc.head is not None:
        hd = doc.head
        out["server"] = {
            "name": hd.server_name,
            "port": hd.server_port,
            "datetime": hd.datetime,
            "tz": hd.tz,
            "unix": hd.unix,
            "web_server": hd.web_server,
            "jk_version": hd.jk_version,
            "started_at": hd.started_at,
            "uptime": hd.uptime,
        }
    snap = doc.snapshot
    if snap is not None:
        if snap.lbs or snap.lb_count is not None:
            out["balancers"] = [_worker(v) for v in snap.lbs]
        if snap.ajps or snap.ajp_count is not None:
            out["ajp_workers"] = [_worker(v) for v in snap.ajps]
    if doc.dump is not None:
        out["configuration"] = dict(doc.dump)
    out["result"] = {"type": doc.result.type, "message": doc.result.message}
    # ensure_ascii: the body is plain ASCII whatever a value holds
    return (json.dumps(out, indent=1) + "\n").encode("ascii")
