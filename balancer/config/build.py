"""From resolved keys to the typed model: per-type directive checks, derived defaults, lb rules.

Pure. Errors pyjk reports where mod_jk is silent (reference §1.5): a member named but never
defined (mod_jk invents an ajp13 member at localhost:8009), an lb member that is an lb or a status
worker, and a redirect that names no route. As mod_jk: an lb needs members, and routes are
unique within an lb.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from balancer.config.directives import (
    AJP13,
    ALL_TYPES,
    LB,
    MEMBER,
    OBSOLETE_TYPES,
    STATUS,
    directive_for,
    suggest,
    types_accepting,
)
from balancer.config.findings import Findings
from balancer.config.model import LbConfig, Location, MemberConfig, StatusConfig
from balancer.config.properties import Entry
from balancer.config.references import Keys
from balancer.config.values import BadValue, parse_value, split_list, worker_name_problems

_STRUCTURAL = frozenset({"type", "reference", "mount"})
_MIN_TOKEN = 16


@dataclass(slots=True)
class Built:
    lbs: dict[str, LbConfig] = field(default_factory=dict)
    members: dict[str, MemberConfig] = field(default_factory=dict)
    statuses: dict[str, StatusConfig] = field(default_factory=dict)
    lb_members: set[str] = field(default_factory=set)
    # (absolute path, the line naming it) of every worker.<lb>.cluster, for the reader to check
    cluster_files: list[tuple[str, Entry]] = field(default_factory=list)


def build_workers(
    resolved: Mapping[str, Keys],
    listed: Sequence[tuple[str, Entry | None]],
    origins: Mapping[str, Entry],
    findings: Findings,
) -> Built:
    """Build every worker in ``listed`` (name, the worker.list entry naming it) and lb members.

    ``origins`` holds each worker's first line, where it is said to be defined."""
    built = Built()
    listed_names = {name for name, _ in listed}
    types: dict[str, str | None] = {}
    for name, at in listed:
        if name not in resolved:
            _report_undefined(name, at, "worker.list", resolved, findings)
            continue
        types[name] = _type_of(name, resolved[name], findings)
    membership: dict[str, list[str]] = {}  # member -> lbs
    lb_items: dict[str, list[tuple[str, Entry]]] = {}
    for name, wtype in list(types.items()):  # lb members are added to types on the way
        if wtype == LB:
            lb_items[name] = _lb_members(name, resolved, types, origins[name], findings)
            for member, _ in lb_items[name]:
                membership.setdefault(member, []).append(name)
    built.lb_members = set(membership)
    for name in lb_items:
        template = _template_of(name, resolved, types, findings)
        if template is not None:
            membership.setdefault(template, [])  # built as a member, in no lb's list
    for name, wtype in types.items():
        if wtype in MEMBER:
            built.members[name] = _member(
                name, wtype, resolved[name], name in membership, origins[name], findings
            )
    for name, wtype in types.items():
        if name not in lb_items and name not in listed_names:
            continue  # an lb or status worker named as a member: reported, not built
        if wtype == LB:
            built.lbs[name] = _lb(name, resolved, lb_items[name], built, origins[name], findings)
        elif wtype == STATUS:
            built.statuses[name] = _status(name, resolved[name], origins[name], findings)
    _check_redirects(built, membership, resolved, findings)
    _inherit_secrets(built, resolved, findings)
    return built


def _report_undefined(
    name: str, at: Entry | None, key: str, resolved: Mapping[str, Keys], findings: Findings
) -> None:
    close = suggest(name, resolved)
    hint = f"; did you mean {close!r}?" if close else ""
    findings.error(
        at,
        key,
        f"worker {name!r} is not defined (no worker.{name}.* keys); mod_jk would invent an "
        f"ajp13 worker at localhost:8009{hint}",
    )


def _type_of(name: str, keys: Keys, findings: Findings) -> str | None:
    entries = keys.get("type")
    if not entries:
        return AJP13  # mod_jk's default type
    entry = entries[-1]
    if entry.value in ALL_TYPES:
        return entry.value
    known = "lb, status, http or ajp13"
    if entry.value in OBSOLETE_TYPES:
        findings.error(entry, None, f"type {entry.value!r} is not supported; expected {known}")
    else:
        close = suggest(entry.value, ALL_TYPES)
        hint = f"; did you mean {close!r}?" if close else ""
        findings.error(entry, None, f"unknown type {entry.value!r}; expected {known}{hint}")
    return None


def _own(name: str, entry: Entry) -> bool:
    return entry.key.startswith(f"worker.{name}.")


def _location(origin: Entry) -> Location:
    return Location(origin.file, origin.line)


