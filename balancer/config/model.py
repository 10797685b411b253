"""The typed configuration model: what the readers produce and everyone else consumes.

Frozen dataclasses (``RuleExtensions``, re-exported from ``rules.py``, is an extension type
with read-only C fields when compiled, and acts as one). Field names are the mod_jk directive
names (reference modjk.md §2), so the directive table (``balancer.config.directives``) and
these classes line up one to one; a unit test checks that they do, defaults included. Units are
mod_jk's: the unit is in each field's comment. pyjk's own directives (health checks, slow
start, the status worker's ``allow`` and ``token``) are typed fields too, marked "pyjk" below;
``extra`` stays empty (reserved).

Where a default differs from mod_jk's, it is because mod_jk's default assumes a forking web
server with blocking sockets (see docs/configuration.md for each):
``socket_connect_timeout`` is 5000 ms (mod_jk: socket_timeout x 1000, i.e. none), and
``connection_pool_size`` is 512 (mod_jk: the web server's threads per child).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

from balancer.config.rules import RuleExtensions as RuleExtensions

# pyjk: the largest lbfactor (mod_jk has none); the workers' heartbeat carries at most the same
from pyjk.lbfactor import MAX_LBFACTOR as MAX_LBFACTOR


class Activation(Enum):
    """Member activation (mod_jk §3.7). ``value`` is the status page's text."""

    ACTIVE = "ACT"
    DISABLED = "DIS"
    STOPPED = "STP"


class Method(Enum):
    """lb method (mod_jk §3.3). ``value`` is the status page's text."""

    REQUEST = "Request"
    TRAFFIC = "Traffic"
    BUSYNESS = "Busyness"
    SESSIONS = "Sessions"
    NEXT = "Next"


class Lock(Enum):
    OPTIMISTIC = "Optimistic"
    PESSIMISTIC = "Pessimistic"


MEMBER_TYPES = ("http", "ajp13")
WORKER_TYPES = ("lb", "status", *MEMBER_TYPES)


