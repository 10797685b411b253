"""The HTML status page: one self-contained document (inline CSS, no scripts, no assets).

Readable on a laptop and a phone: a viewport meta, wide tables in horizontally scrolling
wrappers, each member's actions next to its name, and at phone width the members-at-a-glance
cards first (``balancer.status.glance``; the layout is CSS only, ``balancer.status.style``).
Columns and legend follow mod_jk's page (reference modjk.md §5.2), plus pyjk's live sessions,
drained mark, sticky hits/misses and failovers. State changes are POST forms carrying the CSRF
token (``balancer.status.forms``); after one the worker answers 303 to the view with a one-shot
result, so reloading the page never repeats a change.
"""

from __future__ import annotations

import time

from balancer.status import forms
from balancer.status.commands import Change
from balancer.status.escape import h, text
from balancer.status.glance import glance
from balancer.status.htmlctx import Context, css_source
from balancer.status.messages import (
    OPT_NO_AJP,
    OPT_NO_LB,
    OPT_NO_LEGEND,
    OPT_NO_MEMBERS,
    OPT_READ_ONLY,
)
from balancer.status.model import Document, Head
from balancer.status.pair_view import pair_html
from balancer.status.processes_view import processes_html
from balancer.status.style import STYLE
from balancer.status.tables import lb_section, single_section
from balancer.status.tls_view import tls_html

__all__ = ["Context", "css_source", "describe", "render"]

_LEGEND = (
    ("Name", "Worker name"),
    ("Actions", "Activate, Disable or Stop the member; set its LB factor (pyjk)"),
    ("Act", "Activation: ACT Active, DIS Disabled, STP Stopped"),
    ("Drained", "Disabled and no live session left: safe to stop (pyjk)"),
    (
        "State",
        "OK, OK/IDLE no request since the last maintenance, OK/BUSY all connections "
        "busy, ERR error, ERR/REC recovering, ERR/PRB probing, ERR/FRC forced recovery",
    ),
    ("D", "Distance"),
    ("F", "LB factor"),
    ("M", "LB multiplier"),
    ("V", "LB value"),
    ("Acc", "Requests (lb attempts), with the rate since the last reset"),
    ("Sess", "Requests that started a session"),
    ("Err", "Failed requests"),
    ("CE", "Client errors"),
    ("RE", "Reply timeouts (decayed)"),
    ("Wr", "Bytes sent to the backend"),
    ("Rd", "Bytes read from the backend"),
    ("Busy", "Requests in flight"),
    ("Max", "Most requests in flight"),
    ("Con", "Open backend connections"),
    ("MaxCon", "Most open backend connections"),
    ("Route", "Session route"),
    ("RR", "Redirect route"),
    ("Cd", "Cluster domain"),
    ("Rs", "Recovery scheduled in about min/max seconds"),
    ("LR", "Seconds since the last reset of the counters"),
    ("LE", "Time of the last error"),
    ("Live", "Live sessions the cluster reports (pyjk)"),
    (
        "SH / SM",
        "Sticky hits / misses: requests routed by their session / whose route named "
        "the member but went elsewhere (pyjk)",
    ),
    ("FO", "Failovers: requests tried here that moved on to another member (pyjk)"),
    (
        "Origin",
        "static (workers.properties) or cluster: joined a dynamic lb by its heartbeats, at the "
        "time shown (pyjk)",
    ),
)


def describe(cmd: str, changes: list[Change]) -> str:
    """The result line shown after a change."""
    if not changes:
        return "Action finished (nothing changed)"
    parts = []
    for c in changes:
        where = c.worker if c.member is None else f"{c.worker}/{c.member}"
        parts.append(f"{where} {c.attribute}: {text(c.before)} -> {text(c.after)}")  # type: ignore[arg-type]
    return "Action finished: " + "; ".join(parts)


def render(ctx: Context, doc: Document) -> bytes:
    out = [_top(ctx, doc)]
    if not doc.result.ok:
        out.append(f'<p class="error"><b>Result: ERROR - {h(doc.result.message)}</b></p>')
        out.append(f"<p>{ctx.link('JK Status Manager Start Page')}</p>")
    else:
        out.append(_body(ctx, doc))
    out.append("</body></html>\n")
    return "".join(out).encode("utf-8")


