"""How one value looks on the HTML page: states and activations with their colour classes,
the drained mark, rates, byte sizes and error times. Shared by the member tables and the
members-at-a-glance cards, so both colour a member the same way."""

from __future__ import annotations

import time

from balancer.status.escape import h
from balancer.status.model import Row


class Html(str):
    """Markup built here from escaped parts: a table cell writes it as is."""


# How a member state (mod_jk §3.7 texts) is coloured: green when it takes requests normally,
# amber while busy or on its way back (recovering, probing, forced), red in plain error.
_STATE_KIND = {
    "OK": "ok",
    "OK/IDLE": "ok",
    "OK/BUSY": "warn",
    "ERR/REC": "warn",
    "ERR/PRB": "warn",
    "ERR/FRC": "warn",
    "ERR": "err",
}


def state_kind(r: Row) -> str:
    """``ok``, ``warn``, ``err``, or ``none`` for a state the page does not know. A text is
    ``s-<kind>``; a member's row or card is ``k-<kind>``."""
    return _STATE_KIND.get(str(r.get("state")), "none")


def activation_kind(r: Row) -> str:
    """``act``, ``dis`` or ``stp`` (anything unknown reads as active: no greying). A text is
    ``a-<kind>``; a member's row or card is ``m-<kind>``."""
    return {"DIS": "dis", "STP": "stp"}.get(str(r.get("activation")), "act")


def member_classes(r: Row) -> str:
    """The classes of a member's row or card: greyed when disabled or stopped, edged in the
    state's colour."""
    return f"m-{activation_kind(r)} k-{state_kind(r)}"


def state(r: Row) -> Html:
    return Html(f'<span class="s-{state_kind(r)}">{h(r.get("state"))}</span>')


def activation(r: Row) -> Html:
    return Html(f'<span class="a-{activation_kind(r)}">{h(r.get("activation"))}</span>')


def drained(r: Row) -> Html:
    """pyjk's drained mark: disabled with no live session left, i.e. safe to stop; ``-`` when
    the cluster does not report live sessions."""
    value = r.get("drained")
    if value is True:
        return Html('<b class="drained">drained</b>')
    return Html("" if value is False else "-")


def live_of_limit(r: Row) -> object:
    """The lb's live sessions against the cluster's max_active_sessions ("812 / 10000"): with
    all-to-all replication every node holds all of them, so at the limit new visitors get 503."""
    live, limit = r.get("live_sessions"), r.get("sessions_limit")
    if limit is None:
        return live
    return f"{'-' if live is None else live} / {limit}"


def per_second(value: int, r: Row) -> float | None:
    ago = r.get("last_reset_ago")
    return value / ago if isinstance(ago, int) and ago > 0 else None


def rate(value: object, r: Row) -> Html:
    per = per_second(value, r) if isinstance(value, int) else None
    return Html(f"{h(value)} ({'-' if per is None else int(per)}/sec)")  # type: ignore[arg-type]


def byte_rate(value: object, r: Row) -> Html:
    if not isinstance(value, int):
        return Html(h(value))  # type: ignore[arg-type]
    per = per_second(value, r)
    return Html(f"{size(value)} ({'-' if per is None else size(int(per))}/sec)")


def size(n: int) -> str:
    for unit in ("", "K", "M", "G", "T"):
        if n < 1024 or unit == "T":
            return f"{n}" if not unit else f"{n:.1f}{unit}"
        n = n / 1024  # type: ignore[assignment]
    return str(n)


def error_time(r: Row) -> str:
    at = r.get("error_time_unix_seconds")
    if not isinstance(at, int):
        return ""
    return h(time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at)))
