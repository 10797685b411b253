"""Dynamic lb members from a cluster's heartbeats (``worker.<lb>.cluster``): the decisions, pure.

mod_jk's members are the lines of workers.properties; mod_cluster and HAProxy's DNS discovery
let backends come and go without an edit. Here a pyjk worker started with ``--cluster`` sends
sealed heartbeats carrying its route, HTTP address and lbfactor (replication/codec.py
``MemberInfo``); the balancer hears them through the same pure membership table the workers
use (replication/membership.py, fed by ``balancer.cluster_source``) and asks this object what
the lb's dynamic members are:

- a node the table holds alive is a *candidate*; it becomes a member once its ``/-/ready``
  answered 200 (state transfer done), with the route, address and lbfactor it advertises and
  the other settings of the lb's template worker;
- a candidate is refused (logged once per node and reason, counted) when it advertises no
  HTTP address, an address outside the lb's allow-list, or a route a live member already has
  (a static member's route or name counts as live); a static member's own heartbeats (same
  route and address) are simply not news;
- a member announcing it is leaving (SIGTERM) is disabled at once (activation D: no new
  sessions, sticky requests go on), and removed when the table drops it (shutdown heartbeat,
  or silence past drop_time and a failed probe);
- a node coming back with the same route is the same lb member again: members are named by
  their route.

Time comes in as arguments (``now`` monotonic for probe pacing, ``wall`` for the join time).
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from balancer.config.model import MAX_LBFACTOR, MemberConfig
from replication.member_info import MemberInfo

ORIGIN = "cluster"
JOINED, DISABLED, REMOVED, REFUSED = "JOINED", "DIS", "REMOVED", "REFUSED"
NO_ADDRESS = "no-http-address"
NOT_ALLOWED = "address-not-allowed"
ROUTE_IN_USE = "route-in-use"


@dataclass(frozen=True, slots=True)
class MemberChange:
    """A join, a leave or a refusal, logged in the state-change form operators grep for."""

    lb: str
    member: str  # the route, which is the dynamic member's name
    state: str  # JOINED, DIS (leaving), REMOVED or REFUSED
    reason: str
    node: MemberInfo

    def __str__(self) -> str:
        n = self.node
        return (
            f"lb={self.lb} member={self.member} state={self.state} reason={self.reason} "
            f"origin={ORIGIN} address={n.http_host}:{n.http_port} id={n.id}"
        )


@dataclass(slots=True)
class _Candidate:
    info: MemberInfo
    next_probe: float


@dataclass(slots=True)
class _Admitted:
    info: MemberInfo
    config: MemberConfig
    leaving: bool = False


class DynamicLb:
    """One dynamic lb's members as the cluster shows them. Feed it the membership table's
    news; read ``members()`` and ``leaving()``."""

    def __init__(
        self,
        lb: str,
        *,
        allow: Sequence[str],
        template: MemberConfig | None = None,
        static: Iterable[MemberConfig] = (),
        probe_interval: float = 0.5,
    ) -> None:
        self.lb = lb
        self.probe_interval = probe_interval
        self.counters: Counter[str] = Counter()
        self._admitted: dict[str, _Admitted] = {}  # member id ->
        self._candidates: dict[str, _Candidate] = {}
        self._refused: dict[str, str] = {}  # member id -> the reason last logged
        self.configure(allow=allow, template=template, static=static)

    def configure(
        self, *, allow: Sequence[str], template: MemberConfig | None, static: Iterable[MemberConfig]
    ) -> None:
        """The lb's settings (at start and on reload); admitted members keep their config."""
        self.allow = tuple(ipaddress.ip_network(n, strict=False) for n in allow)
        self.template = template
        static = tuple(static)
        self.taken = frozenset(x for m in static for x in (m.name, m.route or m.name))
        # a static member heartbeating (a mixed lb): already a member, nothing to add or refuse
        self.static_nodes = frozenset((m.route or m.name, m.host, m.port) for m in static)

    # -- input -----------------------------------------------------------------------------
    def heard(self, info: MemberInfo, now: float) -> list[MemberChange]:
        """A heartbeat of a node the membership table holds (authenticated, not departed)."""
        admitted = self._admitted.get(info.id)
        if admitted is not None:
            admitted.info = info
            if info.leaving and not admitted.leaving:
                admitted.leaving = True
                self.counters["leaving"] += 1
                return [MemberChange(self.lb, info.route, DISABLED, "leaving", info)]
            return []
        if (info.route, info.http_host, info.http_port) in self.static_nodes:
            return []
        reason = self._refusal(info)
        if reason is not None:
            self._candidates.pop(info.id, None)
            if self._refused.get(info.id) == reason:
                return []
            self._refused[info.id] = reason
            self.counters[f"refused_{reason}"] += 1
            return [MemberChange(self.lb, info.route, REFUSED, reason, info)]
        self._refused.pop(info.id, None)
        if info.leaving:  # stopping before it was ever ready: nothing to add
            self._candidates.pop(info.id, None)
            return []
        candidate = self._candidates.get(info.id)
        if candidate is None:
            self._candidates[info.id] = _Candidate(info, now)
        else:
            candidate.info = info
        return []

    def probes_due(self, now: float) -> list[MemberInfo]:
        """Candidates whose /-/ready should be asked now (then again every probe_interval)."""
        due = []
        for c in self._candidates.values():
            if now >= c.next_probe:
                c.next_probe = now + self.probe_interval
                due.append(c.info)
        return due

    def ready_result(self, member_id: str, ok: bool, wall: float) -> list[MemberChange]:
        """The answer of a candidate's /-/ready: 200 (``ok``) makes it a member."""
        candidate = self._candidates.get(member_id)
        if candidate is None or not ok:
            return []
        info = candidate.info
        if self._refusal(info) is not None:  # a member with its route joined meanwhile
            return []
        del self._candidates[member_id]
        self._admitted[member_id] = _Admitted(info, self._config(info, wall))
        self.counters["joined"] += 1
        return [MemberChange(self.lb, info.route, JOINED, "ready", info)]

    def left(self, info: MemberInfo, reason: str) -> list[MemberChange]:
        """The membership table dropped the node ("shutdown" or "dropped")."""
        self._candidates.pop(info.id, None)
        self._refused.pop(info.id, None)
        admitted = self._admitted.pop(info.id, None)
        if admitted is None:
            return []
        self.counters["removed"] += 1
        return [MemberChange(self.lb, admitted.info.route, REMOVED, reason, admitted.info)]

    # -- output ----------------------------------------------------------------------------
    def members(self) -> tuple[MemberConfig, ...]:
        """The dynamic members' configs, by route (a stable order across rebuilds)."""
        return tuple(sorted((a.config for a in self._admitted.values()), key=lambda c: c.route))

    def leaving(self) -> frozenset[str]:
        """Names of members stopping gracefully: to be disabled (activation D)."""
        return frozenset(a.config.name for a in self._admitted.values() if a.leaving)

    def candidates(self) -> list[MemberInfo]:
        return [c.info for c in self._candidates.values()]

    # -- rules -----------------------------------------------------------------------------
    def _refusal(self, info: MemberInfo) -> str | None:
        if not info.http_port:
            return NO_ADDRESS
        try:
            address = ipaddress.ip_address(info.http_host)
        except ValueError:
            return NOT_ALLOWED
        if not any(address in net for net in self.allow):
            return NOT_ALLOWED
        if info.route in self.taken:
            return ROUTE_IN_USE
        for member_id, a in self._admitted.items():
            if a.info.route == info.route and member_id != info.id:
                return ROUTE_IN_USE
        return None

    def _config(self, info: MemberInfo, wall: float) -> MemberConfig:
        return member_config(
            self.template, info.route, info.http_host, info.http_port, info.lbfactor, wall
        )