def _top(ctx: Context, doc: Document) -> str:
    refresh = ctx.params.refresh if ctx.params.cmd in ("list", "show") else 0
    meta = f'<meta http-equiv="refresh" content="{refresh}">' if refresh and doc.result.ok else ""
    css = ctx.config.css
    link = f'<link rel="stylesheet" href="{h(css)}">' if css_source(css) else ""
    srv = ctx.sources.server
    title = f"JK Status Manager for {srv.host}:{srv.port}"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"{meta}<title>{h(title)}</title><style>{STYLE}</style>{link}</head><body>"
        f"<h1>{h(title)}{' (read only)' if ctx.read_only else ''}</h1>"
    )


def _body(ctx: Context, doc: Document) -> str:
    cmd = ctx.params.cmd
    out = []
    # The result of a change first, then (at phone width only) the member cards: after a
    # button press the page comes back scrolled to the top, where both are in view.
    if ctx.banner is not None:
        kind = "ok" if ctx.banner.ok else "error"
        out.append(f'<p class="{kind}">Result: {ctx.banner.type} - {h(ctx.banner.message)}</p>')
    if doc.snapshot is not None and cmd in ("list", "show") and not ctx.opt & OPT_NO_MEMBERS:
        out.append(glance(ctx, doc.snapshot.lbs))
    if doc.head is not None:
        out.append(_head(doc.head))
    if doc.snapshot is not None:
        out.append(pair_html(doc.snapshot.pair))
    out.append(_nav(ctx))
    if not ctx.read_only:
        out.append(
            '<p class="notice">Changes made here apply at once to this process and are '
            "<b>not persisted</b>: a restart loses them; a configuration reload keeps them "
            "only for members whose configuration did not change.</p>"
        )
    if cmd == "edit":
        out.append(_edit(ctx, doc))
        return "".join(out)
    if doc.snapshot is not None:
        snap = doc.snapshot
        if ctx.opt & OPT_NO_LB and cmd == "list":
            out.append(f"<p>{ctx.toggle('Show Load Balancing Workers', OPT_NO_LB, False)}</p>")
        elif snap.lb_count is not None:
            out.append(
                f"<h2>Listing Load Balancing Workers ({snap.lb_count}) "
                f"[{ctx.toggle('Hide', OPT_NO_LB, True)}]</h2>"
            )
        out += [lb_section(ctx, v) for v in snap.lbs]
        if ctx.opt & OPT_NO_AJP and cmd == "list":
            out.append(f"<p>{ctx.toggle('Show AJP Workers', OPT_NO_AJP, False)}</p>")
        elif snap.ajp_count is not None:
            out.append(
                f"<h2>Listing AJP Workers ({snap.ajp_count}) "
                f"[{ctx.toggle('Hide', OPT_NO_AJP, True)}]</h2>"
            )
        out += [single_section(ctx, v) for v in snap.ajps]
        out.append(tls_html(snap.tls))
        out.append(processes_html(snap.processes))
        out.append(_legend(ctx))
    if doc.dump is not None:
        out.append(
            "<h2>Configuration Data</h2><p>This dump does not include any changes "
            "applied by the status worker after the start.</p><pre>"
        )
        out += [f"{h(k)}={h(v)}\n" for k, v in doc.dump]
        out.append("</pre>")
    return "".join(out)


def _head(hd: Head) -> str:
    at = time.strftime("%a, %d %b %Y %H:%M:%S UTC", time.gmtime(hd.unix))
    return (
        '<div class="scroll"><table>'
        f"<tr><th>Server Version</th><td>{h(hd.web_server)}</td>"
        f"<th>Server Time</th><td>{h(at)}</td></tr>"
        f"<tr><th>JK Version</th><td>{h(hd.jk_version)}</td>"
        f'<th>Unix Seconds</th><td class="n">{hd.unix}</td></tr>'
        f'<tr><th>Up</th><td class="n">{_duration(hd.uptime)}</td>'
        f'<th>Started</th><td class="n">{hd.started_at}</td></tr>'
        "</table></div>"
    )


