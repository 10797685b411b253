"""Wiring: configuration → engines + URI map → data plane; signals, reload, shutdown.

One balancer process holds one ``Runtime`` at a time: the loaded WorkersConfig, the URI map and
an lb engine per balancing worker (a plain ``http`` worker in worker.list gets a one-member
engine, so every forward goes through the same attempt loop). A reload builds a new Runtime
— carrying over the state and counters of members whose configuration did not change — and
swaps it in with one assignment; requests in flight keep the plans they started with.

Signals: SIGUSR1 reopens the access log (logrotate's postrotate); SIGHUP reloads both files
(an invalid file is rejected with its errors and the old configuration stays live);
SIGTERM/SIGINT stop accepting, drain requests in flight for up to ``worker.shutdown_timeout``
seconds and exit 0. The URI map file is also re-read when its mtime
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
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from balancer.access_log import AccessLog
from balancer.cluster_view import ClusterView
from balancer.config import ConfigError, load_workers
from balancer.config.errors import Problem
from balancer.config.model import LbConfig, MemberConfig, WorkersConfig
from balancer.dataplane import Limits, LocalResponse, ProxyServer, ProxyTo, Request, RouteDecision
from balancer.health import HealthMonitor
from balancer.lb.engine import LbEngine
from balancer.mounts import Mapped, UriMap, parse_mounts
from balancer.status.traffic_metrics import TrafficCollector
from balancer.status_wiring import StatusEndpoints
from balancer.uri import Rejected
from pyjk import __version__
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
    workers: WorkersConfig, previous: Mapping[str, LbEngine], now: float
) -> dict[str, LbEngine]:
    engines: dict[str, LbEngine] = {}
    for name in workers.worker_list:
        if name in workers.lbs:
            lb = workers.lbs[name]
            members = workers.lb_members(lb)
        elif name in workers.members:
            lb = single_member_lb(workers.members[name])
            members = (workers.members[name],)
        else:
            continue  # a status worker
        old = previous.get(name)
        if old is None:
            engines[name] = LbEngine(lb, members, workers.maintain, now)
        else:
            engines[name] = LbEngine.from_previous(old, lb, members, workers.maintain, now)
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
        listen: tuple[str, int],
        access_log: AccessLog | None = None,
    ) -> None:
        self.workers_path = workers_path
        self.mounts_path = mounts_path
        self.listen = listen
        self.access_log = access_log
        self.runtime = self.load(previous=None)
        self._answers: dict[bytes, RouteDecision] = {}  # route()'s, by raw path
        self._answers_for = self.runtime
        self.cluster = ClusterView()
        self._configure_cluster_view()
        self.status = StatusEndpoints(VERSION, listen)
        self.status.cluster_view = self.cluster.counts
        self.status.update(self.runtime)
        self.health = HealthMonitor()
        self.proxy = ProxyServer(
            self.route,
            limits_for(self.runtime.workers),
            trusted_proxies=self.runtime.workers.balancer.trusted_proxies,
            access_log=access_log.record if access_log else None,
        )
        self.status.pool_stats = self._pool_stats
        self.status.is_trusted = self.proxy.is_trusted
        self.status.collectors = (
            TrafficCollector(self.proxy.stats, lambda: len(self.proxy.connections)),
            *standard_collectors(),
        )
        self.status.update(self.runtime)  # again: the status workers take the collectors
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    # --- configuration ----------------------------------------------------------------------

    def load(self, previous: Runtime | None) -> Runtime:
        """Read both files into a new Runtime; raises ConfigError or StartupError."""
        workers, warnings = load_workers(self.workers_path, os.environ)
        for w in warnings:
            log.warning("config warning: %s", w)
        mounts_text = ""
        mounts_file = "<no uriworkermap>"
        if self.mounts_path is not None:
            try:
                mounts_text = self.mounts_path.read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigError(
                    [Problem(str(self.mounts_path), None, None, f"cannot read: {exc.strerror}")]
                ) from exc
            mounts_file = str(self.mounts_path)
        uri_map, mount_warnings = parse_mounts(
            mounts_text, mounts_file, workers, environ=os.environ
        )
        for w in mount_warnings:
            log.warning("config warning: %s", w)
        now = time.monotonic()
        engines = build_engines(workers, previous.engines if previous else {}, now)
        return Runtime(workers, uri_map, engines, _mtime(self.mounts_path))

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
        self.runtime = runtime
        self.status.update(runtime)
        self.health.update(runtime.engines)
        self._configure_cluster_view()
        self.proxy.prune_pools(
            m for e in runtime.engines.values() for m in (x.config for x in e.members)
        )
        added = set(runtime.engines) - set(old.engines)
        removed = set(old.engines) - set(runtime.engines)
        log.info(
            "reloaded (%s): workers=%s added=%s removed=%s mounts=%d",
            reason,
            ",".join(runtime.workers.worker_list),
            ",".join(sorted(added)) or "-",
            ",".join(sorted(removed)) or "-",
            sum(1 for r in runtime.uri_map.rules if r.enabled),
        )
        return True

    def _configure_cluster_view(self) -> None:
        settings = self.runtime.workers.balancer
        self.cluster.update(
            self.runtime.engines, settings.cluster_manager_token, settings.cluster_poll_interval
        )

    # --- per request ------------------------------------------------------------------------

    def route(self, req: Request) -> RouteDecision:
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

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        host, port = self.listen
        await self.proxy.start(host, port)
        log.info("listening on %s:%d (%s)", host, port, VERSION)
        for sig, handler in (
            (signal.SIGHUP, lambda: self.reload("SIGHUP")),
            (signal.SIGTERM, self._stopping.set),
            (signal.SIGINT, self._stopping.set),
            (signal.SIGUSR1, self.reopen_access_log),
        ):
            loop.add_signal_handler(sig, handler)
        self.health.update(self.runtime.engines)
        self.health.start()
        self.cluster.start()
        self._tasks = [
            asyncio.create_task(self._maintenance(), name="maintenance"),
            asyncio.create_task(self._watch_mounts(), name="mount-reload"),
        ]
        if self.access_log is not None:
            self._tasks.append(asyncio.create_task(self.access_log.run(), name="access-log"))
        await self._stopping.wait()
        grace = float(self.runtime.workers.balancer.shutdown_timeout)
        log.info("stopping: draining requests in flight for up to %.0fs", grace)
        await self.proxy.close(grace=grace)
        await self.health.stop()
        await self.cluster.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.access_log is not None:
            self.access_log.flush()
        log.info("stopped")

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


def run(args: argparse.Namespace) -> int:
    """``pyjk-balancer`` without --check."""
    configure_logging(args.log_level, args.log_format)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; fall back loudly
        log.warning("uvloop is not installed: running on the default asyncio loop (slower)")
        uvloop = None  # type: ignore[assignment]
    access_format = args.access_log_format or ("json" if args.log_format == "json" else "combined")
    access_log = AccessLog.open(args.access_log, access_format) if args.access_log else None

    async def main() -> int:
        try:
            balancer = Balancer(args.workers, args.mounts, args.listen, access_log)
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
            await balancer.serve()
        except OSError as exc:
            log.error("cannot listen on %s:%d: %s", *args.listen, exc.strerror or exc)
            return 1
        return 0

    if uvloop is not None:
        return uvloop.run(main())
    return asyncio.run(main())