@dataclass(frozen=True, slots=True)
class Location:
    """Where a worker or directive was defined."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True, slots=True)
class MemberConfig:
    """A backend endpoint (``type=http`` or ``type=ajp13``), usable alone or as an lb member."""

    name: str
    type: str = "ajp13"
    host: str = "localhost"
    port: int = 8009
    source: str = ""
    prefer_ipv6: bool = False
    socket_timeout: int = 0  # s, 0 = none
    socket_connect_timeout: int = 5000  # ms; socket_timeout*1000 when that is set
    socket_keepalive: bool = False
    socket_buffer: int = 0  # bytes
    connection_pool_size: int = 512  # connections held per balancer process
    connection_pool_minsize: int = 256  # (connection_pool_size + 1) // 2 unless set
    connection_pool_timeout: int = 0  # s, idle pooled connections closed after; 0 = never
    connection_acquire_timeout: int = 200  # ms; mod_jk default retries*retry_interval
    ping_mode: str = ""  # canonical letters from "CPI" (A is expanded)
    ping_timeout: int = 10000  # ms
    connect_timeout: int = 0  # ms
    prepost_timeout: int = 0  # ms
    connection_ping_interval: int = 0  # s
    reply_timeout: int = 0  # ms, 0 = wait forever
    retries: int = 2  # attempts on this member for connection-level errors (min 1)
    retry_interval: int = 100  # ms
    recovery_options: int = 0  # bitmask, see docs/configuration.md
    fail_on_status: tuple[int, ...] = ()  # negative = soft
    busy_limit: int = 0  # 0 = off
    max_packet_size: int = 8192  # bytes, ajp13 only
    secret: str = ""  # ajp13 only
    lbfactor: int = 1  # 1..MAX_LBFACTOR
    # member-only (meaningful through an lb)
    route: str = ""  # defaults to name
    domain: str = ""  # defaults to route before its first "."
    redirect: str = ""  # a route
    distance: int = 0
    activation: Activation = Activation.ACTIVE
    # pyjk: active health checks (GET health_check_path; off while the interval is 0)
    health_check_path: str = "/-/ready"
    health_check_interval: int = 0  # ms, 0 = off (mod_jk judges members by real traffic only)
    health_check_rise: int = 2  # consecutive passes to come back
    health_check_fall: int = 2  # consecutive failures to go down
    slow_start: int = 0  # s, ramp a recovered member's share up over this long; 0 = off
    extra: Mapping[str, object] = field(default_factory=dict)
    location: Location | None = None
    # pyjk: where the member comes from — "static" (workers.properties) or "cluster" (it
    # joined a dynamic lb by its heartbeats, balancer.cluster_members) — and, for the latter,
    # when (Unix s). Not directives: a dynamic member's config is built, not read.
    origin: str = "static"
    # out of repr: shm.fingerprint (repr-based) keys a member's shared record across processes,
    # and each process stamps the join with its own clock
    joined_at: float = field(default=0.0, repr=False)


@dataclass(frozen=True, slots=True)
class LbConfig:
    """A ``type=lb`` worker."""

    name: str
    balance_workers: tuple[str, ...] = ()
    sticky_session: bool = True
    sticky_session_force: bool = False
    method: Method = Method.REQUEST
    lock: Lock = Lock.OPTIMISTIC
    retries: int = 2  # rounds over the members (min 1)
    lb_retries: int = 2  # members tried per round (min 1)
    retry_interval: int = 100  # ms, sleep between rounds
    recover_time: int = 60  # s (min 1)
    error_escalation_time: int = 30  # s; default recover_time / 2
    max_reply_timeouts: int = 0
    session_cookie: str = "JSESSIONID"
    session_path: str = ";jsessionid"
    set_session_cookie: bool = False
    session_cookie_path: str = "/"
    secret: str = ""
    # pyjk: dynamic members (balancer.cluster_members): the cluster.toml whose heartbeats add
    # members (absolute once built; "" = static members only), the worker whose settings they
    # copy (a member name, from worker.<lb>.cluster_template=worker.<name>), and the networks
    # their advertised HTTP addresses must fall in
    cluster: str = ""
    cluster_template: str = ""
    cluster_allow: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    extra: Mapping[str, object] = field(default_factory=dict)
    location: Location | None = None


@dataclass(frozen=True, slots=True)
class StatusConfig:
    """A ``type=status`` worker (the jkmanager)."""

    name: str
    css: str = ""
    prefix: str = "worker"
    ns: str = "jk:"
    xmlns: str = 'xmlns:jk="http://tomcat.apache.org"'
    doctype: str = ""
    read_only: bool = False
    user: tuple[str, ...] = ()
    user_case_insensitive: bool = False
    good: tuple[str, ...] = ("a.o", "a.i", "a.b", "a.r")
    bad: tuple[str, ...] = ("s", "e")
    # pyjk: networks allowed besides loopback (CIDR text, normalised), and the bearer token
    # that authorises changes through the API
    allow: tuple[str, ...] = ()
    token: str = ""
    extra: Mapping[str, object] = field(default_factory=dict)
    location: Location | None = None


WorkerConfig = MemberConfig | LbConfig | StatusConfig


# RuleExtensions (a rule's overrides, mod_jk §4.5) is a model class of its own module: the lb
# engine reads it on every request, compiled (rules.py)


@dataclass(frozen=True, slots=True)
class BalancerSettings:
    """pyjk-only global directives (``worker.<name>=...``): the front door's edge limits.

    mod_jk leaves these to httpd (LimitRequestBody, RequestReadTimeout, ...); pyjk is the web
    server, so they live in workers.properties beside worker.maintain. Defaults follow
    nginx/HAProxy (front-door-security.md).
    """

    trusted_proxies: tuple[str, ...] = ()  # CIDR networks whose X-Forwarded-* are kept
    max_head_size: int = 16 * 1024  # bytes, request line + headers; over -> 431
    max_headers: int = 100  # header fields; over -> 431
    header_timeout: int = 10  # s, whole request head (slowloris) -> 408
    keepalive_timeout: int = 60  # s, idle keep-alive connection closed after
    body_timeout: int = 60  # s, longest gap between two reads of a request body
    max_body_size: int = 1024 * 1024  # bytes; over -> 413; 0 = unlimited
    max_connections: int = 10000  # client connections; over -> 503 and close
    max_connections_per_ip: int = 1024  # 0 = unlimited
    underscores_in_headers: str = "reject"  # reject | drop | allow
    mount_reload: int = 60  # s, uriworkermap re-read check (JkMountFileReload); 0 = never
    shutdown_timeout: int = 30  # s, SIGTERM drain bound for requests in flight
    processes: int = 0  # data-plane processes (--processes); 0 = the CPUs we may run on
    cluster_poll_interval: int = 0  # s, reading the workers' /cluster-manager; 0 = never
    cluster_manager_token: str = ""  # Bearer token for /cluster-manager of non-loopback members


@dataclass(frozen=True, slots=True)
class WorkersConfig:
    """Everything workers.properties says, validated."""

    worker_list: tuple[str, ...]
    maintain: int  # s, worker.maintain; 0 = maintenance off
    lbs: Mapping[str, LbConfig]
    members: Mapping[str, MemberConfig]  # every http/ajp13 worker, listed or lb member
    statuses: Mapping[str, StatusConfig]
    # worker.NAME.mount rules: (pattern text, worker name, location)
    mounts: tuple[tuple[str, str, Location], ...] = ()
    # the effective key=value map after references, for the status worker's dump command
    properties: Mapping[str, str] = field(default_factory=dict)
    file: str = ""
    balancer: BalancerSettings = field(default_factory=BalancerSettings)

    def worker(self, name: str) -> WorkerConfig | None:
        return self.lbs.get(name) or self.members.get(name) or self.statuses.get(name)

    def lb_members(self, lb: LbConfig) -> tuple[MemberConfig, ...]:
        return tuple(self.members[n] for n in lb.balance_workers)