def _nav(ctx: Context) -> str:
    p = ctx.params
    cmd = p.cmd
    keep = {k: v for k, v in p.values.items() if k in ("cmd", "w", "sw")}
    items = []
    if cmd in ("list", "show"):
        if p.refresh:
            items.append(ctx.link("Stop auto refresh", **keep))
        else:
            items.append(
                f'<form method="get" action="{h(ctx.path)}" class="inline">'
                + "".join(forms.hidden(k, v) for k, v in keep.items())
                + (forms.hidden("opt", ctx.opt) if ctx.opt else "")
                + '<button type="submit">Start auto refresh</button> every '
                '<input name="re" type="number" min="1" value="10" class="short" '
                'aria-label="seconds"> s</form>'
            )
    if cmd in ("list", "show", "version", "dump"):
        options = "".join(
            f'<option value="{m}">{label}</option>'
            for m, label in (
                ("xml", "XML"),
                ("prop", "Properties"),
                ("txt", "Text"),
                ("json", "JSON"),
                ("prometheus", "Prometheus"),
            )
        )
        items.append(
            f'<form method="get" action="{h(ctx.path)}" class="inline">'
            + "".join(forms.hidden(k, v) for k, v in keep.items())
            + (forms.hidden("opt", ctx.opt) if ctx.opt else "")
            + f'<select name="mime" aria-label="format">{options}</select> '
            '<button type="submit">Change format</button></form>'
        )
    if cmd != "list":
        items.append(ctx.link("Back to worker list", cmd="list"))
    if cmd in ("list", "show") and not ctx.config.read_only:
        label = "Read/Write" if ctx.opt & OPT_READ_ONLY else "Read Only"
        items.append(ctx.toggle(label, OPT_READ_ONLY, not ctx.opt & OPT_READ_ONLY))
    if cmd in ("list", "show", "version"):
        items.append(ctx.link("Dump", cmd="dump"))
    if cmd in ("list", "show") and not ctx.read_only:
        items.append(
            '<span class="muted"><b>S</b>=Show only this worker, <b>E</b>=Edit worker, '
            "<b>R</b>=Reset worker state, <b>T</b>=Try worker recovery</span>"
        )
    return "<nav>" + "".join(f"<span>{i}</span>" for i in items) + "</nav>"


def _legend(ctx: Context) -> str:
    if ctx.opt & OPT_NO_LEGEND:
        return f"<p>{ctx.toggle('Show Legend', OPT_NO_LEGEND, False)}</p>"
    rows = "".join(f"<tr><th>{h(k)}</th><td>{h(v)}</td></tr>" for k, v in _LEGEND)
    return (
        f"<h2>Legend [{ctx.toggle('Hide', OPT_NO_LEGEND, True)}]</h2>"
        f'<div class="scroll"><table>{rows}</table></div>'
    )


def _edit(ctx: Context, doc: Document) -> str:
    p = ctx.params
    views = doc.snapshot.workers if doc.snapshot is not None else ()
    view = next((v for v in views if v.name == p.worker), None)
    if view is None:
        return ""
    t = ctx.target()
    if view.kind != "lb":
        return forms.single_form(t, view)
    if p.sub:
        member = next((m for m in view.members if m["name"] == p.sub), None)
        return "" if member is None else forms.member_form(t, view, member)
    att = p.get("att")
    if att is not None:
        return forms.attribute_form(t, view, att) or (
            '<p class="error">Result: ERROR - Invalid attribute.</p>'
        )
    return forms.lb_form(t, view)


# -- cells --------------------------------------------------------------------------------


def _duration(seconds: int) -> str:
    d, rest = divmod(seconds, 86400)
    hh, rest = divmod(rest, 3600)
    mm, ss = divmod(rest, 60)
    return (f"{d}d " if d else "") + f"{hh:02d}:{mm:02d}:{ss:02d}"
