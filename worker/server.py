"""Running a worker: load the app, enable sessions, serve, sweep expired sessions, stop cleanly.

The I/O shell around the pure store: `serve()` binds the listener, answers `/-/ready`, runs the
periodic expiry sweep, and on SIGTERM/SIGINT holds readiness at 503 (for `drain` seconds, if
set), stops accepting, lets in-flight requests finish (up to `shutdown_timeout`) and returns 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import logging
import os
import secrets
import signal
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .delta import SessionDelta
from .failover import failover_spec
from .metrics import install_metrics
from .middleware import SESSIONS, SessionManager, setup_sessions
from .readiness import Readiness, install_ready_endpoint
from .sessions import DEFAULT_MAX_ACTIVE_SESSIONS, DEFAULT_MAX_INACTIVE_INTERVAL, SessionStore
from .singletons import SINGLETONS

log = logging.getLogger("pyjk.worker")

DEFAULT_APP = "worker.demo:create_app"


@dataclass(frozen=True)
class WorkerOptions:
    route: str
    host: str = "127.0.0.1"
    port: int = 8101
    app: str = DEFAULT_APP
    cookie_name: str = "JSESSIONID"
    max_inactive: float = DEFAULT_MAX_INACTIVE_INTERVAL
    sweep_interval: float = 30.0
    shutdown_timeout: float = 30.0
    drain: float = 0.0  # seconds to keep answering (readiness 503) before closing the listener
    cluster: str | None = None  # path of a cluster.toml: join that cluster and replicate
    lbfactor: int = 1  # advertised in heartbeats, for balancers with a dynamic lb
    max_active_sessions: int = DEFAULT_MAX_ACTIVE_SESSIONS  # replicas included
    log_format: str = "text"  # the CLI's --log-format (text or json)
    failover: str | None = None  # a failover group: serve only while this node is its master


class WorkerSetupError(Exception):
    """The worker cannot start: a bad `--app`, or settings the app or sessions refuse."""


async def load_app(spec: str) -> web.Application:
    """Import `pkg.module:factory`, call it (sync or async) and check what it returns."""
    module_name, colon, attr = spec.partition(":")
    if not colon or not module_name or not attr:
        raise WorkerSetupError(f"--app {spec!r}: expected 'package.module:factory'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise WorkerSetupError(f"--app {spec!r}: cannot import {module_name!r}: {exc}") from exc
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise WorkerSetupError(f"--app {spec!r}: {module_name} has no callable {attr!r}")
    app = factory()
    if inspect.isawaitable(app):
        app = await app
    if not isinstance(app, web.Application):
        raise WorkerSetupError(
            f"--app {spec!r}: the factory returned {type(app).__name__}, not web.Application"
        )
    return app


def prepare_app(app: web.Application, options: WorkerOptions) -> tuple[SessionManager, Readiness]:
    """Sessions (unless the app set them up itself) and the `/-/ready` endpoint."""
    manager = app.get(SESSIONS)
    if manager is None:
        try:
            store = SessionStore(
                options.route,
                max_inactive_interval=options.max_inactive,
                max_active_sessions=options.max_active_sessions,
            )
            manager = setup_sessions(
                app, route=options.route, store=store, cookie_name=options.cookie_name
            )
        except ValueError as exc:
            raise WorkerSetupError(str(exc)) from exc
    elif manager.route != options.route:
        raise WorkerSetupError(
            f"the app set up sessions for route {manager.route!r}, but --route is {options.route!r}"
        )
    readiness = Readiness()
    install_ready_endpoint(app, readiness)
    return manager, readiness


async def sweep_once(manager: SessionManager) -> list[str]:
    """Expire idle sessions; the expiry of sessions owned here is shipped as an invalidation."""
    now = manager.clock()
    expired = manager.store.expire(now)
    for session_id in expired:
        if session_id.partition(".")[2] == manager.route:
            try:
                await manager.sink(SessionDelta(session_id, now, invalidated=True))
            except Exception:
                log.exception("session delta sink failed id=%s", session_id)
    if expired:
        log.info("sessions expired count=%d", len(expired))
    manager.log_refusals(now, manager.full_log.due(now))  # the rest of a burst of refusals
    return expired


async def _sweep_forever(manager: SessionManager, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        await sweep_once(manager)


def _backend(options: WorkerOptions, manager: SessionManager, readiness: Readiness) -> Any:
    """The SessionBackend (worker/backend.py) `--cluster` names: the built-in cluster, or
    the Redis store for `[store] kind = "redis"` (imported here: replication builds on worker)."""
    from balancer.config.errors import ConfigError
    from replication.config import load_cluster_config
    from replication.keyfile import KeyFileError

    assert options.cluster is not None
    try:
        config = load_cluster_config(options.cluster)
        if config.store_kind == "redis":
            from replication.redis_store import RedisStore, StoreSetupError

            try:
                return RedisStore(config, manager, readiness)
            except StoreSetupError as exc:
                raise WorkerSetupError(f"--cluster {options.cluster}: {exc}") from exc
        from replication.node import ClusterNode

        # PYJK_CLUSTER_FAULTS=1 adds the loopback-only fault switch the cluster tests use
        faults = os.environ.get("PYJK_CLUSTER_FAULTS") == "1"
        return ClusterNode(config, manager, readiness, faults_enabled=faults)
    except (ConfigError, KeyFileError) as exc:
        raise WorkerSetupError(f"--cluster {options.cluster}: {exc}") from exc


def _local_singletons(app: web.Application, route: str) -> Any:
    """Without a cluster this node is the only candidate: it runs every singleton at once."""
    from replication.singleton import SingletonRunner

    specs = app.get(SINGLETONS)
    if not specs:
        return None
    return SingletonRunner(specs, member_id=secrets.token_hex(16), route=route,
                           started=time.time())  # fmt: skip


async def serve(options: WorkerOptions) -> int:
    app = await load_app(options.app)
    manager, readiness = prepare_app(app, options)
    node = local = None
    if options.failover is not None:
        if options.cluster is None:
            raise WorkerSetupError("--failover needs --cluster (the group elects over it)")
        app.setdefault(SINGLETONS, []).append(failover_spec(options.failover, readiness))
    if options.cluster is not None:
        node = _backend(options, manager, readiness)
        try:
            node.install(app)  # before the app starts: routes freeze then
        except ValueError as exc:  # the backend refuses what the app asks of it
            raise WorkerSetupError(f"--cluster {options.cluster}: {exc}") from exc
        install_metrics(app, manager, node.collectors(), node.manager_token)
    else:
        install_metrics(app, manager)
        local = _local_singletons(app, options.route)
    runner = web.AppRunner(app, shutdown_timeout=options.shutdown_timeout, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, options.host, options.port)
        await site.start()
        if node is not None:
            host, port = runner.addresses[0][:2]  # the port actually bound (--listen HOST:0)
            node.advertise_http(host, port, options.lbfactor)
            try:
                await node.start()
            except OSError as exc:  # e.g. the multicast join or the receiver port refused
                raise WorkerSetupError(f"--cluster {options.cluster}: cannot start: {exc}") from exc
    except BaseException:
        await runner.cleanup()
        if node is not None:
            await node.stop()
        raise
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    sweeper = asyncio.create_task(_sweep_forever(manager, options.sweep_interval))
    if local is not None:
        local.start()
    host, port = runner.addresses[0][:2]
    # logged (stderr) rather than printed: with --log-format json every line is one object
    log.info("worker listening route=%s url=http://%s:%d", options.route, host, port)
    try:
        await stop.wait()
        log.info("worker stopping route=%s", options.route)
        if node is not None:  # balancers stop sending new sessions at once; sticky ones drain
            node.announce_leaving()
        readiness.hold("shutting-down")
        # singletons first: another node takes them over while requests drain here
        if node is not None:
            await node.release_singletons()
        elif local is not None:
            await local.close()
        if options.drain > 0:  # let the balancer's health probe see the 503 first
            await asyncio.sleep(options.drain)
    finally:
        if local is not None:  # an abnormal exit too (an error, a cancel): their stop runs
            await local.close()
        sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sweeper
        await runner.cleanup()  # stop accepting, finish in-flight requests, close
        if node is not None:  # after the requests: their deltas still need the cluster
            await node.stop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    return 0
