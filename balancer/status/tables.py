"""The worker sections of the HTML page: lb configuration and summary, member tables with
their S/E/R/T links and action forms, single-member workers and URI mappings."""

from __future__ import annotations

import time

from balancer.status import forms
from balancer.status.escape import h, text
from balancer.status.htmlctx import Context
from balancer.status.messages import (
    OPT_NO_AJP_CONF,
    OPT_NO_LB_CONF,
    OPT_NO_LB_SUMMARY,
    OPT_NO_MAPS,
    OPT_NO_MEMBERS,
)
from balancer.status.model import Row, WorkerView

_MEMBER_HEAD = (
    "",
    "Name",
    "Act",
    "State",
    "D",
    "F",
    "M",
    "V",
    "Acc",
    "Sess",
    "Err",
    "CE",
    "RE",
    "Wr",
    "Rd",
    "Busy",
    "Max",
    "Con",
    "MaxCon",
    "Route",
    "RR",
    "Cd",
    "Rs",
    "LR",
    "LE",
    "Live",
    "Drained",
    "SH",
    "SM",
    "FO",
    "Rating",
    "Last error",
)


def _worker_links(ctx: Context, view: WorkerView) -> str:
    parts = ["S" if ctx.params.cmd == "show" else ctx.link("S", "Show", cmd="show", w=view.name)]
    if not ctx.read_only:
        parts.append(ctx.link("E", "Edit", cmd="edit", w=view.name, **{"from": ctx.params.cmd}))
        parts.append(forms.small_post(ctx.target(), "reset", view, None, "R"))
    return "[" + "|".join(parts) + "]"


def lb_section(ctx: Context, view: WorkerView) -> str:
    r = view.row
    opt = ctx.opt
    out = [f"<h3>{_worker_links(ctx, view)} Worker Status for {h(view.name)}</h3>"]
    if opt & OPT_NO_LB_CONF:
        out.append(f"<p>{ctx.toggle('Show LB Configuration', OPT_NO_LB_CONF, False)}</p>")
    else:
        out.append(
            _table(
                [
                    "Type",
                    "Sticky Sessions",
                    "Force Sticky Sessions",
                    "Retries",
                    "Retry Interval",
                    "LB Method",
                    "Locking",
                    "Recover Wait Time",
                    "Error Escalation Time",
                    "Max Reply Timeouts",
                    f"[{ctx.toggle('Hide', OPT_NO_LB_CONF, True)}]",
                ],
                [
                    [
                        r["type"],
                        r["sticky_session"],
                        r["sticky_session_force"],
                        r["retries"],
                        r["retry_interval"],
                        r["method"],
                        r["lock"],
                        r["recover_time"],
                        r["error_escalation_time"],
                        r["max_reply_timeouts"],
                        "",
                    ]
                ],
            )
        )
    if opt & OPT_NO_LB_SUMMARY:
        out.append(f"<p>{ctx.toggle('Show LB Summary', OPT_NO_LB_SUMMARY, False)}</p>")
    else:
        out.append(
            _table(
                [
                    "Good",
                    "Degraded",
                    "Bad/Stopped",
                    "Busy",
                    "Max Busy",
                    "Next Maintenance",
                    "Last Reset",
                    "Live Sessions",
                    f"[{ctx.toggle('Hide', OPT_NO_LB_SUMMARY, True)}]",
                ],
                [
                    [
                        r["good"],
                        r["degraded"],
                        r["bad"],
                        r["busy"],
                        r["max_busy"],
                        f"{text(r['time_to_maintenance_min'])}/{text(r['time_to_maintenance_max'])}",
                        r["last_reset_ago"],
                        r["live_sessions"],
                        "",
                    ]
                ],
            )
        )
    if opt & OPT_NO_MEMBERS:
        out.append(f"<p>{ctx.toggle('Show Balancer Members', OPT_NO_MEMBERS, False)}</p>")
    else:
        show_all = ""
        if ctx.params.cmd == "show" and ctx.params.sub:
            show_all = f"[{ctx.link('Show All Members', cmd='show', w=view.name)}] "
        out.append(
            f"<h4>Balancer Members {show_all}[{ctx.toggle('Hide', OPT_NO_MEMBERS, True)}]</h4>"
        )
        if opt & OPT_NO_AJP_CONF:
            out.append(f"<p>{ctx.toggle('Show AJP Configuration', OPT_NO_AJP_CONF, False)}</p>")
        else:
            out.append(_endpoint_table(ctx, view.members, with_name=True))
        out.append(_member_table(ctx, view))
        if not ctx.read_only:
            out.append(forms.attribute_picker(ctx.path, view, ctx.params.cmd))
    out.append(_maps(ctx, view))
    return "".join(out)


