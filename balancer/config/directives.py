"""The one table of workers.properties directives (mod_jk reference §2).

Everything else is derived from this table: which keys the reader accepts, how each value is
parsed and clamped, the error suggestions for typos, and docs/configuration.md
(``python -m balancer.config.docs``). A directive name may appear twice when lb workers and
member workers give it different meanings (``retries``, ``retry_interval``); the two entries then
accept disjoint worker types.

Defaults are the model's (``balancer.config.model``), which are mod_jk's except where noted in
``modjk_default``; a unit test keeps table and model equal. The pyjk-only globals are the fields
of ``BalancerSettings`` (the front door's edge limits, httpd's job in a mod_jk setup).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from balancer.config.model import MAX_LBFACTOR, Activation, Lock, Method

GLOBAL = "global"  # worker.list, worker.maintain, pyjk's edge limits: not a worker type, a scope
LB, STATUS, HTTP, AJP13 = "lb", "status", "http", "ajp13"
MEMBER = frozenset({HTTP, AJP13})
ALL_TYPES = frozenset({LB, STATUS, HTTP, AJP13})
# mod_jk knew these; pyjk names them in the error instead of "unknown type".
OBSOLETE_TYPES = frozenset({"ajp12", "ajp14", "jni"})


class Kind(Enum):
    """How a value is parsed (balancer.config.values)."""

    BOOL = "bool"
    INT = "int"  # decimal, optional k/K (x1024) or m/M (x1048576) suffix
    STR = "str"
    HOST = "host"  # a host name or IP literal; no "host:port"
    ADDRESS = "address"  # an IP literal
    NAME = "name"  # route/domain/redirect: [A-Za-z0-9_.-], at most 63 characters
    PATH = "path"  # an absolute URI path
    TOKEN = "token"  # an HTTP token (cookie name)
    ENUM = "enum"  # one of ``choices`` by first character
    WORD = "word"  # one of ``choices`` (words), written whole or as its first letter
    LETTERS = "letters"  # ping_mode: any of C, P, I, A
    LIST = "list"  # words split on runs of space, tab and comma
    NAMES = "names"  # a list of worker names
    INT_LIST = "int-list"  # fail_on_status: status codes, "-" = soft
    RATINGS = "ratings"  # good/bad: "a", "e", "a.o", ...
    NETWORKS = "networks"  # CIDR networks


LIST_KINDS = frozenset({Kind.LIST, Kind.NAMES, Kind.INT_LIST, Kind.RATINGS, Kind.NETWORKS})


@dataclass(frozen=True, slots=True)
class Directive:
    """One workers.properties directive and everything known about it."""

    name: str
    kind: Kind
    default: object
    types: frozenset[str]
    doc: str
    unit: str = ""  # "ms", "s", "bytes", "count" or ""
    member_only: bool = False  # meaningful only for a member of an lb
    minimum: int | None = None  # below it the value is raised to it, with a warning (mod_jk)
    maximum: int | None = None  # above it the value is lowered to it, with a warning
    multiple: int | None = None  # rounded up to a multiple of this
    # outside these the value is an error (pyjk); an upper bound of None = no upper bound
    bounds: tuple[int, int | None] | None = None
    # ENUM: first char -> value; WORD: word -> value
    choices: Mapping[str, object] = field(default_factory=dict)
    pyjk_only: bool = False
    stored: bool = True  # False: shapes the config (type, reference, mount), not a field
    sensitive: bool = False  # hidden from the status dump
    derived: str = ""  # how the default follows from other directives, for the docs
    modjk_default: str = ""  # mod_jk's default, when pyjk's differs
    elsewhere: str = ""  # what does this job in httpd (a mod_jk setup) and nginx, for the docs

    @property
    def is_list(self) -> bool:
        """Repeated keys append (mod_jk's list properties) instead of overwriting."""
        return self.kind in LIST_KINDS


@dataclass(frozen=True, slots=True)
class Alias:
    """A deprecated directive name, accepted with a warning (reference §2.6)."""

    name: str
    target: str
    types: frozenset[str]
    # for the booleans disabled/stopped: the activation letter a true value stands for
    activation: str = ""


def _d(
    name: str, kind: Kind, default: object, types: Iterable[str], doc: str, **kw: Any
) -> Directive:
    return Directive(name, kind, default, frozenset(types), doc, **kw)


_METHODS = {
    "R": Method.REQUEST,
    "T": Method.TRAFFIC,
    "B": Method.BUSYNESS,
    "S": Method.SESSIONS,
    "N": Method.NEXT,
    "0": Method.REQUEST,
    "1": Method.TRAFFIC,
    "2": Method.BUSYNESS,
    "3": Method.SESSIONS,
    "4": Method.NEXT,
}
_LOCKS = {"O": Lock.OPTIMISTIC, "P": Lock.PESSIMISTIC, "0": Lock.OPTIMISTIC, "1": Lock.PESSIMISTIC}
_ACTIVATIONS = {
    "A": Activation.ACTIVE,
    "D": Activation.DISABLED,
    "S": Activation.STOPPED,
    "0": Activation.ACTIVE,
    "1": Activation.DISABLED,
    "2": Activation.STOPPED,
}

_UNDERSCORES = {"reject": "reject", "drop": "drop", "allow": "allow"}
_G = {GLOBAL}
_ABOVE_0 = (1, None)

_I, _S, _B = Kind.INT, Kind.STR, Kind.BOOL

# fmt: off
DIRECTIVES: tuple[Directive, ...] = (
    # -- global (worker.list, worker.maintain) --
    _d("list", Kind.NAMES, ("ajp13",), {GLOBAL},
       "Workers that URIs can be mapped to; lb members need not be listed. Repeats append.",
       derived="ajp13, with a warning, when worker.list is missing"),
    _d("maintain", _I, 60, {GLOBAL},
       "Interval between maintenance runs (lb decay, error recovery); 0 turns them off.", unit="s"),
    # -- global, pyjk only: the front door's edge limits (model.BalancerSettings) --
    _d("trusted_proxies", Kind.NETWORKS, (), _G,
       "Peers (CIDR) whose X-Forwarded-For/-Proto/-Host headers are kept; from any other peer "
       "pyjk replaces them. Repeats append.",
       pyjk_only=True,
       elsewhere="httpd: RemoteIPTrustedProxy (mod_remoteip); nginx: set_real_ip_from"),
    _d("max_head_size", _I, 16 * 1024, _G,
       "Largest request head (request line and header fields); a larger one is answered 431.",
       unit="bytes", bounds=(1024, None), pyjk_only=True,
       elsewhere="httpd: LimitRequestLine and LimitRequestFieldSize (per line, no total); "
       "nginx: large_client_header_buffers"),
    _d("max_headers", _I, 100, _G, "Most header fields in one request; more are answered 431.",
       unit="count", bounds=_ABOVE_0, pyjk_only=True,
       elsewhere="httpd: LimitRequestFields; nginx: none (large_client_header_buffers bounds it)"),
    _d("header_timeout", _I, 10, _G,
       "Deadline for a whole request head, answered 408 when missed: a deadline, not an idle "
       "timer, so a client trickling bytes (slowloris) cannot hold a connection. It runs from "
       "the accept for a connection's first request, from the read its first byte came in for "
       "a later one; the time pyjk itself does not read (a pipelined request held behind the "
       "ones before it) is not counted.",
       unit="s", bounds=_ABOVE_0, pyjk_only=True,
       elsewhere="httpd: RequestReadTimeout header= (mod_reqtimeout); "
       "nginx: client_header_timeout"),
    _d("keepalive_timeout", _I, 60, _G,
       "Close a keep-alive client connection idle this long between requests.",
       unit="s", bounds=_ABOVE_0, pyjk_only=True,
       elsewhere="httpd: KeepAliveTimeout; nginx: keepalive_timeout"),
    _d("body_timeout", _I, 60, _G, "Longest wait between two reads of a request body.",
       unit="s", bounds=_ABOVE_0, pyjk_only=True,
       elsewhere="httpd: RequestReadTimeout body= (mod_reqtimeout); nginx: client_body_timeout"),
    _d("max_body_size", _I, 1024 * 1024, _G,
       "Largest request body; a larger one is answered 413. 0 = unlimited.",
       unit="bytes", pyjk_only=True,
       elsewhere="httpd: LimitRequestBody; nginx: client_max_body_size"),
    _d("max_connections", _I, 10000, _G,
       "Most client connections open at once, per process; one more is answered 503 and "
       "closed (on an HTTPS listener, connections still in their handshake count too and "
       "one more is closed before it).",
       unit="count", bounds=_ABOVE_0, pyjk_only=True,
       elsewhere="httpd: MaxRequestWorkers (the MPM's); nginx: worker_connections"),
    _d("max_connections_per_ip", _I, 1024, _G,
       "Most client connections open at once from one IP address; 0 = unlimited.",
       unit="count", pyjk_only=True,
       elsewhere="httpd: none in the core (modules such as mod_qos); "
       "nginx: limit_conn with limit_conn_zone $binary_remote_addr"),
    _d("underscores_in_headers", Kind.WORD, "reject", _G,
       "Request header names containing '_': reject the request (400), drop the header, or "
       "allow it. Many backends read '_' and '-' alike, so X_Forwarded_For could stand in for "
       "the X-Forwarded-For that pyjk controls.",
       choices=_UNDERSCORES, pyjk_only=True,
       elsewhere="httpd: passes them on, but leaves them out of CGI environment variables; "
       "nginx: underscores_in_headers (off by default: such headers are ignored)"),
    _d("mount_reload", _I, 60, _G,
       "How often a request may check uriworkermap.properties for changes and reload it; "
       "0 = never.",
       unit="s", pyjk_only=True, elsewhere="httpd: JkMountFileReload (a mod_jk directive)"),
    _d("shutdown_timeout", _I, 30, _G,
       "On SIGTERM, the longest wait for requests in flight before their connections are "
       "closed.",
       unit="s", bounds=_ABOVE_0, pyjk_only=True,
       elsewhere="httpd: GracefulShutdownTimeout; nginx: worker_shutdown_timeout"),
    _d("processes", _I, 0, _G,
       "Data-plane processes that share one lb state under a supervisor; 0 = one per CPU "
       "this process may run on, 1 = a single process. --processes overrides it; a change "
       "takes a restart.",
       unit="count", bounds=(0, 63), pyjk_only=True,
       elsewhere="nginx: worker_processes; HAProxy: nbthread; httpd: MaxRequestWorkers"),
    _d("cluster_poll_interval", _I, 0, _G,
       "How often the balancer reads a member's /cluster-manager listing (pyjk workers with "
       "--cluster) for the status page's live sessions and drained marks; 0 = never (the "
       "default: other backends, Tomcat among them, have no such page).",
       unit="s", pyjk_only=True, elsewhere="none: mod_jk does not know the cluster"),
    _d("cluster_manager_token", _S, "", _G,
       "Bearer token the balancer sends to the workers' /cluster-manager (their "
       "security.manager_token); empty: only members on loopback can be read.",
       pyjk_only=True, sensitive=True, elsewhere="none: mod_jk does not know the cluster"),
    # -- every worker type --
    _d("type", _S, "ajp13", ALL_TYPES, "Worker type: lb, status, http or ajp13.", stored=False),
    _d("reference", _S, "", ALL_TYPES,
       "Copy every directive of another worker that is not set here. The value is the full "
       "prefix, e.g. worker.template.",
       stored=False),
    _d("mount", Kind.LIST, (), ALL_TYPES,
       "URI patterns mapped to this worker (legacy; only for workers in worker.list, lowest "
       "priority). Repeats append.",
       stored=False),
    # -- backend endpoints: http and ajp13 --
    _d("host", Kind.HOST, "localhost", MEMBER,
       "Backend host name or IP address (an IPv6 literal may be bracketed; no host:port)."),
    _d("port", _I, 8009, MEMBER, "Backend TCP port.", bounds=(1, 65535)),
    _d("source", Kind.ADDRESS, "", MEMBER, "Local IP address to connect from."),
    _d("prefer_ipv6", _B, False, MEMBER, "Prefer an IPv6 address when the host has both."),
    _d("socket_timeout", _I, 0, MEMBER, "Timeout of every socket operation; 0 = none.", unit="s"),
    _d("socket_connect_timeout", _I, 5000, MEMBER, "TCP connect timeout.", unit="ms",
       derived="socket_timeout x 1000 when socket_timeout is set",
       modjk_default="socket_timeout x 1000, so none by default; an asyncio proxy should not "
       "wait minutes on a black-holed address"),
    _d("socket_keepalive", _B, False, MEMBER, "Enable TCP keepalive on backend connections."),
    _d("socket_buffer", _I, 0, MEMBER, "Socket buffer size; 0 = the system's.", unit="bytes"),
    _d("connection_pool_size", _I, 512, MEMBER,
       "Most connections to this backend held by the balancer process; a request finding none "
       "free within connection_acquire_timeout marks the member busy and fails over.",
       unit="count", minimum=1,
       modjk_default="the web server's threads per child; pyjk is one process serving every "
       "client, so it needs as many as there are concurrent requests to one member"),
    _d("connection_pool_minsize", _I, 256, MEMBER,
       "Idle connections kept when connection_pool_timeout closes the others.", unit="count",
       derived="(connection_pool_size + 1) / 2"),
    _d("connection_pool_timeout", _I, 0, MEMBER,
       "Close pooled connections idle this long; 0 = never.", unit="s"),
    _d("connection_acquire_timeout", _I, 200, MEMBER,
       "Longest wait for a free pooled connection; then the member counts as busy.", unit="ms",
       derived="retries x retry_interval"),
    _d("ping_mode", Kind.LETTERS, "", MEMBER,
       "Probes: C after connect, P before each request, I on idle connections, A = all."),
    _d("ping_timeout", _I, 10000, MEMBER, "Probe timeout.", unit="ms"),
    _d("connect_timeout", _I, 0, MEMBER,
       "Timeout of the probe after connect; setting it turns that probe on.", unit="ms",
       derived="ping_timeout when ping_mode has C"),
    _d("prepost_timeout", _I, 0, MEMBER,
       "Timeout of the probe before each request; setting it turns that probe on.", unit="ms",
       derived="ping_timeout when ping_mode has P"),
    _d("connection_ping_interval", _I, 0, MEMBER, "Idle time before an idle connection is probed.",
       unit="s", derived="ping_timeout / 100 when ping_mode has I"),
    _d("reply_timeout", _I, 0, MEMBER,
       "Longest wait between two reads from the backend, first byte included; 0 = forever.",
       unit="ms"),
    _d("retries", _I, 2, MEMBER,
       "Attempts on this member for connection-level errors, the first one included.", unit="count",
       minimum=1),
    _d("retry_interval", _I, 100, MEMBER,
       "Sleep between two attempts on this member (none after a refused connect).", unit="ms"),
    _d("recovery_options", _I, 0, MEMBER,
       "Bitmask: 1 no retry once the backend got the request, 2 not once headers were sent, "
       "4 close on client write error, 8 always retry HEAD, 16 always retry GET."),
    _d("fail_on_status", Kind.INT_LIST, (), MEMBER,
       "Response statuses that count as a failure (retry elsewhere; member to ERR). A leading "
       "- makes it soft: retry, member stays OK. Repeats append."),
    _d("busy_limit", _I, 0, MEMBER,
       "Refuse new requests while this many are in flight on the member; 0 = off.", unit="count"),
    _d("max_packet_size", _I, 8192, {AJP13},
       "AJP packet size; rounded up to a multiple of 1024 within 8192..65536.", unit="bytes",
       minimum=8192, maximum=65536, multiple=1024),
    _d("secret", _S, "", {AJP13, LB},
       "AJP shared secret. Set on an lb, it is inherited by ajp13 members that set none.",
       sensitive=True),
    # -- member-only: meaningful through an lb --
    _d("lbfactor", _I, 1, MEMBER, "Weight of this member in its lb (pyjk: at most 100000).",
       member_only=True, minimum=1,
       bounds=(1, MAX_LBFACTOR)),
    _d("route", Kind.NAME, "", MEMBER, "Session route (Tomcat's jvmRoute); unique within an lb.",
       member_only=True, derived="the worker name"),
    _d("domain", Kind.NAME, "", MEMBER, "Replication group: members that share sessions.",
       member_only=True, derived="the route up to its first '.', if it has one"),
    _d("redirect", Kind.NAME, "", MEMBER, "Route of the preferred failover member.",
       member_only=True),
    _d("distance", _I, 0, MEMBER,
       "Members with a higher distance are used only when no lower one is eligible.",
       member_only=True),
    _d("activation", Kind.ENUM, Activation.ACTIVE, MEMBER,
       "A(ctive), D(isabled: sticky requests only) or S(topped: nothing); or 0, 1, 2.",
       member_only=True, choices=_ACTIVATIONS),
    # -- pyjk's own, for backend endpoints --
    _d("health_check_path", Kind.PATH, "/-/ready", MEMBER,
       "Path the active health check GETs; 2xx passes.", pyjk_only=True),
    _d("health_check_interval", _I, 0, MEMBER,
       "Interval of active health checks; 0 = off, members are judged by traffic only "
       "(mod_jk's way, and safe for backends without the check path).",
       unit="ms", pyjk_only=True),
    _d("health_check_rise", _I, 2, MEMBER,
       "Consecutive passing checks that bring a failed member back.", unit="count", minimum=1,
       pyjk_only=True),
    _d("health_check_fall", _I, 2, MEMBER, "Consecutive failing checks that take a member out.",
       unit="count", minimum=1, pyjk_only=True),
    _d("slow_start", _I, 0, MEMBER,
       "Ramp a recovered member's share of new requests up over this long; 0 = off.", unit="s",
       pyjk_only=True),
    # -- lb --
    _d("balance_workers", Kind.NAMES, (), {LB},
       "Members (http or ajp13 workers); required. Repeats append."),
    _d("sticky_session", _B, True, {LB}, "Send requests with a session route to its member."),
    _d("sticky_session_force", _B, False, {LB},
       "Answer 503 rather than fail over when the session's member is unusable."),
    _d("method", Kind.ENUM, Method.REQUEST, {LB},
       "What is balanced: R(equest), T(raffic), B(usyness), S(essions), N(ext); or 0-4.",
       choices=_METHODS),
    _d("lock", Kind.ENUM, Lock.OPTIMISTIC, {LB},
       "O(ptimistic) or P(essimistic); no effect in one asyncio process.", choices=_LOCKS),
    _d("retries", _I, 2, {LB}, "Rounds over the members before giving up.", unit="count",
       minimum=1),
    _d("lb_retries", _I, 2, {LB}, "Most members tried in one round.", unit="count", minimum=1),
    _d("retry_interval", _I, 100, {LB}, "Sleep between two rounds.", unit="ms"),
    _d("recover_time", _I, 60, {LB},
       "Time a failed member stays in error before it is tried again.", unit="s", minimum=1),
    _d("error_escalation_time", _I, 30, {LB},
       "How long a local error may last before the member goes to error; 0 = at once.", unit="s",
       derived="recover_time / 2"),
    _d("max_reply_timeouts", _I, 0, {LB},
       "Reply timeouts tolerated before the member goes to error (halved at each maintenance).",
       unit="count"),
    _d("session_cookie", Kind.TOKEN, "JSESSIONID", {LB}, "Cookie that carries the route."),
    _d("session_path", _S, ";jsessionid", {LB},
       "Path parameter that carries the route, leading ';' included."),
    _d("set_session_cookie", _B, False, {LB},
       "Send a routing cookie when a request was not routed by its session."),
    _d("session_cookie_path", _S, "/", {LB}, "Path attribute of that routing cookie."),
    _d("cluster", _S, "", {LB},
       "A cluster.toml: pyjk workers of that cluster join this lb by themselves (sealed "
       "heartbeats, then /-/ready answering 200) and leave it when they stop. Relative to the "
       "folder of the file that sets it. With it, balance_workers may be empty.",
       pyjk_only=True,
       elsewhere="httpd: mod_cluster (not mod_jk); HAProxy: server-template with DNS discovery"),
    _d("cluster_template", _S, "", {LB},
       "Prefix of a worker (e.g. worker.template, defined but in no lb) whose settings the "
       "dynamic members copy; host, port, route and lbfactor come from each member's "
       "heartbeat.",
       pyjk_only=True),
    _d("cluster_allow", Kind.NETWORKS, ("127.0.0.0/8", "::1/128"), {LB},
       "Networks (CIDR) a dynamic member's advertised HTTP address must fall in; a member "
       "outside is refused with a log line. Repeats append.",
       pyjk_only=True),
    # -- status --
    _d("css", _S, "", {STATUS}, "Stylesheet URL linked from the HTML pages."),
    _d("prefix", _S, "worker", {STATUS}, "Key prefix of the mime=prop output."),
    _d("ns", _S, "jk:", {STATUS}, "XML element prefix; - = none."),
    _d("xmlns", _S, 'xmlns:jk="http://tomcat.apache.org"', {STATUS},
       "Namespace declaration of the XML root element; - = none."),
    _d("doctype", _S, "", {STATUS}, "Printed after the XML declaration."),
    _d("read_only", _B, False, {STATUS}, "Refuse every change (edit, update, reset, recover)."),
    _d("user", Kind.LIST, (), {STATUS},
       "Authenticated user names allowed; empty = anyone. Repeats append."),
    _d("user_case_insensitive", _B, False, {STATUS}, "Compare user names ignoring case."),
    _d("good", Kind.RATINGS, ("a.o", "a.i", "a.b", "a.r"), {STATUS},
       "Rating rules for a good member: activation a/d/s, state o/i/n/b/r/e, or both as a.o."),
    _d("bad", Kind.RATINGS, ("s", "e"), {STATUS}, "Rating rules for a bad member; they win."),
    _d("allow", Kind.NETWORKS, (), {STATUS},
       "Client networks (CIDR) allowed besides loopback. Repeats append.", pyjk_only=True),
    _d("token", _S, "", {STATUS},
       "Bearer token that authorises changes through the API; empty = no API changes.",
       pyjk_only=True, sensitive=True),
)
# fmt: on

ALIASES: tuple[Alias, ...] = (
    Alias("cachesize", "connection_pool_size", MEMBER),
    Alias("cache_timeout", "connection_pool_timeout", MEMBER),
    Alias("recycle_timeout", "connection_pool_timeout", MEMBER),
    Alias("balanced_workers", "balance_workers", frozenset({LB})),
    Alias("jvm_route", "route", MEMBER),
    # activation, when not set, comes from stopped, then disabled (reference §2.2)
    Alias("stopped", "activation", MEMBER, activation="S"),
    Alias("disabled", "activation", MEMBER, activation="D"),
)

# JNI-era keys: accepted and ignored with a warning (reference §2.6).
IGNORED: frozenset[str] = frozenset(
    {"sysprops", "stdout", "stderr", "mx", "ms", "class_path", "bridge", "jvm_lib", "ld_path",
     "cmd_line", "native_lib", "local_worker", "local_worker_only"}
)  # fmt: skip

_BY_NAME: dict[str, tuple[Directive, ...]] = {}
for _dir in DIRECTIVES:
    _BY_NAME[_dir.name] = (*_BY_NAME.get(_dir.name, ()), _dir)
ALIAS_BY_NAME: dict[str, Alias] = {a.name: a for a in ALIASES}

WORKER_DIRECTIVE_NAMES: frozenset[str] = frozenset(
    d.name for d in DIRECTIVES if GLOBAL not in d.types
)
GLOBAL_NAMES: frozenset[str] = frozenset(d.name for d in DIRECTIVES if GLOBAL in d.types)
# Every name accepted after worker.NAME. (directives, aliases, ignored keys)
KNOWN_WORKER_KEYS: frozenset[str] = WORKER_DIRECTIVE_NAMES | ALIAS_BY_NAME.keys() | IGNORED


def directive_for(name: str, worker_type: str) -> Directive | None:
    """The directive ``name`` as accepted by ``worker_type`` (or ``GLOBAL``), if it is."""
    for d in _BY_NAME.get(name, ()):
        if worker_type in d.types:
            return d
    return None


def directives_for_type(worker_type: str) -> tuple[Directive, ...]:
    """Every directive ``worker_type`` accepts, in table order."""
    return tuple(d for d in DIRECTIVES if worker_type in d.types)


def types_accepting(name: str) -> frozenset[str]:
    if name in ALIAS_BY_NAME:
        return ALIAS_BY_NAME[name].types
    found: set[str] = set()
    for d in _BY_NAME.get(name, ()):
        found |= d.types
    return frozenset(found)


def _last_segment(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def is_list_key(key: str) -> bool:
    """Whether a repeated ``key`` appends (mod_jk's list properties) rather than overwrites."""
    if not key.startswith("worker."):
        return False
    name = _last_segment(key)
    if name in ALIAS_BY_NAME:
        name = ALIAS_BY_NAME[name].target
    return any(d.is_list for d in _BY_NAME.get(name, ()))


def is_sensitive_key(key: str) -> bool:
    """Whether the status worker's dump must hide ``key``'s value (secret, token)."""
    if not key.startswith("worker."):
        return False
    return any(d.sensitive for d in _BY_NAME.get(_last_segment(key), ()))


def suggest(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate closest to ``word`` (a typo's likely intent), if any is close."""
    matches = difflib.get_close_matches(word, sorted(candidates), n=1, cutoff=0.5)
    return matches[0] if matches else None
