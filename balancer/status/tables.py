"""The worker sections of the HTML page: lb configuration and summary, member tables with
their S/E/R/T links and action forms, single-member workers and URI mappings."""

from __future__ import annotations

import time
from collections.abc import Sequence

from balancer.status import cells, forms
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

# mod_jk's member columns (reference modjk.md §5.2), then pyjk's. Two moves, both so that
# what an operator acts on is in view without scrolling sideways: the row's actions (after
# Name, when the page is writable) and pyjk's Drained, next to the activation it qualifies.
_MEMBER_HEAD = (
    "",
    "Name",
    "Act",
    "Drained",
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
    "SH",
    "SM",
    "FO",
    "Rating",
    "Origin",
    "Last error",
)
_NAME_AT = _MEMBER_HEAD.index("Name")


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
                        cells.live_of_limit(r),
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
                    cells.state(r),
                    cells.rate(r["used"], r),
                    r["errors"],
                    r["client_errors"],
                    r["reply_timeouts"],
                    cells.byte_rate(r["transferred"], r),
                    cells.byte_rate(r["read"], r),
                    r["busy"],
                    r["max_busy"],
                    r["connected"],
                    r["max_connected"],
                    r["last_reset_ago"],
                    cells.error_time(r),
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
    heads = [f"<th>{h(c)}</th>" for c in _MEMBER_HEAD]
    heads[_NAME_AT] = '<th class="name">Name</th>'
    if not ctx.read_only:
        heads.insert(_NAME_AT + 1, "<th>Actions</th>")
    out = ['<div class="scroll"><table class="members"><tr>', *heads, "</tr>"]
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
        tds = [
            "<td>[" + "|".join(links) + "]</td>",
            f'<td class="name">{h(name)}</td>',
            f'<td class="activation">{cells.activation(m)}</td>',
            f"<td>{cells.drained(m)}</td>",
            f'<td class="state">{cells.state(m)}</td>',
            *(f"<td>{_cell(c)}</td>" for c in _member_counters(m)),
        ]
        if not ctx.read_only:
            tds.insert(_NAME_AT + 1, f'<td class="actions">{forms.member_actions(t, view, m)}</td>')
        out.append(f'<tr class="{cells.member_classes(m)}">{"".join(tds)}</tr>')
    out.append("</table></div>")
    return "".join(out)


def _member_counters(m: Row) -> list[object]:
    """The member row's cells from D on, in _MEMBER_HEAD's order."""
    return [
        *(m[k] for k in ("distance", "lbfactor", "lbmult", "lbvalue")),
        cells.rate(m["elected"], m),
        *(m[k] for k in ("sessions", "errors", "client_errors", "reply_timeouts")),
        cells.byte_rate(m["transferred"], m),
        cells.byte_rate(m["read"], m),
        *(m[k] for k in ("busy", "max_busy", "connected", "max_connected", "route")),
        m["redirect"],
        m["domain"],
        f"{m['time_to_recover_min']}/{m['time_to_recover_max']}",
        m["last_reset_ago"],
        cells.Html(cells.error_time(m)),
        m["live_sessions"],
        m["sticky_hits"],
        m["sticky_misses"],
        m["failovers"],
        cells.Html(f'<span class="r-{h(m["rating"])}">{h(m["rating"])}</span>'),
        _origin(m),
        m["last_error"],
    ]


def _origin(m: Row) -> str:
    joined = m["joined_at"]
    if m["origin"] != "cluster" or not isinstance(joined, int):
        return str(m["origin"])
    return f"cluster {time.strftime('%H:%M:%S', time.gmtime(joined))} UTC"


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


def _table(heads: list[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{c if c.startswith('[') else h(c)}</th>" for c in heads)
    body = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f'<div class="scroll"><table><tr>{head}</tr>{body}</table></div>'


def _cell(value: object) -> str:
    if isinstance(value, cells.Html):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return h(value)  # type: ignore[arg-type]
