"""Wiring: configuration → engines + URI map → data plane; signals, reload, shutdown.

One balancer process holds one ``Runtime`` at a time: the loaded WorkersConfig, the URI map and
an lb engine per balancing worker (a plain ``http`` worker in worker.list gets a one-member
engine, so every forward goes through the same attempt loop). A reload builds a new Runtime
— carrying over the state and counters of members whose configuration did not change — and
swaps it in with one assignment; requests in flight keep the plans they started with.

Signals: SIGHUP reloads both files and the TLS certificates (an invalid file or certificate
is rejected with its errors and the old one stays live; TLS connections in flight keep
theirs); SIGUSR1 reopens the access log (logrotate's postrotate); SIGTERM/SIGINT stop
accepting, drain requests in flight for up to ``worker.shutdown_timeout`` seconds and exit 0.
The URI map file is also re-read when its mtime
changes, checked every ``worker.mount_reload`` seconds (mod_jk's JkMountFileReload).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from balancer.access_log import AccessLog
from balancer.cluster_view import ClusterView
from balancer.config import ConfigError
from balancer.config.model import LbConfig, MemberConfig, WorkersConfig
from balancer.config.reader import parse_workers, read_config_file
from balancer.dataplane import Limits, LocalResponse, ProxyServer, ProxyTo, Request, RouteDecision
from balancer.dataplane.ajp_fields import split_host
from balancer.dataplane.tls import TlsError, TlsSettings, TlsStats
from balancer.dataplane.tls_listener import Terminator
from balancer.dynamic import DynamicLbs
from balancer.health_monitor import HealthMonitor
from balancer.lb.engine import LbEngine
from balancer.lb.shm import ProcessRow
from balancer.lb.state import LOCAL, LbState
from balancer.mounts import Mapped, UriMap, parse_mounts
from balancer.status.tls_view import TlsView, tls_view
from balancer.status.traffic_metrics import TrafficCollector
from balancer.status_wiring import StatusEndpoints
from balancer.uri import Rejected
from pyjk import __version__
from pyjk.hotpath import describe
from pyjk.logs import configure_logging
from pyjk.metrics import standard_collectors

log = logging.getLogger("pyjk.balancer")

VERSION = f"pyjk/{__version__}"
MAINTAIN_TICK = 1.0  # s; engines run their maintenance only once worker.maintain has passed
# route() remembers its answer for this many raw paths of up to ANSWER_CACHE_PATH bytes
ANSWER_CACHE_SIZE = 4096
ANSWER_CACHE_PATH = 256


class StartupError(Exception):
    """The configuration loads but cannot be served (http and ajp13 members both can)."""


@dataclass(frozen=True, slots=True)
class Runtime:
    """One loaded configuration: what the router reads on every request."""

    workers: WorkersConfig
    uri_map: UriMap
    engines: Mapping[str, LbEngine]  # lb name, or listed member name → engine
    mounts_mtime: float | None


def single_member_lb(member: MemberConfig) -> LbConfig:
    """A one-member lb for a member mapped directly: its own retries, no stickiness, one round.

    mod_jk services a directly mapped ajp13 worker with the member's own retries only; one lb
    round over one member does the same, and keeps one code path for every forward.
    """
    return LbConfig(
        name=member.name, balance_workers=(member.name,), sticky_session=False, retries=1
    )


def build_engines(
    workers: WorkersConfig,
    previous: Mapping[str, LbEngine],
    now: float,
    dynamic: Mapping[str, Sequence[MemberConfig]] | None = None,
    state: LbState = LOCAL,
) -> dict[str, LbEngine]:
    """An engine per listed lb or member; an lb's members are its static ones followed by the
    ``dynamic`` ones its cluster brought (balancer.cluster_members)."""
    engines: dict[str, LbEngine] = {}
    for name in workers.worker_list:
        if name in workers.lbs:
            lb = workers.lbs[name]
            members = workers.lb_members(lb) + tuple((dynamic or {}).get(name, ()))
        elif name in workers.members:
            lb = single_member_lb(workers.members[name])
            members = (workers.members[name],)
        else:
            continue  # a status worker
        old = previous.get(name)
        if old is None:
            engines[name] = LbEngine(lb, members, workers.maintain, now, state)
        else:
            engines[name] = LbEngine.from_previous(old, lb, members, workers.maintain, now, state)
    return engines


def limits_for(workers: WorkersConfig) -> Limits:
    b = workers.balancer
    return Limits(
        max_head_size=b.max_head_size,
        max_headers=b.max_headers,
        header_timeout=float(b.header_timeout),
        keepalive_timeout=float(b.keepalive_timeout),
        body_timeout=float(b.body_timeout),
        max_body_size=b.max_body_size,
        max_connections=b.max_connections,
        max_connections_per_ip=b.max_connections_per_ip,
        underscores_in_headers=b.underscores_in_headers,
    )


def _mtime(path: Path | None) -> float | None:
    if path is None:
        return None
    try:
        return path.stat().st_mtime
    except OSError:
        return None


class Balancer:
    """The running balancer: owns the Runtime, the data plane, timers and signal handling."""

    def __init__(
        self,
        workers_path: Path,
        mounts_path: Path | None,
        listen: Sequence[tuple[str, int, bool]],
        access_log: AccessLog | None = None,
        tls: TlsSettings | None = None,
        *,
        hsts: int = 0,
        https_redirect: bool = False,
        state: LbState = LOCAL,
        processes: Callable[[], Sequence[ProcessRow]] | None = None,
        config_texts: Callable[[], tuple[str, str]] | None = None,
        csrf: str | None = None,
        consume_result: Callable[[int], bool] | None = None,
    ) -> None:
        # Where the configuration's text comes from: the files, or (a data-plane process of
        # a supervisor) the text the supervisor checked and published for all.
        self.config_texts = config_texts or self.read_files
        self.loaded_texts = ("", "")
        self.state = state  # where the engines keep their numbers (shared with --processes)
        # Set by the supervisor (balancer/supervisor.py): runs after every successful reload,
        # with the line that would be logged.
        self.on_reload: Callable[[str], None] | None = None
        self.requests = 0  # routed since the start (a data-plane process's row)
        # Set by a data-plane process of a supervisor: the TLS counters of all processes.
        self.tls_stats: Callable[[], TlsStats] | None = None
        self.workers_path = workers_path
        self.mounts_path = mounts_path
        self.listens = [(host, port, tls) for host, port, tls in listen]  # tls: https://
        self.listen = self.listens[0][:2]
        # TlsError (a certificate that cannot be served) stops the start, as a config error
        self.tls = Terminator(tls) if tls is not None else None
        self.access_log = access_log
        self.dynamic = DynamicLbs(self._members_changed)  # worker.<lb>.cluster listeners
        self.runtime = self.load(previous=None)
        self._answers: dict[bytes, RouteDecision] = {}  # route()'s, by raw path
        self._answers_for = self.runtime
        self.cluster = ClusterView()
        self._configure_cluster_view()
        self.status = StatusEndpoints(VERSION, self.listen)
        self.status.tls_view = self._tls_view if self.tls is not None else None
        self.status.cluster_view = self.cluster.counts
        self.status.processes = processes
        self.status.csrf = csrf
        self.status.consume_result = consume_result
        self.status.cluster_limits = self.cluster.limits
        self.status.update(self.runtime)
        self.health = HealthMonitor()
        self.proxy = ProxyServer(
            self.route,
            limits_for(self.runtime.workers),
            trusted_proxies=self.runtime.workers.balancer.trusted_proxies,
            access_log=access_log.record if access_log else None,
        )
        if hsts > 0:
            self.proxy.hsts = b"Strict-Transport-Security: max-age=%d\r\n" % hsts
        https_ports = [port for _, port, tls in self.listens if tls]
        # --https-redirect: plain listeners answer every request with a redirect to the first
        # HTTPS listener (nginx's "return 301 https://$host$request_uri")
        self.redirect_port = https_ports[0] if https_redirect and https_ports else None
        self.status.pool_stats = self._pool_stats
        self.status.is_trusted = self.proxy.is_trusted
        self._wire_engines(self.runtime)
        self.status.collectors = (
            TrafficCollector(
                self.proxy.stats, lambda: len(self.proxy.connections), self._members_now
            ),
            *standard_collectors(),
        )
        self.status.update(self.runtime)  # again: the status workers take the collectors
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    # --- configuration ----------------------------------------------------------------------

    def read_files(self) -> tuple[str, str]:
        """The text of workers.properties and of the URI map ("" without one)."""
        workers = read_config_file(self.workers_path, "the worker definitions")
        if self.mounts_path is None:
            return workers, ""
        return workers, read_config_file(self.mounts_path, "the URI map")

    def load(self, previous: Runtime | None) -> Runtime:
        """Read both files into a new Runtime; raises ConfigError or StartupError."""
        mtime = _mtime(self.mounts_path)
        texts = self.config_texts()
        workers, warnings = parse_workers(texts[0], str(self.workers_path), os.environ)
        for w in warnings:
            log.warning("config warning: %s", w)
        if self.mounts_path is not None:
            uri_map, mount_warnings = parse_mounts(
                texts[1], str(self.mounts_path), workers, environ=os.environ
            )
        else:  # the worker.NAME.mount rules alone
            uri_map, mount_warnings = parse_mounts("", "<no uriworkermap>", workers)
        for w in mount_warnings:
            log.warning("config warning: %s", w)
        now = time.monotonic()
        dynamic = self.dynamic.members(workers)
        engines = build_engines(
            workers, previous.engines if previous else {}, now, dynamic, self.state
        )
        self.loaded_texts = texts
        return Runtime(workers, uri_map, engines, mtime)

    def reload(self, reason: str) -> bool:
        """Swap in a freshly read configuration; keep the old one on any error."""
        self.log_changes()  # the new engines start with empty change queues
        try:
            runtime = self.load(previous=self.runtime)
        except (ConfigError, StartupError) as exc:
            problems = exc.problems if isinstance(exc, ConfigError) else (exc,)
            for p in problems:
                log.error("reload rejected (%s): %s", reason, p)
            log.error("reload rejected (%s): the running configuration stays live", reason)
            return False
        old = self.runtime
        self._swap(runtime)
        self.dynamic.sync(runtime.workers, runtime.engines)
        added = set(runtime.engines) - set(old.engines)
        removed = set(old.engines) - set(runtime.engines)
        workers_list = ",".join(runtime.workers.worker_list)
        mounts = sum(1 for r in runtime.uri_map.rules if r.enabled)
        summary = (
            f"reloaded ({reason}): workers={workers_list} added={','.join(sorted(added)) or '-'} "
            f"removed={','.join(sorted(removed)) or '-'} mounts={mounts}"
        )
        if self.on_reload is not None:
            self.on_reload(summary)  # the supervisor says it once every process serves it
        else:
            log.info("%s", summary)
        return True

    def _members_now(self) -> set[tuple[str, str]]:
        """(worker, member) of every member configured now, for the traffic metrics."""
        return {(name, m.name) for name, e in self.runtime.engines.items() for m in e.members}

    def _wire_engines(self, runtime: Runtime) -> None:
        """Let each engine see its members' connection pools: an OK/BUSY member goes back to
        OK only when its pool has a free connection as well as room under busy_limit (mod_jk
        §3.6). Every engine of a reload or a dynamic lb's rebuild, new ones included, gets it."""
        for engine in runtime.engines.values():
            engine.pool_has_room = self.proxy.pool_has_room

    def _swap(self, runtime: Runtime) -> None:
        self._wire_engines(runtime)
        self.runtime = runtime
        self.status.update(runtime)
        self.health.update(runtime.engines)
        self._configure_cluster_view()
        self.proxy.prune_pools(
            m for e in runtime.engines.values() for m in (x.config for x in e.members)
        )

    def _members_changed(self, lb_name: str) -> None:
        """A dynamic lb's members changed: swap in its rebuilt engine (balancer.dynamic)."""
        self.log_changes()  # the new engine starts with an empty change queue
        runtime = self.runtime
        engine = self.dynamic.rebuild(runtime.workers, runtime.engines, lb_name, time.monotonic())
        if engine is not None:
            self._swap(replace(runtime, engines={**runtime.engines, lb_name: engine}))

    def _configure_cluster_view(self) -> None:
        settings = self.runtime.workers.balancer
        self.cluster.update(
            self.runtime.engines, settings.cluster_manager_token, settings.cluster_poll_interval
        )

    # --- per request ------------------------------------------------------------------------

    def route(self, req: Request) -> RouteDecision:
        self.requests += 1
        if self.redirect_port is not None and not req.secure:
            return https_redirect(req, self.redirect_port)
        runtime = self.runtime
        if runtime is not self._answers_for:
            self._answers = {}  # a reload: other rules and engines
            self._answers_for = runtime
        path = req.path
        answer = self._answers.get(path)
        if answer is not None:
            return answer
        decision = runtime.uri_map.match(path.decode("latin-1"))
        if type(decision) is Mapped:
            engine = runtime.engines.get(decision.worker)
            if engine is None:
                return self.status.route(decision.worker, req)  # depends on more than the path
            answer = ProxyTo(engine, decision.rule.extensions, name=decision.worker)
        elif type(decision) is Rejected:
            answer = LocalResponse(decision.status, close=True)
        else:
            answer = LocalResponse(404)
        # The answer depends on the raw path alone (and the runtime): most requests repeat a
        # few paths, and a hit costs one dict lookup instead of decoding, the URI map's cache
        # and a new ProxyTo.
        if len(path) <= ANSWER_CACHE_PATH:
            answers = self._answers
            if len(answers) >= ANSWER_CACHE_SIZE:
                answers.clear()
            answers[path] = answer
        return answer

    def _pool_stats(self, member: MemberConfig) -> tuple[int, int] | None:
        pool = self.proxy.pools.get((member.name, member.host, member.port))
        if pool is None:
            return None
        return pool.total, pool.size

    # --- lifecycle --------------------------------------------------------------------------

    async def serve(
        self, sockets: Sequence[socket.socket | None] = (), *, control: bool = True
    ) -> None:
        """Listen, run until SIGTERM/SIGINT, drain. ``sockets``: listening sockets made by the
        supervisor, one per ``--listen`` (None: bind here). ``control``: also run the health
        checks, maintenance and the URI map watch (a data-plane process of a supervisor does
        not: the supervisor runs them once for all)."""
        loop = asyncio.get_running_loop()
        for i, (host, port, tls) in enumerate(self.listens):
            sock = sockets[i] if i < len(sockets) else None
            if tls:
                assert self.tls is not None
                self.proxy.start_tls(host, port, self.tls, sock=sock)
            elif sock is not None:
                await self.proxy.start(None, None, sock=sock)
            else:
                await self.proxy.start(host, port)
            log.info("listening on %s%s:%d (%s)", "https://" if tls else "", host, port, VERSION)
        log.info("%s", describe())
        for sig, handler in (
            (signal.SIGHUP, self._sighup),
            (signal.SIGTERM, self._stopping.set),
            (signal.SIGINT, self._stopping.set),
            (signal.SIGUSR1, self.reopen_access_log),
        ):
            loop.add_signal_handler(sig, handler)
        if control:
            self.start_control()
        else:
            self._tasks.append(asyncio.create_task(self._log_changes(), name="state-log"))
        self.cluster.start()
        self.dynamic.sync(self.runtime.workers, self.runtime.engines)
        if self.access_log is not None:
            self._tasks.append(asyncio.create_task(self.access_log.run(), name="access-log"))
        if self.tls is not None:
            self._tasks.append(asyncio.create_task(self.tls.rotate(), name="tls-tickets"))
        await self._stopping.wait()
        grace = float(self.runtime.workers.balancer.shutdown_timeout)
        log.info("stopping: draining requests in flight for up to %.0fs", grace)
        await self.proxy.close(grace=grace)
        await self.cluster.stop()
        await self.stop_control()
        await self.dynamic.stop()
        if self.access_log is not None:
            self.access_log.flush()
        log.info("stopped")

    def start_control(self) -> None:
        """Health checks, maintenance and the URI map watch: once per balancer."""
        self.health.update(self.runtime.engines)
        self.health.start()
        self._tasks += [
            asyncio.create_task(self._maintenance(), name="maintenance"),
            asyncio.create_task(self._watch_mounts(), name="mount-reload"),
        ]

    async def stop_control(self) -> None:
        await self.health.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    def stop(self) -> None:
        self._stopping.set()

    def process_row(self, slot: int, started: float, generation: int) -> ProcessRow:
        """This process as the shared table's process rows show it."""
        return ProcessRow(
            slot, os.getpid(), started, len(self.proxy.connections), self.requests, generation
        )

    def _sighup(self) -> None:
        self.reload_all("SIGHUP")

    def reload_all(self, reason: str) -> bool:
        """Both files and the TLS certificates; whether the files' reload succeeded."""
        ok = self.reload(reason)
        if self.tls is not None:
            self.tls.reload()  # new contexts first; a bad pair keeps the running certificates
        return ok

    def _tls_view(self) -> TlsView | None:
        if self.tls is None:
            return None
        stats = self.tls_stats() if self.tls_stats is not None else None
        return tls_view(self.tls, self.listens, stats)

    def reopen_access_log(self) -> None:
        """SIGUSR1: logrotate renamed the access log; go on in a new file of the old name."""
        if self.access_log is None:
            return
        try:
            self.access_log.reopen()
        except OSError as exc:
            log.error("access log not reopened path=%s error=%r", self.access_log.path, str(exc))
            return
        log.info("access log reopened path=%s", self.access_log.path or "-")

    def log_changes(self) -> None:
        """Log the member state changes requests and commands made since the last call."""
        for engine in self.runtime.engines.values():
            for change in engine.drain_changes():
                level = logging.WARNING if change.new.value == "ERR" else logging.INFO
                log.log(level, "%s", change)

    async def _log_changes(self) -> None:
        while True:
            await asyncio.sleep(MAINTAIN_TICK)
            self.log_changes()

    async def _maintenance(self) -> None:
        while True:
            await asyncio.sleep(MAINTAIN_TICK)
            now = time.monotonic()
            for engine in self.runtime.engines.values():
                for change in engine.maintain(now):
                    log.info("%s", change)
            self.log_changes()

    async def _watch_mounts(self) -> None:
        if self.mounts_path is None:
            return
        while True:
            interval = self.runtime.workers.balancer.mount_reload
            if interval <= 0:
                return
            await asyncio.sleep(interval)
            mtime = _mtime(self.mounts_path)
            if mtime is not None and mtime != self.runtime.mounts_mtime:
                self.reload(f"{self.mounts_path} changed")


