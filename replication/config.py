"""`cluster.toml`: one directive table → the parser, the checks, the errors and the docs.

Every key lives in a section (`name` at the top); durations are milliseconds, as in Tomcat's
cluster attributes (frequency 500, dropTime 3000). An unknown key or section is an error that
names the file and the key and suggests the nearest known one; wrong types and out-of-range
values are errors too, all reported together (balancer.config.errors.ConfigError).
"""

from __future__ import annotations

import difflib
import ipaddress
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from balancer.config.errors import ConfigError, Problem
from worker.names import NAME_RE, NAME_RULE


@dataclass(frozen=True, slots=True)
class Directive:
    section: str  # "" for top-level keys
    key: str
    kind: str  # str | bool | int | ms | list
    default: Any
    unit: str
    doc: str
    check: Callable[[Any], str | None] = lambda v: None

    @property
    def path(self) -> str:
        return f"{self.section}.{self.key}" if self.section else self.key


def _range(low: int, high: int) -> Callable[[Any], str | None]:
    return lambda v: None if low <= v <= high else f"expected {low}..{high}, found {v}"


def _ipv4(multicast: bool) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        try:
            addr = ipaddress.IPv4Address(v)
        except ValueError:
            return f"expected an IPv4 address, found {v!r}"
        if multicast and not addr.is_multicast:
            return f"{v} is not a multicast address (224.0.0.0/4)"
        if not multicast and (addr.is_unspecified or addr.is_multicast):
            return f"{v} cannot be advertised to peers: name one address of this host"
        return None

    return check


def _host_port(v: Any) -> str | None:
    for item in v:
        if not isinstance(item, str) or _split_host_port(item) is None:
            return f'expected "HOST:PORT" strings, found {item!r}'
    return None


def _split_host_port(text: str) -> tuple[str, int] | None:
    host, _, port = text.rpartition(":")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None
    return (host, int(port)) if port.isdigit() and 0 < int(port) < 65536 else None


def _redis_nodes(v: Any) -> str | None:
    for item in v:
        host, _, port = item.rpartition(":") if isinstance(item, str) else ("", "", "")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            return f'expected "HOST:PORT" strings, found {item!r}'
    return None


def _redis_url(v: Any) -> str | None:
    if v and not re.match(r"rediss?://[^/\s]+", v):
        return f"expected redis://HOST:PORT or rediss://HOST:PORT, found {v!r}"
    if "@" in v:
        return "no password in the url: put it in password_file (or password_env)"
    parts = urlsplit(v)
    # redis-py reads options from the query string and lets them override the keywords
    # passed (a password, ssl_cert_reqs=none): the keys of this section would not hold
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name != "db":
            return (f"no {name!r} in the url's query string (only db=N): the redis client "
                    "would let it override this section's settings (password, tls)")  # fmt: skip
        if not value.isdigit():
            return f"db in the url's query string: expected a number, found {value!r}"
    if parts.fragment:
        return "no '#' fragment in the url"
    return None


def _one_of(*choices: str) -> Callable[[Any], str | None]:
    return lambda v: None if v in choices else f"expected one of {', '.join(choices)}"