def _parse(name: str, wtype: str, keys: Keys, findings: Findings) -> dict[str, object]:
    """Every stored directive set for this worker, parsed; errors for the ones its type lacks."""
    values: dict[str, object] = {}
    for dname, entries in keys.items():
        if dname in _STRUCTURAL:
            continue
        directive = directive_for(dname, wtype)
        if directive is None:
            entry = entries[-1]
            inherited = "" if _own(name, entry) else " (inherited through reference)"
            accepted = ", ".join(sorted(types_accepting(dname)))
            findings.error(
                entry,
                None,
                f"does not apply to {wtype} worker {name!r}{inherited}; it applies to: {accepted}",
            )
            continue
        items: list[object] = []
        for entry in entries if directive.is_list else entries[-1:]:
            try:
                parsed = parse_value(directive, entry.value)
            except BadValue as exc:
                findings.value_error(entry, str(exc))
                continue
            for warning in parsed.warnings:
                findings.warn(entry, None, warning)
            if isinstance(parsed.value, tuple):  # a list directive: entries append
                items.extend(parsed.value)
            else:
                values[dname] = parsed.value
        if directive.is_list:
            values[dname] = tuple(items)
    return values


def _int(v: Mapping[str, object], key: str, wtype: str) -> int:
    """The parsed int ``key``, or the table's default (the model's) when unset or invalid."""
    value = v.get(key)
    if isinstance(value, int):
        return value
    directive = directive_for(key, wtype)
    assert directive is not None and isinstance(directive.default, int)
    return directive.default


def _member(
    name: str, wtype: str, keys: Keys, in_lb: bool, origin: Entry, findings: Findings
) -> MemberConfig:
    v = _parse(name, wtype, keys, findings)
    if not in_lb:
        for dname, entries in keys.items():
            d = directive_for(dname, wtype)
            if d is not None and d.member_only and _own(name, entries[-1]):
                findings.warn(
                    entries[-1], None, f"has no effect: {name!r} is not a member of any lb"
                )
    route = str(v.setdefault("route", name))
    if "domain" not in v:
        v["domain"] = route.split(".", 1)[0] if "." in route else ""
    socket_timeout = _int(v, "socket_timeout", wtype)
    if "socket_connect_timeout" not in v and socket_timeout > 0:
        v["socket_connect_timeout"] = socket_timeout * 1000
    size = _int(v, "connection_pool_size", wtype)
    if "connection_pool_minsize" not in v:
        v["connection_pool_minsize"] = (size + 1) // 2
    elif _int(v, "connection_pool_minsize", wtype) > size:
        findings.warn(
            keys["connection_pool_minsize"][-1],
            None,
            f"larger than connection_pool_size; {size} is used",
        )
        v["connection_pool_minsize"] = size
    if "connection_acquire_timeout" not in v:
        retries = _int(v, "retries", wtype)
        v["connection_acquire_timeout"] = retries * _int(v, "retry_interval", wtype)
    _derive_ping(v, wtype)
    return MemberConfig(name=name, type=wtype, location=_location(origin), **v)  # type: ignore[arg-type]


