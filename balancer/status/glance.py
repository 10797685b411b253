"""Members at a glance: one card per lb member, for narrow screens.

On a phone the full mod_jk member table (some thirty columns) is far below the fold and cut
off at the side, yet draining a member is what an operator came for. The cards come first in
the document and the stylesheet shows them only at phone width (a media query; no script), so
a laptop sees the page as before. Each card holds what a drain needs: name, route, activation
with the drained mark, state in its colour, sessions and live sessions, busy, errors, and the
same Activate / Disable / Stop form (with the CSRF token) as the table row.
"""

from __future__ import annotations

from balancer.status import cells, forms
from balancer.status.escape import h
from balancer.status.htmlctx import Context
from balancer.status.model import Row, WorkerView


def glance(ctx: Context, lbs: tuple[WorkerView, ...]) -> str:
    """The cards of every listed lb, or "" when there is no member to show."""
    groups = [view for view in lbs if view.members]
    if not groups:
        return ""
    out = ['<section class="glance" aria-label="Members at a glance">']
    if not ctx.read_only:
        out.append(
            '<p class="muted small">Changes apply at once and are <b>not persisted</b> '
            "(see the note below).</p>"
        )
    for view in groups:
        out.append(f'<h2>Members of {h(view.name)} at a glance</h2><div class="cards">')
        out += [_card(ctx, view, m) for m in view.members]
        out.append("</div>")
    out.append('<p class="muted small">The full tables follow.</p></section>')
    return "".join(out)


def _card(ctx: Context, view: WorkerView, m: Row) -> str:
    name = str(m["name"])
    route = h(m["route"]) or "-"
    # a long route is cut short to keep the card one screen wide; its title has all of it
    facts = (
        f'<div><dt>Route</dt><dd title="{route}">{route}</dd></div>',
        f"<div><dt>Sess / Live</dt><dd>{h(m['sessions'])} / {h(m['live_sessions'])}</dd></div>",
        f"<div><dt>Busy</dt><dd>{h(m['busy'])}</dd></div>",
        f"<div><dt>Err</dt><dd>{h(m['errors'])}</dd></div>",
    )
    edit = ""
    if not ctx.read_only:
        edit = ctx.link(
            "Edit", "Edit worker", cmd="edit", w=view.name, sw=name, **{"from": ctx.params.cmd}
        )
    top = (
        f'<div class="top"><b class="name">{h(name)}</b>'
        f'<span class="pill a-{cells.activation_kind(m)}">{h(m["activation"])}</span>'
        + ('<span class="pill drained">drained</span>' if m["drained"] is True else "")
        + f'<span class="pill s-{cells.state_kind(m)}">{h(m["state"])}</span>{edit}</div>'
    )
    buttons = "" if ctx.read_only else forms.activation_buttons(ctx.target(), view, m, "trio")
    return (
        f'<div class="card {cells.member_classes(m)}">{top}<dl>{"".join(facts)}</dl>{buttons}</div>'
    )