DIRECTIVES: tuple[Directive, ...] = (
    Directive("", "name", "str", "pyjk", "", "cluster name; members of another name on the same "
              "group are ignored",
              lambda v: None if NAME_RE.fullmatch(v) else f"expected {NAME_RULE}"),
    Directive("membership", "multicast", "bool", True, "", "send and receive UDP multicast "
              "heartbeats (false: static members only)"),
    Directive("membership", "group", "str", "228.0.0.4", "", "multicast group address",
              _ipv4(True)),
    Directive("membership", "port", "int", 45564, "", "multicast UDP port", _range(1, 65535)),
    Directive("membership", "interface", "str", "127.0.0.1", "", "IPv4 address of the interface "
              "for multicast (IP_MULTICAST_IF and the group join)", _ipv4(False)),
    Directive("membership", "ttl", "int", 1, "", "multicast TTL (0: this host only)",
              _range(0, 255)),
    Directive("membership", "frequency", "ms", 500, "ms", "heartbeat interval", _range(10, 60_000)),
    Directive("membership", "drop_time", "ms", 3000, "ms", "silence after which a member is "
              "probed over TCP and dropped if the probe fails", _range(50, 600_000)),
    Directive("membership", "probe_timeout", "ms", 1000, "ms", "how long a TCP probe may take",
              _range(10, 60_000)),
    Directive("membership", "static_members", "list", [], "", "receivers to ping over TCP "
              "(\"HOST:PORT\"), for networks without multicast", _host_port),
    Directive("receiver", "host", "str", "127.0.0.1", "", "address the TCP receiver listens on "
              "and advertises", _ipv4(False)),
    Directive("receiver", "port", "int", 0, "", "TCP receiver port (0: a free one, advertised)",
              _range(0, 65535)),
    Directive("receiver", "max_frame", "int", 16 * 1024 * 1024, "bytes", "largest frame "
              "accepted; a bigger length prefix closes the connection", _range(4096, 1 << 30)),
    Directive("replication", "send_mode", "str", "sync", "", "sync: a response waits until "
              "every live member acknowledged its deltas; async: it does not",
              _one_of("sync", "async")),
    Directive("replication", "mode", "str", "replicated", "", "where sessions live in the "
              "cluster: replicated (every node holds every session, all-to-all) or distributed "
              "(the route's node plus owners - 1 backups; docs/cluster.md)",
              _one_of("replicated", "distributed")),
    Directive("replication", "owners", "int", 2, "", "distributed: copies of each session (the "
              "route's node first); 1..members (with fewer live members each holds every one)",
              _range(1, 64)),
    Directive("replication", "ack_timeout", "ms", 3000, "ms", "longest wait for one member's "
              "ack; a member that misses it becomes a suspect", _range(10, 600_000)),
    Directive("replication", "state_transfer_timeout", "ms", 60_000, "ms", "longest wait for "
              "the sessions of the cluster at start before reporting ready anyway",
              _range(0, 3_600_000)),
    Directive("replication", "anti_entropy_interval", "ms", 5000, "ms", "how often digests are "
              "compared with each member (differences are pulled)", _range(100, 3_600_000)),
    Directive("replication", "touch_interval", "ms", 2000, "ms", "how often last-access times "
              "of read-only requests are sent", _range(50, 600_000)),
    Directive("security", "key_file", "str", "cluster.key", "", "the cluster key (32 random "
              "bytes, hex); relative to this file; created 0600 when missing"),
    Directive("security", "insecure", "bool", False, "", "run without sealing (explicit opt-in; "
              "only on a trusted network)"),
    Directive("security", "max_clock_skew", "ms", 30_000, "ms", "envelopes sent further from "
              "now are refused (replay protection across restarts)", _range(1000, 3_600_000)),
    Directive("security", "manager_token", "str", "", "", "token for /cluster-manager from "
              "non-loopback clients (Authorization: Bearer ...); empty: loopback only"),
    Directive("store", "kind", "str", "cluster", "", "where sessions live: cluster (every "
              "node holds every session, replicated all-to-all) or redis (docs/redis.md)",
              _one_of("cluster", "redis")),
    Directive("store", "url", "str", "", "", "redis: one Redis (or Valkey) server, "
              "redis://HOST:PORT[/DB] (rediss:// for TLS; no password, no query option but db)",
              _redis_url),
    Directive("store", "nodes", "list", [], "", "redis: seed nodes of a Redis Cluster "
              "(\"HOST:PORT\"); instead of url", _redis_nodes),
    Directive("store", "wait_replicas", "int", 0, "", "redis: 1 = a write is acknowledged "
              "only once a replica has it too (WAIT)", _range(0, 1)),
    Directive("store", "password_file", "str", "", "", "redis: file holding the password "
              "(relative to this file; never the password itself in this file)"),
    Directive("store", "password_env", "str", "", "", "redis: environment variable holding "
              "the password (when there is no password_file)"),
    Directive("store", "tls", "bool", False, "", "redis: connect with TLS (system CAs)"),
    Directive("store", "timeout", "ms", 1000, "ms", "redis: longest wait for one read or "
              "write (WAIT included); past it the request gets 503", _range(10, 60_000)),
    Directive("store", "key_prefix", "str", "pyjk", "", "redis: prefix of every key",
              lambda v: None if re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", v)
              else "expected 1-64 of A-Za-z0-9_.:-"),
    Directive("exactly_once", "ttl", "ms", 300_000, "ms", "how long a recorded response is kept",
              _range(1000, 86_400_000)),
    Directive("exactly_once", "max_entries", "int", 10_000, "", "recorded responses kept at "
              "most (0: nothing is recorded, on every store)",
              _range(0, 10_000_000)),
    Directive("exactly_once", "max_body", "int", 16 * 1024, "bytes", "largest body recorded "
              "(bigger responses are not recorded)", _range(0, 1 << 20)),
    Directive("exactly_once", "max_bytes", "int", 16 * 1024 * 1024, "bytes", "all recorded "
              "bodies together", _range(0, 1 << 31)),
)  # fmt: skip
_BY_PATH = {d.path: d for d in DIRECTIVES}
_SECTIONS = sorted({d.section for d in DIRECTIVES if d.section})


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    source: str
    name: str
    multicast: bool
    group: str
    mcast_port: int
    interface: str
    ttl: int
    frequency: float  # seconds, like every duration below
    drop_time: float
    probe_timeout: float
    static_members: tuple[tuple[str, int], ...]
    receiver_host: str
    receiver_port: int
    max_frame: int
    send_mode: str
    ack_timeout: float
    state_transfer_timeout: float
    anti_entropy_interval: float
    touch_interval: float
    key_file: Path
    insecure: bool
    max_clock_skew: float
    manager_token: str
    dedup_ttl: float
    dedup_max_entries: int
    dedup_max_body: int
    dedup_max_bytes: int
    mode: str = "replicated"
    owners: int = 2
    store_kind: str = "cluster"
    store_url: str = ""
    store_nodes: tuple[tuple[str, int], ...] = ()
    store_wait_replicas: int = 0
    store_password_file: Path | None = None
    store_password_env: str = ""
    store_tls: bool = False
    store_timeout: float = 1.0
    store_key_prefix: str = "pyjk"
    sections: frozenset[str] = frozenset()  # the sections the file has (e.g. "membership")