def _derive_ping(v: dict[str, object], wtype: str) -> None:
    """mod_jk: setting connect_timeout/prepost_timeout turns that probe on; a probe that is on
    without its own timeout uses ping_timeout; idle probing defaults to ping_timeout/100 s."""
    mode = set(str(v.get("ping_mode", "")))
    if _int(v, "connect_timeout", wtype):
        mode.add("C")
    if _int(v, "prepost_timeout", wtype):
        mode.add("P")
    ping = _int(v, "ping_timeout", wtype)
    if "C" in mode and not _int(v, "connect_timeout", wtype):
        v["connect_timeout"] = ping
    if "P" in mode and not _int(v, "prepost_timeout", wtype):
        v["prepost_timeout"] = ping
    if "I" in mode and not _int(v, "connection_ping_interval", wtype):
        v["connection_ping_interval"] = max(1, ping // 100)
    v["ping_mode"] = "".join(c for c in "CPI" if c in mode)


def _lb_members(
    name: str,
    resolved: Mapping[str, Keys],
    types: dict[str, str | None],
    origin: Entry,
    findings: Findings,
) -> list[tuple[str, Entry]]:
    """The lb's usable members with the entry naming each; errors for the others."""
    members: list[tuple[str, Entry]] = []
    seen: set[str] = set()
    for entry in resolved[name].get("balance_workers", []):
        for member in split_list(entry.value):
            if member in seen:
                findings.error(entry, None, f"member {member!r} is listed twice in lb {name!r}")
                continue
            seen.add(member)
            if worker_name_problems(member)[0]:
                continue  # the balance_workers value itself is reported as invalid
            if member not in resolved:
                _report_undefined(member, entry, entry.key, resolved, findings)
                continue
            if member not in types:
                types[member] = _type_of(member, resolved[member], findings)
            wtype = types[member]
            if wtype in (LB, STATUS):
                findings.error(
                    entry, None, f"member {member!r} is a {wtype} worker; members are http or ajp13"
                )
            elif wtype is not None:
                members.append((member, entry))
    if not seen and not resolved[name].get("cluster"):
        findings.error(
            origin,
            f"worker.{name}.balance_workers",
            f"lb worker {name!r} has no members (and no cluster directive to bring some)",
        )
    return members


def _template_of(
    name: str, resolved: Mapping[str, Keys], types: dict[str, str | None], findings: Findings
) -> str | None:
    """The worker named by ``worker.<lb>.cluster_template=worker.<name>``, if it is a usable
    http/ajp13 worker (errors otherwise)."""
    entries = resolved[name].get("cluster_template")
    if not entries:
        return None
    entry = entries[-1]
    template = entry.value.removeprefix("worker.")
    if template not in resolved:
        _report_undefined(template, entry, entry.key, resolved, findings)
        return None
    if template not in types:
        types[template] = _type_of(template, resolved[template], findings)
    if types[template] not in MEMBER:
        findings.error(entry, None, f"template {template!r} is not an http or ajp13 worker")
        return None
    return template


def _cluster_file(value: str, entry: Entry, built: Built) -> str:
    """The cluster.toml path, absolute (relative to the folder of the file that names it).
    The file itself is read and checked by the reader (``Built.cluster_files``), so that
    --check and a reload report a missing or invalid file at this line."""
    path = value if os.path.isabs(value) else os.path.join(os.path.dirname(entry.file), value)
    path = os.path.abspath(path)
    built.cluster_files.append((path, entry))
    return path


def _lb(
    name: str,
    resolved: Mapping[str, Keys],
    items: list[tuple[str, Entry]],
    built: Built,
    origin: Entry,
    findings: Findings,
) -> LbConfig:
    keys = resolved[name]
    v = _parse(name, LB, keys, findings)
    v["balance_workers"] = tuple(member for member, _ in items)
    if isinstance(v.get("cluster"), str) and v["cluster"]:
        v["cluster"] = _cluster_file(str(v["cluster"]), keys["cluster"][-1], built)
    if isinstance(v.get("cluster_template"), str):
        v["cluster_template"] = str(v["cluster_template"]).removeprefix("worker.")
        if not v.get("cluster"):
            findings.warn(keys["cluster_template"][-1], None, "has no effect without cluster")
    if "error_escalation_time" not in v:
        v["error_escalation_time"] = _int(v, "recover_time", LB) // 2
    if v.get("set_session_cookie"):
        findings.warn(
            keys["set_session_cookie"][-1],
            None,
            "the routing cookie has the application's session cookie name: when the backend "
            "creates a session in the same response, browsers may keep the routing cookie and "
            "lose the session (reference modjk.md §9 item 4)",
        )
    routes: dict[str, str] = {}
    for member, entry in items:
        config = built.members.get(member)
        if config is None:
            continue
        if config.route in routes:
            at = resolved[member].get("route", [entry])[-1]
            findings.error(
                at,
                None,
                f"route {config.route!r} of member {member!r} is also the route of "
                f"{routes[config.route]!r} in lb {name!r}",
            )
        routes.setdefault(config.route, member)
    return LbConfig(name=name, location=_location(origin), **v)  # type: ignore[arg-type]


def _status(name: str, keys: Keys, origin: Entry, findings: Findings) -> StatusConfig:
    v = _parse(name, STATUS, keys, findings)
    token = v.get("token")
    if isinstance(token, str) and len(token) < _MIN_TOKEN:
        findings.warn(
            keys["token"][-1], None, f"a token shorter than {_MIN_TOKEN} characters is guessable"
        )
    return StatusConfig(name=name, location=_location(origin), **v)  # type: ignore[arg-type]


def _check_redirects(
    built: Built,
    membership: Mapping[str, list[str]],
    resolved: Mapping[str, Keys],
    findings: Findings,
) -> None:
    """A redirect must name the route of another member of (one of) the member's lbs."""
    for name, member in built.members.items():
        if not member.redirect or name not in membership:
            continue
        entry = resolved[name]["redirect"][-1]
        if member.redirect == member.route:
            findings.error(entry, None, f"redirect names {name!r}'s own route")
            continue
        routes = {
            built.members[m].route
            for lb in membership[name]
            if lb in built.lbs
            for m in built.lbs[lb].balance_workers
            if m in built.members
        }
        if member.redirect not in routes:
            findings.error(
                entry,
                None,
                f"redirect {member.redirect!r} is not a route in the lb of {name!r} "
                f"(routes: {', '.join(sorted(routes))})",
            )


def _inherit_secrets(built: Built, resolved: Mapping[str, Keys], findings: Findings) -> None:
    """An lb's secret goes to its ajp13 members that set none (mod_jk §2.2)."""
    given: dict[str, str] = {}
    for lb_name, lb in built.lbs.items():
        if not lb.secret:
            continue
        for name in lb.balance_workers:
            member = built.members.get(name)
            if member is None or member.type != AJP13 or "secret" in resolved[name]:
                continue
            if name in given and given[name] != lb_name:
                findings.warn(
                    resolved[lb_name]["secret"][-1],
                    None,
                    f"member {name!r} already inherits the secret of lb {given[name]!r}",
                )
                continue
            given[name] = lb_name
            built.members[name] = replace(member, secret=lb.secret)
