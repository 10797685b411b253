"""Wiring: configuration → engines + URI map → data plane; signals, reload, shutdown.

One balancer process holds one ``Runtime`` at a time (runtime.py: the loaded WorkersConfig, the
URI map and an lb engine per balancing worker). A reload builds a new Runtime — carrying over
the state and counters of members whose configuration did not change — and swaps it in with
one assignment; requests in flight keep the plans they started with. The process start (which
role, what the Balancer is wired with) is launch.py's.

Signals: SIGHUP reloads both files and the TLS certificates (an invalid file or certificate
is rejected with its errors and the old one stays live; TLS connections in flight keep
theirs); SIGUSR1 reopens the access log (logrotate's postrotate); SIGTERM/SIGINT stop
accepting, drain requests in flight for up to ``worker.shutdown_timeout`` seconds and exit 0.
The URI map file is also re-read when its mtime
changes, checked every ``worker.mount_reload`` seconds (mod_jk's JkMountFileReload).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from balancer.access_log import AccessLog
from balancer.cluster_view import ClusterView
from balancer.config import ConfigError
from balancer.config.model import MemberConfig, WorkersConfig
from balancer.dataplane import LocalResponse, ProxyServer, ProxyTo, Request, RouteDecision
from balancer.dataplane.ajp_fields import split_host
from balancer.dataplane.answers import RouteAnswers
from balancer.dataplane.tls import TlsSettings, TlsStats
from balancer.dataplane.tls_listener import Terminator
from balancer.dynamic import DynamicLbs
from balancer.health_monitor import HealthMonitor
from balancer.lb.shm import ProcessRow
from balancer.lb.state import LOCAL, LbState
from balancer.mounts import Mapped
from balancer.runtime import Runtime, RuntimeLoader, StartupError, file_mtime, limits_for
from balancer.status.tls_view import TlsView, tls_view
from balancer.status.traffic_metrics import TrafficCollector
from balancer.status_wiring import StatusEndpoints
from balancer.uri import Rejected
from pyjk import __version__
from pyjk.hotpath import describe
from pyjk.metrics import standard_collectors

log = logging.getLogger("pyjk.balancer")

VERSION = f"pyjk/{__version__}"
MAINTAIN_TICK = 1.0  # s; engines run their maintenance only once worker.maintain has passed
# route() remembers its answer for this many raw paths of up to ANSWER_CACHE_PATH bytes
ANSWER_CACHE_SIZE = 4096
ANSWER_CACHE_PATH = 256


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
        dynamic_members: Callable[[WorkersConfig], Mapping[str, Sequence[MemberConfig]]]
        | None = None,
        ticket_secret: Callable[[], tuple[int, bytes] | None] | None = None,
    ) -> None:
        self.state = state  # where the engines keep their numbers (shared with --processes)
        # Set by the supervisor (balancer/supervisor.py): runs after every successful reload,
        # with the line that would be logged.
        self.on_reload: Callable[[str], None] | None = None
        # Set by the supervisor: runs after a dynamic lb's members changed.
        self.on_members: Callable[[], None] | None = None
        # Set by a data-plane process of a supervisor: SIGHUP follows the supervisor's
        # generation instead of reading the files.
        self.on_sighup: Callable[[], None] | None = None
        self.control = False  # running health checks, maintenance, listeners (start_control)
        self._routed = 0  # requests route() saw (``requests`` adds those answered by the table)
        # route()'s answers by raw path, asked first by the data plane (answers.py); emptied
        # whenever ``runtime`` is assigned
        self.answers = RouteAnswers(
            self.route, limit=ANSWER_CACHE_SIZE, path_limit=ANSWER_CACHE_PATH
        )
        # Set by a data-plane process of a supervisor: a swap may have dropped members; it
        # folds their answers later (dataplane_process.DeferredFold) instead of at once.
        self.on_departed: Callable[[], None] | None = None
        # Set by a balancer pair (balancer/standby.py): runs once the listening sockets are
        # closed at a stop, before the drain (the standby may take the ports at once).
        self.on_stopping: Callable[[], None] | None = None
        # SIGTERM/SIGINT (not a stop the balancer pair asked for, a step-down): pair_run.py
        self.on_term: Callable[[], None] | None = None
        # Set by a data-plane process of a supervisor: the TLS counters of all processes.
        self.tls_stats: Callable[[], TlsStats] | None = None
        self.workers_path = workers_path
        self.mounts_path = mounts_path
        self.listens = [(host, port, tls) for host, port, tls in listen]  # tls: https://
        self.listen = self.listens[0][:2]
        self.access_log = access_log
        self.dynamic = DynamicLbs(self._members_changed)  # worker.<lb>.cluster listeners
        # A data-plane process of a supervisor loads the text and the dynamic members the
        # supervisor checked and published for all (it reads no file, hears no cluster).
        self.loader = RuntimeLoader(
            workers_path, mounts_path, dynamic_members or self.dynamic.members, state, config_texts
        )
        self.runtime = self.load(previous=None)
        # TlsError (a certificate that cannot be served) stops the start, as a config error;
        # after the load: a data-plane process's ticket ratchet is the supervisor's
        secret = ticket_secret() if ticket_secret is not None else None
        self.tls = Terminator(tls, ticket_secret=secret) if tls is not None else None
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
            self.answers,
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
        self.answers.plain_to_router = self.redirect_port is not None
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

    def load(self, previous: Runtime | None) -> Runtime:
        """A new Runtime from the configuration's text; raises ConfigError or StartupError."""
        return self.loader.load(previous)

    @property
    def runtime(self) -> Runtime:
        return self._runtime

    @runtime.setter
    def runtime(self, runtime: Runtime) -> None:
        # A new runtime has other rules and engines: no answer of the old one may be served.
        self._runtime = runtime
        self.answers.clear()

    @property
    def requests(self) -> int:
        """Requests routed since the start (a data-plane process's row)."""
        return self._routed + self.answers.hits

    @property
    def loaded_texts(self) -> tuple[str, str]:
        return self.loader.loaded_texts

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
        if self.control:
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
        if self.on_departed is not None:
            self.on_departed()  # a data-plane process folds once every process passed it
        else:
            self.fold_departed()

    def fold_departed(self) -> None:
        """Departed members' answers into their lb's member-less entry (``TrafficStats``)."""
        self.proxy.stats.fold_departed(self._members_now())

    def _members_changed(self, lb_name: str) -> None:
        """A dynamic lb's members changed: swap in its rebuilt engine (balancer.dynamic)."""
        self.log_changes()  # the new engine starts with an empty change queue
        runtime = self.runtime
        engine = self.dynamic.rebuild(runtime.workers, runtime.engines, lb_name, time.monotonic())
        if engine is not None:
            self._swap(replace(runtime, engines={**runtime.engines, lb_name: engine}))
            if self.on_members is not None:
                self.on_members()

    def _configure_cluster_view(self) -> None:
        settings = self.runtime.workers.balancer
        self.cluster.update(
            self.runtime.engines, settings.cluster_manager_token, settings.cluster_poll_interval
        )

    # --- per request ------------------------------------------------------------------------

    def route(self, req: Request) -> RouteDecision:
        """The router: asked by the data plane through ``self.answers`` when that table has no
        answer for the request's path."""
        self._routed += 1
        if self.redirect_port is not None and not req.secure:
            return https_redirect(req, self.redirect_port)
        runtime = self.runtime
        path = req.path
        decision = runtime.uri_map.match(path.decode("latin-1"))
        answer: RouteDecision
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
        # few paths, and a hit costs the data plane one dict lookup instead of this function,
        # decoding, the URI map's cache and a new ProxyTo.
        self.answers.remember(path, answer)
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
            (signal.SIGTERM, self.term),
            (signal.SIGINT, self.term),
            (signal.SIGUSR1, self.reopen_access_log),
        ):
            loop.add_signal_handler(sig, handler)
        if control:
            self.start_control()
        else:
            self._tasks.append(asyncio.create_task(self._log_changes(), name="state-log"))
        if self.access_log is not None:
            self._tasks.append(asyncio.create_task(self.access_log.run(), name="access-log"))
        if self.tls is not None:
            self._tasks.append(asyncio.create_task(self.tls.rotate(), name="tls-tickets"))
        await self._stopping.wait()
        self.proxy.stop_listening()
        if self.on_stopping is not None:
            self.on_stopping()
        grace = float(self.runtime.workers.balancer.shutdown_timeout)
        log.info("stopping: draining requests in flight for up to %.0fs", grace)
        await self.proxy.close(grace=grace)
        await self.stop_control()
        if self.access_log is not None:
            self.access_log.flush()
        log.info("stopped")

    def start_control(self) -> None:
        """Health checks, maintenance, the URI map watch, the cluster view's poll and the
        dynamic lbs' cluster listeners: once per balancer (its supervisor with N processes)."""
        self.control = True
        self.health.update(self.runtime.engines)
        self.health.start()
        self.cluster.start()
        self.dynamic.sync(self.runtime.workers, self.runtime.engines)
        self._tasks += [
            asyncio.create_task(self._maintenance(), name="maintenance"),
            asyncio.create_task(self._watch_mounts(), name="mount-reload"),
        ]

    async def stop_control(self) -> None:
        self.control = False
        await self.health.stop()
        await self.cluster.stop()
        await self.dynamic.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    def stop(self) -> None:
        self._stopping.set()

    def term(self) -> None:
        """SIGTERM/SIGINT: stop, and say so (a step-down's drain then ends in an exit)."""
        if self.on_term is not None:
            self.on_term()
        self._stopping.set()

    def process_row(self, slot: int, started: float, generation: int) -> ProcessRow:
        """This process as the shared table's process rows show it."""
        return ProcessRow(
            slot, os.getpid(), started, len(self.proxy.connections), self.requests, generation
        )

    def _sighup(self) -> None:
        if self.on_sighup is not None:
            self.on_sighup()
        else:
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
            mtime = file_mtime(self.mounts_path)
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
