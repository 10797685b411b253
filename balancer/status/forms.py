"""HTML forms of the status page: the edit forms (cmd=edit) and the small action forms.

Every form that changes something posts (never a GET link) to the page's own path, with the
process's CSRF token in a hidden ``csrf`` field and mod_jk's parameter names, so the same
request works from a script given the bearer token instead. Nothing needs JavaScript.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from balancer.config.model import MAX_LBFACTOR
from balancer.status.escape import h
from balancer.status.model import Row, WorkerView

# (param, label) of the member attributes the "edit one attribute of all members" form offers
MEMBER_ATTRIBUTES = (
    ("vwa", "Activation"),
    ("vwf", "LB Factor"),
    ("vwn", "Route"),
    ("vwr", "Redirect Route"),
    ("vwc", "Cluster Domain"),
    ("vwd", "Distance"),
    ("var", "Retries"),
    ("vari", "Retry Interval (ms)"),
    ("varo", "Recovery Options"),
    ("vart", "Reply Timeout (ms)"),
    ("vabl", "Busy Limit"),
)
_ROW_KEY = {
    "vwa": "activation",
    "vwf": "lbfactor",
    "vwn": "route",
    "vwr": "redirect",
    "vwc": "domain",
    "vwd": "distance",
    "var": "retries",
    "vari": "retry_interval",
    "varo": "recovery_options",
    "vart": "reply_timeout",
    "vabl": "busy_limit",
}
_MINIMUM = {
    "vwf": 1,
    "vwd": 0,
    "var": 1,
    "vari": 0,
    "varo": 0,
    "vart": 0,
    "vabl": 0,
    "vlr": 1,
    "vlri": 0,
    "vlt": 1,
    "vlee": 0,
    "vlx": 0,
}
_NAMES = {"vwn", "vwr", "vwc"}
_ACTIVATIONS = (("a", "ACT", "Active"), ("d", "DIS", "Disabled"), ("s", "STP", "Stopped"))
_METHODS = ("Request", "Traffic", "Busyness", "Sessions", "Next")
_LOCKS = ("Optimistic", "Pessimistic")


@dataclass(frozen=True, slots=True)
class Target:
    """Where forms post and what they carry along."""

    path: str
    csrf: str
    origin: str  # "list" or "show": the view to come back to

    def start(self, cmd: str, worker: str, sub: str | None = None, css: str = "") -> str:
        cls = f' class="{css}"' if css else ""
        out = [f'<form method="post" action="{h(self.path)}"{cls}>']
        fields = [
            ("cmd", cmd),
            ("w", worker),
            ("mime", "html"),
            ("from", self.origin),
            ("csrf", self.csrf),
        ]
        if sub is not None:
            fields.insert(2, ("sw", sub))
        out += [hidden(k, v) for k, v in fields]
        return "".join(out)


def hidden(name: str, value: object) -> str:
    return f'<input type="hidden" name="{h(name)}" value="{h(str(value))}">'


def _input(param: str, value: object, label: str) -> str:
    if param in _NAMES:
        widget = (
            f'<input type="text" name="{param}" value="{h(str(value))}" maxlength="63" '
            'pattern="[A-Za-z0-9_.\\-]{0,63}" autocomplete="off">'
        )
    else:
        widget = (
            f'<input type="number" name="{param}" value="{h(str(value))}" '
            f'min="{_MINIMUM.get(param, 0)}" step="1" inputmode="numeric">'
        )
    widget = widget.replace("<input ", f'<input aria-label="{h(label)}" ', 1)
    return f"<tr><th>{h(label)}</th><td>{widget}</td></tr>"


def _radios(param: str, choices: Iterable[tuple[str, str]], current: object) -> str:
    return " ".join(
        f'<label><input type="radio" name="{param}" value="{h(value)}"'
        f"{' checked' if shown == current else ''}> {h(shown)}</label>"
        for value, shown in choices
    )


def _on_off(param: str, current: object) -> str:
    return (
        f'<select name="{param}"><option value="on"{" selected" if current else ""}>On</option>'
        f'<option value="off"{"" if current else " selected"}>Off</option></select>'
    )


def lb_form(t: Target, view: WorkerView) -> str:
    r = view.row
    rows = [
        _input("vlr", r["retries"], "Retries"),
        _input("vlri", r["retry_interval"], "Retry Interval (ms)"),
        _input("vlt", r["recover_time"], "Recover Wait Time (s)"),
        _input("vlee", r["error_escalation_time"], "Error Escalation Time (s)"),
        _input("vlx", r["max_reply_timeouts"], "Max Reply Timeouts"),
        f"<tr><th>Sticky Sessions</th><td>{_on_off('vls', r['sticky_session'])}</td></tr>",
        f"<tr><th>Force Sticky Sessions</th><td>{_on_off('vlf', r['sticky_session_force'])}"
        "</td></tr>",
        f"<tr><th>LB Method</th><td>{_radios('vlm', ((m[0], m) for m in _METHODS), r['method'])}"
        "</td></tr>",
        f"<tr><th>Locking</th><td>{_radios('vll', ((k[0], k) for k in _LOCKS), r['lock'])}"
        "</td></tr>",
    ]
    return (
        f"<h2>Edit load balancer settings for {h(view.name)}</h2>"
        + t.start("update", view.name)
        + '<div class="scroll"><table>'
        + "".join(rows)
        + "</table></div>"
        + '<p><button type="submit">Update Balancer</button></p></form>'
    )


def member_form(t: Target, view: WorkerView, m: Row) -> str:
    rows = [
        "<tr><th>Activation</th><td>"
        + _radios("vwa", ((c, label) for c, _, label in _ACTIVATIONS), _label(m["activation"]))
        + "</td></tr>"
    ]
    rows += [_input(p, m[_ROW_KEY[p]], label) for p, label in MEMBER_ATTRIBUTES[1:]]
    return (
        f"<h2>Edit worker settings for {h(m['name'])} of {h(view.name)}</h2>"
        + t.start("update", view.name, str(m["name"]))
        + '<div class="scroll"><table>'
        + "".join(rows)
        + "</table></div>"
        + '<p><button type="submit">Update Worker</button></p></form>'
    )


def single_form(t: Target, view: WorkerView) -> str:
    r = view.row
    rows = [_input(p, r[_ROW_KEY[p]], label) for p, label in MEMBER_ATTRIBUTES[6:]]
    return (
        f"<h2>Edit worker settings for {h(view.name)}</h2>"
        + t.start("update", view.name)
        + '<div class="scroll"><table>'
        + "".join(rows)
        + "</table></div>"
        + '<p><button type="submit">Update Worker</button></p></form>'
    )


def attribute_form(t: Target, view: WorkerView, att: str) -> str | None:
    label = dict(MEMBER_ATTRIBUTES).get(att)
    if label is None:
        return None
    rows = []
    for i, m in enumerate(view.members):
        current = m[_ROW_KEY[att]]
        if att == "vwa":
            widget = _radios(f"val{i}", ((c, lab) for c, _, lab in _ACTIVATIONS), _label(current))
        elif att in _NAMES:
            widget = (
                f'<input type="text" name="val{i}" value="{h(str(current))}" maxlength="63" '
                'pattern="[A-Za-z0-9_.\\-]{0,63}" autocomplete="off">'
            )
        else:
            widget = (
                f'<input type="number" name="val{i}" value="{h(str(current))}" '
                f'min="{_MINIMUM.get(att, 0)}" step="1" inputmode="numeric">'
            )
        rows.append(f"<tr><th>{h(m['name'])}</th><td>{widget}</td></tr>")
    return (
        f"<h2>Edit attribute &#39;{h(label)}&#39; for all members of load balancer "
        f"{h(view.name)}</h2>"
        + t.start("update", view.name)
        + hidden("att", att)
        + '<div class="scroll"><table><tr><th>Balanced Worker</th><th>'
        + h(label)
        + "</th></tr>"
        + "".join(rows)
        + "</table></div>"
        + '<p><button type="submit">Update Balancer</button></p></form>'
    )


def attribute_picker(path: str, view: WorkerView, origin: str) -> str:
    """GET form: choose the attribute to edit for all members (mod_jk's "Edit this attribute
    for all members")."""
    options = "".join(f'<option value="{p}">{h(label)}</option>' for p, label in MEMBER_ATTRIBUTES)
    return (
        f'<form method="get" action="{h(path)}" class="bar">'
        + hidden("cmd", "edit")
        + hidden("w", view.name)
        + hidden("from", origin)
        + f'<label>Edit this attribute for all members: <select name="att">{options}</select>'
        '</label> <button type="submit">Go</button></form>'
    )


def activation_buttons(t: Target, view: WorkerView, m: Row, css: str = "inline") -> str:
    """One form, three submit buttons: Activate, Disable, Stop. The member's current activation
    is the greyed-out one, so the buttons also say where the member stands."""
    current = m["activation"]
    buttons = "".join(
        f'<button type="submit" name="vwa" value="{code}" class="b-{code}"'
        f"{' disabled' if shown == current else ''}>{label}</button>"
        for code, shown, label in (
            ("a", "ACT", "Activate"),
            ("d", "DIS", "Disable"),
            ("s", "STP", "Stop"),
        )
    )
    return t.start("update", view.name, str(m["name"]), css) + buttons + "</form>"


def member_actions(t: Target, view: WorkerView, m: Row) -> str:
    """Disable / stop / activate, and set the lbfactor, right from the member table."""
    name = str(m["name"])
    factor = (
        t.start("update", view.name, name, "inline")
        + f'<input type="number" name="vwf" value="{h(str(m["lbfactor"]))}" min="1" '
        f'max="{MAX_LBFACTOR}" step="1" '
        f'inputmode="numeric" class="short" aria-label="lbfactor of {h(name)}">'
        '<button type="submit">Set F</button></form>'
    )
    return activation_buttons(t, view, m) + " " + factor


def small_post(t: Target, cmd: str, view: WorkerView, sub: str | None, text: str) -> str:
    """R (reset) and T (try recovery) as tiny POST forms instead of mod_jk's GET links."""
    title = {"reset": "Reset worker state", "recover": "Try worker recovery"}[cmd]
    return (
        t.start(cmd, view.name, sub, "inline")
        + f'<button type="submit" class="link" title="{title}">{text}</button></form>'
    )


def _label(activation: object) -> str:
    return {code: label for _, code, label in _ACTIVATIONS}.get(str(activation), "")
