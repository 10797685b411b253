"""The snapshot's plain data: rows of typed fields that every format renders.

Field names and order are mod_jk's (reference modjk.md §5.2; ``jk_status.c``'s txt/xml/prop
writers), so txt, prop and xml print them as they come; pyjk's own fields follow, marked
``pyjk``. Values stay typed (bool, int, str, None = unknown) until a format writes them, so
json keeps numbers and ``True``/``False``/``-`` are the text formats' business.

Single-member workers (an ``http``/``ajp13`` worker mounted directly) are given to the status
worker wrapped as one-member ``LbEngine``s, under the worker's own name; they are listed as
mod_jk lists ajp workers ("AJP Workers", ``used=`` instead of ``elected=``). Which engines are
lbs is decided by the config: a name in ``WorkersConfig.lbs`` is an lb, any other is a single.

``balancer.status.snapshot`` fills these from the engines.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from balancer.config.model import MemberConfig, StatusConfig, WorkersConfig
from balancer.lb.engine import LbEngine
from balancer.mounts import UriMap

if TYPE_CHECKING:
    from balancer.lb.shm import ProcessRow
    from balancer.pair import PairView
    from balancer.status.tls_view import TlsView

Scalar = str | int | bool | None
ClusterView = Callable[[], Mapping[str, int] | None]  # route -> live sessions; None: unknown
ClusterLimits = Callable[[], Mapping[str, int]]  # lb -> sessions limit (max_active_sessions)
# a member's endpoint config -> (connected, max_connected), None = unknown; the config rather
# than the name because pools are keyed by endpoint and a reload may change one
PoolStats = Callable[[MemberConfig], "tuple[int, int] | None"]

TEXT_TIME = "%Y%m%d%H%M%S"  # mod_jk's txt/xml/prop date format


@dataclass(frozen=True, slots=True)
class Field:
    key: str
    value: Scalar
    quoted: bool = False  # txt writes it in double quotes (mod_jk: route, redirect, domain ...)
    pyjk: bool = False  # pyjk's own, not a mod_jk field


class Row:
    """Ordered fields with lookup by key."""

    __slots__ = ("_index", "fields")

    def __init__(self, fields: Iterable[Field]) -> None:
        self.fields = tuple(fields)
        self._index = {f.key: f.value for f in self.fields}

    def __getitem__(self, key: str) -> Scalar:
        return self._index[key]

    def get(self, key: str, default: Scalar = None) -> Scalar:
        return self._index.get(key, default)

    def __contains__(self, key: str) -> bool:
        return key in self._index

    def __iter__(self) -> Iterator[Field]:
        return iter(self.fields)


@dataclass(frozen=True, slots=True)
class ServerInfo:
    host: str
    port: int
    version: str  # "pyjk/<version>"


@dataclass(frozen=True, slots=True)
class Head:
    server_name: str
    server_port: int
    datetime: str
    tz: str
    unix: int
    web_server: str
    jk_version: str
    started_at: int  # pyjk
    uptime: int  # pyjk, s


@dataclass(frozen=True, slots=True)
class WorkerView:
    name: str
    kind: str  # "lb" or "ajp" (a single-member worker)
    row: Row  # the lb's fields, or the single worker's
    members: tuple[Row, ...]  # shown lb members; () for a single worker
    maps: tuple[Row, ...]
    engine: LbEngine


@dataclass(frozen=True, slots=True)
class Snapshot:
    head: Head
    lbs: tuple[WorkerView, ...]
    ajps: tuple[WorkerView, ...]
    # cmd=list prints a count line per kind that has workers and is not hidden; show: None
    lb_count: int | None = None
    ajp_count: int | None = None
    tls: TlsView | None = None  # pyjk: the HTTPS listeners, when there are some
    processes: tuple[ProcessRow, ...] = ()  # pyjk: data-plane processes (--processes N)
    pair: PairView | None = None  # pyjk: the balancer pair (--cluster), pair_view.py

    @property
    def workers(self) -> tuple[WorkerView, ...]:
        return self.lbs + self.ajps


@dataclass(frozen=True, slots=True)
class Result:
    ok: bool
    message: str

    @property
    def type(self) -> str:
        return "OK" if self.ok else "ERROR"


@dataclass(frozen=True, slots=True)
class Document:
    """What one answer shows, in any format: the header block (None for the answer to a
    change or an error), the workers, the configuration dump, and the result line."""

    result: Result
    head: Head | None = None
    snapshot: Snapshot | None = None
    dump: tuple[tuple[str, str], ...] | None = None


@dataclass(frozen=True, slots=True)
class Selection:
    """What a view shows. ``worker`` None = every worker (list)."""

    worker: str | None = None
    member: str | None = None  # show one member of the lb
    hide_members: bool = False
    hide_maps: bool = False
    hide_lbs: bool = False
    hide_ajp: bool = False


@dataclass(slots=True)
class Sources:
    """Everything a snapshot reads. The wiring may replace ``workers``, ``engines`` and
    ``uri_map`` after a reload (``StatusWorker.update_sources``)."""

    status: StatusConfig
    workers: WorkersConfig
    engines: Mapping[str, LbEngine]
    uri_map: UriMap | None
    server: ServerInfo
    started: float  # wall
    cluster_view: ClusterView | None = None
    pool_stats: PoolStats | None = None
    maintain_tick: float = 1.0  # s between the wiring's maintain() calls
    tls_view: Callable[[], TlsView | None] | None = None  # HTTPS listeners (tls_view.py)
    cluster_limits: ClusterLimits | None = None
    processes: Callable[[], Sequence[ProcessRow]] | None = None  # processes_view.py
    pair: Callable[[], PairView | None] | None = None  # pair_view.py (--cluster)

    def ordered(self) -> list[tuple[str, LbEngine]]:
        """Engines in worker.list order, then any others in the mapping's order."""
        names = [n for n in self.workers.worker_list if n in self.engines]
        names += [n for n in self.engines if n not in names]
        return [(n, self.engines[n]) for n in names]

    def is_lb(self, name: str) -> bool:
        return name in self.workers.lbs