def https_redirect(req: Request, port: int) -> LocalResponse:
    """The redirect of a plain request to the same URL over HTTPS: 301 for GET and HEAD, 308
    (method and body kept) for the others."""
    name, _ = split_host(req.host or b"localhost", True)
    authority = name if port == 443 else name + b":%d" % port
    status = 301 if req.method in (b"GET", b"HEAD") else 308
    location = b"https://" + authority + req.target
    return LocalResponse(status, headers=((b"Location", location),), close=req.has_body)


def run(args: argparse.Namespace) -> int:
    """``pyjk-balancer`` without --check."""
    configure_logging(args.log_level, args.log_format)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; fall back loudly
        log.warning("uvloop is not installed: running on the default asyncio loop (slower)")
        uvloop = None  # type: ignore[assignment]
    from balancer.supervisor import Role  # it imports this module

    access_format = args.access_log_format or ("json" if args.log_format == "json" else "combined")
    access_log = AccessLog.open(args.access_log, access_format) if args.access_log else None
    role = Role(args)

    async def main() -> int:
        try:
            balancer = Balancer(
                args.workers,
                args.mounts,
                args.listen,
                access_log,
                getattr(args, "tls", None),
                hsts=getattr(args, "hsts", 0),
                https_redirect=getattr(args, "https_redirect", False),
                state=role.state,
                processes=role.table.processes if role.table is not None else None,
                config_texts=role.config_source(),
                csrf=role.csrf(),
                consume_result=role.table.consume if role.table is not None else None,
            )
        except TlsError as exc:
            log.error("tls error: %s", exc)
            return 1
        except ConfigError as exc:
            for p in exc.problems:
                log.error("config error: %s", p)
            return 1
        except StartupError as exc:
            log.error("cannot start: %s", exc)
            return 1
        # What is loaded by now lives as long as the process: keep it out of the cyclic
        # collector's full passes, which otherwise walk every module and config object each
        # time requests in flight have survived enough young collections.
        gc.collect()
        gc.freeze()
        try:
            return await role.run(balancer)
        except OSError as exc:
            where = " ".join(str(x) for x in args.listen)
            log.error("cannot listen on %s: %s", where, exc.strerror or exc)
            return 1

    if uvloop is not None:
        return uvloop.run(main())
    return asyncio.run(main())