def single_section(ctx: Context, view: WorkerView) -> str:
    r = view.row
    out = [f"<h3>{_worker_links(ctx, view)} Worker Status for {h(view.name)}</h3>"]
    if ctx.opt & OPT_NO_AJP_CONF:
        out.append(f"<p>{ctx.toggle('Show AJP Configuration', OPT_NO_AJP_CONF, False)}</p>")
    else:
        out.append(_endpoint_table(ctx, (r,), with_name=False))
    t_link = ""
    if not ctx.read_only and r["state"] == "ERR":
        t_link = forms.small_post(ctx.target(), "recover", view, None, "Try recovery")
    out.append(
        _table(
            [
                "State",
                "Acc",
                "Err",
                "CE",
                "RE",
                "Wr",
                "Rd",
                "Busy",
                "Max",
                "Con",
                "MaxCon",
                "LR",
                "LE",
                "Live",
                "Last error",
            ],
            [
                [
                    _state(r),
                    _rate(r["used"], r),
                    r["errors"],
                    r["client_errors"],
                    r["reply_timeouts"],
                    _bytes(r["transferred"], r),
                    _bytes(r["read"], r),
                    r["busy"],
                    r["max_busy"],
                    r["connected"],
                    r["max_connected"],
                    r["last_reset_ago"],
                    _error_time(r),
                    r["live_sessions"],
                    r["last_error"],
                ]
            ],
        )
        + t_link
    )
    out.append(_maps(ctx, view))
    return "".join(out)


def _endpoint_table(ctx: Context, rows: tuple[Row, ...], *, with_name: bool) -> str:
    heads = [
        "Type",
        "Hostname",
        "Address:Port",
        "Connection Pool Timeout",
        "Connect Timeout",
        "Prepost Timeout",
        "Reply Timeout",
        "Retries",
        "Retry Interval",
        "Recovery Options",
        "Busy Limit",
        "Max Packet Size",
        f"[{ctx.toggle('Hide', OPT_NO_AJP_CONF, True)}]",
    ]
    body = [
        [
            r["type"],
            r["host"],
            r["address"],
            r["connection_pool_timeout"],
            r["connect_timeout"],
            r["prepost_timeout"],
            r["reply_timeout"],
            r["retries"],
            r["retry_interval"],
            r["recovery_options"],
            r["busy_limit"],
            r["max_packet_size"],
            "",
        ]
        for r in rows
    ]
    if with_name:
        heads.insert(0, "Name")
        for row, r in zip(body, rows, strict=True):
            row.insert(0, r["name"])
    return _table(heads, body)