_FIELD = {
    "membership.port": "mcast_port", "receiver.host": "receiver_host",
    "receiver.port": "receiver_port", "exactly_once.ttl": "dedup_ttl",
    "exactly_once.max_entries": "dedup_max_entries", "exactly_once.max_body": "dedup_max_body",
    "exactly_once.max_bytes": "dedup_max_bytes",
    **{f"store.{k}": f"store_{k}" for k in ("kind", "url", "nodes", "wait_replicas",
                                            "password_file", "password_env", "tls", "timeout",
                                            "key_prefix")},
}  # fmt: skip


def _suggest(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else ""


def _typed(d: Directive, value: Any) -> str | None:
    if d.kind == "bool":
        return None if isinstance(value, bool) else f"expected true or false, found {value!r}"
    if d.kind in ("int", "ms"):
        if isinstance(value, bool) or not isinstance(value, int):
            return f"expected an integer{' (milliseconds)' if d.kind == 'ms' else ''}, " \
                   f"found {value!r}"  # fmt: skip
        return None
    if d.kind == "list":
        return None if isinstance(value, list) else f"expected a list, found {value!r}"
    return None if isinstance(value, str) else f"expected a string, found {value!r}"


def parse_cluster_config(text: str, source: str = "<cluster.toml>") -> ClusterConfig:
    """Parse and check `text`; relative key files are resolved against `source`'s directory."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([Problem(source, None, None, f"not valid TOML: {exc}")]) from None
    problems: list[Problem] = []
    lines = _key_lines(text)
    values: dict[str, Any] = {d.path: d.default for d in DIRECTIVES}
    for key, value in data.items():
        if isinstance(value, dict) and key in _SECTIONS:
            items = [(f"{key}.{k}", v) for k, v in value.items()]
        elif isinstance(value, dict):
            problems.append(Problem(source, lines.get(f"[{key}]"), f"[{key}]",
                                    "unknown section" + _suggest(key, _SECTIONS)))  # fmt: skip
            continue
        else:
            items = [(key, value)]
        for path, v in items:
            d = _BY_PATH.get(path)
            if d is None:
                hint = "unknown key" + _suggest(path, list(_BY_PATH))
                problems.append(Problem(source, lines.get(path), path, hint))
                continue
            message = _typed(d, v) or d.check(v)
            if message:
                problems.append(Problem(source, lines.get(path), path, message))
            else:
                values[path] = v
    if not any(p.directive in ("store.url", "store.nodes") for p in problems):
        problems += _store_problems(source, values, lines)  # else it reads as missing
    if problems:
        raise ConfigError(problems)
    fields: dict[str, Any] = {"source": source}
    for d in DIRECTIVES:
        name = _FIELD.get(d.path, d.key)
        value = values[d.path]
        if d.kind == "ms":
            value = value / 1000.0
        fields[name] = value
    fields["static_members"] = tuple(
        _split_host_port(m) for m in values["membership.static_members"]
    )
    key_file = Path(values["security.key_file"])
    if not key_file.is_absolute():
        key_file = Path(source).resolve().parent / key_file
    fields["key_file"] = key_file
    fields["store_nodes"] = tuple(
        (h, int(p)) for h, _, p in (n.rpartition(":") for n in values["store.nodes"])
    )
    password_path = Path(values["store.password_file"])
    if not password_path.is_absolute():
        password_path = Path(source).resolve().parent / password_path
    fields["store_password_file"] = password_path if values["store.password_file"] else None
    fields["sections"] = frozenset(k for k, v in data.items() if isinstance(v, dict))
    return ClusterConfig(**fields)


_TABLE_RE = re.compile(r"\s*\[\s*([A-Za-z0-9_.-]+)\s*\]")
_KEY_RE = re.compile(r"\s*([A-Za-z0-9_-]+)\s*=")


def _key_lines(text: str) -> dict[str, int]:
    """Where each `section.key` (and each `[section]`) is written: 1-based line numbers for the
    errors (tomllib parses values, not positions). Keys inside multi-line values are not
    mistaken for directives: only lines that look like `key =` at a table's top level count."""
    found: dict[str, int] = {}
    section = ""
    for number, line in enumerate(text.splitlines(), 1):
        if table := _TABLE_RE.match(line):
            section = table.group(1)
            found.setdefault(f"[{section}]", number)
        elif key := _KEY_RE.match(line):
            path = f"{section}.{key.group(1)}" if section else key.group(1)
            found.setdefault(path, number)
    return found


def _store_problems(source: str, values: dict[str, Any], lines: dict[str, int]) -> list[Problem]:
    """The keys that only make sense together ([store], and the replication mode's)."""
    url, nodes = values["store.url"], values["store.nodes"]
    if values["replication.mode"] == "distributed" and values["store.kind"] != "cluster":
        return [Problem(source, lines.get("replication.mode"), "replication.mode",
                        'distributed needs [store] kind = "cluster" (the built-in store); '
                        f'found kind = "{values["store.kind"]}"')]  # fmt: skip
    if values["store.kind"] != "redis":
        return [
            Problem(source, lines.get(f"store.{key}"), f"store.{key}", 'only for kind = "redis"')
            for key in ("url", "nodes")
            if values[f"store.{key}"]
        ]
    if bool(url) == bool(nodes):
        return [
            Problem(source, lines.get("store.url"), "store.url", 'kind = "redis" needs url '
                    "(one server) or nodes (a Redis Cluster), not both")
        ]  # fmt: skip
    return []


def load_cluster_config(path: str | Path) -> ClusterConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            [Problem(str(path), None, None, f"cannot read: {exc.strerror}")]
        ) from None
    return parse_cluster_config(text, str(path))


def render_reference() -> str:
    """The key-by-key table of docs/cluster.md, generated from DIRECTIVES."""
    lines = ["| key | default | unit | meaning |", "|---|---|---|---|"]
    for d in DIRECTIVES:
        default = _toml(d.default)
        lines.append(f"| `{d.path}` | `{default}` | {d.unit or '—'} | {d.doc} |")
    return "\n".join(lines) + "\n"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "[]"
    return re.sub(r"(\d)(?=(\d{3})+$)", r"\1_", str(value)) if value >= 100_000 else str(value)