def member_config(
    template: MemberConfig | None, route: str, host: str, port: int, lbfactor: int, wall: float
) -> MemberConfig:
    """A dynamic member: what its node advertises, the other settings from the template."""
    # Members speak HTTP (pyjk workers); everything else comes from the template.
    base = template or MemberConfig(name=route, type="http")
    return replace(
        base, name=route, type="http", host=host, port=port, route=route, domain="",
        redirect="", lbfactor=min(max(1, lbfactor), MAX_LBFACTOR), origin=ORIGIN, joined_at=wall,
    )  # fmt: skip


def members_document(members: Mapping[str, Sequence[MemberConfig]]) -> dict[str, list[list[Any]]]:
    """The dynamic members of each lb as plain data (a supervisor publishes it to its
    data-plane processes): what ``member_config`` rebuilds them from."""
    return {
        lb: [[m.route, m.host, m.port, m.lbfactor, m.joined_at] for m in configs]
        for lb, configs in members.items()
    }


def members_from_document(
    doc: object, templates: Mapping[str, MemberConfig | None]
) -> dict[str, tuple[MemberConfig, ...]]:
    """``members_document``'s members again, for the lbs in ``templates`` (lb → its template);
    an entry that is not what the supervisor writes is skipped."""
    out: dict[str, tuple[MemberConfig, ...]] = {}
    if not isinstance(doc, dict):
        return out
    for lb, template in templates.items():
        configs = []
        for entry in doc.get(lb) or ():
            try:
                route, host, port, lbfactor, wall = entry
                config = member_config(
                    template, str(route), str(host), int(port), int(lbfactor), float(wall)
                )
            except (TypeError, ValueError):
                continue
            configs.append(config)
        out[lb] = tuple(configs)
    return out