def _member_table(ctx: Context, view: WorkerView) -> str:
    t = ctx.target()
    heads = list(_MEMBER_HEAD) + ([] if ctx.read_only else ["Actions"])
    out = ['<div class="scroll"><table><tr>', *(f"<th>{h(c)}</th>" for c in heads), "</tr>"]
    for m in view.members:
        name = str(m["name"])
        links = [ctx.link("S", "Show", cmd="show", w=view.name, sw=name)]
        if not ctx.read_only:
            links.append(
                ctx.link("E", "Edit", cmd="edit", w=view.name, sw=name, **{"from": ctx.params.cmd})
            )
            links.append(forms.small_post(t, "reset", view, name, "R"))
            if m["state"] == "ERR":
                links.append(forms.small_post(t, "recover", view, name, "T"))
        cells = [
            "[" + "|".join(links) + "]",
            h(name),
            h(m["activation"]),
            _state(m),
            *(_num(m[k]) for k in ("distance", "lbfactor", "lbmult", "lbvalue")),
            _rate(m["elected"], m),
            *(_num(m[k]) for k in ("sessions", "errors", "client_errors", "reply_timeouts")),
            _bytes(m["transferred"], m),
            _bytes(m["read"], m),
            *(_num(m[k]) for k in ("busy", "max_busy", "connected", "max_connected")),
            h(m["route"]),
            h(m["redirect"]),
            h(m["domain"]),
            f"{m['time_to_recover_min']}/{m['time_to_recover_max']}",
            _num(m["last_reset_ago"]),
            _error_time(m),
            _num(m["live_sessions"]),
            {True: "<b>drained</b>", False: "", None: "-"}[m["drained"]],  # type: ignore[index]
            _num(m["sticky_hits"]),
            _num(m["sticky_misses"]),
            _num(m["failovers"]),
            f'<span class="r-{h(m["rating"])}">{h(m["rating"])}</span>',
            h(m["last_error"]),
        ]
        tds = "".join(f"<td>{c}</td>" for c in cells)
        if not ctx.read_only:
            tds += f'<td class="act">{forms.member_actions(t, view, m)}</td>'
        out.append(f"<tr>{tds}</tr>")
    out.append("</table></div>")
    return "".join(out)


def _maps(ctx: Context, view: WorkerView) -> str:
    if ctx.opt & OPT_NO_MAPS:
        return f"<p>{ctx.toggle('Show URI Mappings', OPT_NO_MAPS, False)}</p>"
    if not view.maps:
        return f'<p class="muted">No URI mappings defined for {h(view.name)}.</p>'
    keys = (
        "uri",
        "type",
        "source",
        "reply_timeout",
        "fail_on_status",
        "active",
        "disabled",
        "stopped",
        "use_server_errors",
    )
    return (
        f"<h4>URI Mappings for {h(view.name)} ({len(view.maps)} maps) "
        f"[{ctx.toggle('Hide', OPT_NO_MAPS, True)}]</h4>"
        + _table(
            [
                "URI",
                "Match Type",
                "Source",
                "Reply Timeout",
                "Fail on Status",
                "Active",
                "Disabled",
                "Stopped",
                "Use Server Errors",
            ],
            [[m[k] for k in keys] for m in view.maps],
        )
    )


def _table(heads: list[str], rows: list[list[object]]) -> str:
    head = "".join(f"<th>{c if c.startswith('[') else h(c)}</th>" for c in heads)
    body = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f'<div class="scroll"><table><tr>{head}</tr>{body}</table></div>'


def _cell(value: object) -> str:
    if isinstance(value, _Html):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return h(value)  # type: ignore[arg-type]


class _Html(str):
    """Markup built here from escaped parts: a table cell writes it as is."""


def _num(value: object) -> str:
    return h(value)  # type: ignore[arg-type]


def _state(r: Row) -> _Html:
    state = str(r.get("state"))
    cls = (
        "s-ok"
        if state.startswith("OK") and state != "OK/BUSY"
        else ("s-err" if state in ("ERR", "ERR/PRB") else "s-warn")
    )
    return _Html(f'<span class="{cls}">{h(state)}</span>')


def _per_second(value: int, r: Row) -> float | None:
    ago = r.get("last_reset_ago")
    return value / ago if isinstance(ago, int) and ago > 0 else None


def _rate(value: object, r: Row) -> _Html:
    rate = _per_second(value, r) if isinstance(value, int) else None
    return _Html(f"{h(value)} ({'-' if rate is None else int(rate)}/sec)")  # type: ignore[arg-type]


def _bytes(value: object, r: Row) -> _Html:
    if not isinstance(value, int):
        return _Html(h(value))  # type: ignore[arg-type]
    rate = _per_second(value, r)
    return _Html(f"{_size(value)} ({'-' if rate is None else _size(int(rate))}/sec)")


def _size(n: int) -> str:
    for unit in ("", "K", "M", "G", "T"):
        if n < 1024 or unit == "T":
            return f"{n}" if not unit else f"{n:.1f}{unit}"
        n = n / 1024  # type: ignore[assignment]
    return str(n)


def _error_time(r: Row) -> str:
    at = r.get("error_time_unix_seconds")
    if not isinstance(at, int):
        return ""
    return h(time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at)))
