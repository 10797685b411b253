"""Cluster singletons for app code: daemons and scheduled jobs that run on one node at a time.

An app factory registers them; the worker runs each on the node the cluster elects
(replication/election.py, run by replication/singleton.py) and moves it when that node dies
or stops. Without `--cluster` the one node runs them all. ::

    async def tick(ctx: SingletonContext) -> None:       # a long-running daemon
        while ctx.active:
            ...
            await ctx.sleep(1.0)

    def make_app() -> web.Application:
        app = web.Application()
        singleton(app, "counter", tick, stop=None)

        @job(app, "report", every=60)                    # run every 60 s on one node
        async def report(ctx: SingletonContext) -> None: ...

        return app

`ctx.epoch` is the election's fencing token: it only grows from one owner to the next, so a
service that stores it beside its data can refuse a write from an older owner. `ctx.active`
turns False (and `ctx.sleep` returns early) the moment this node's ownership ends, before the
`stop` callback runs; the daemon's task is cancelled after `stop` returns. A daemon that raises
is restarted on the same node with backoff and counted; a job that raises runs again at its
next period. See docs/worker.md.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from .names import NAME_RE


class SingletonContext:
    """What a running singleton knows: its name, its epoch, this node's route, whether it
    still owns the name."""

    def __init__(self, name: str, epoch: int, route: str) -> None:
        self.name, self.epoch, self.route = name, epoch, route
        self._ended = asyncio.Event()

    @property
    def active(self) -> bool:
        return not self._ended.is_set()

    async def sleep(self, seconds: float) -> bool:
        """Sleep up to `seconds`; False (at once) when the ownership ended meanwhile."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._ended.wait()
        return self.active

    def end(self) -> None:
        self._ended.set()


Callback = Callable[[SingletonContext], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class SingletonSpec:
    name: str
    start: Callback  # the daemon (runs until it returns or the ownership ends), or the job
    stop: Callback | None = None  # called when the ownership ends, before the daemon's cancel
    every: float | None = None  # a job: `start` runs every `every` seconds
    sticky: bool = False  # the owner keeps it while alive, even when a preferred node joins


SINGLETONS: web.AppKey[list[SingletonSpec]] = web.AppKey("pyjk.singletons", list)


def _register(app: web.Application, spec: SingletonSpec) -> None:
    if not NAME_RE.fullmatch(spec.name):
        raise ValueError(f"singleton name {spec.name!r}: expected {NAME_RE.pattern}")
    if spec.every is not None and not spec.every > 0:
        raise ValueError(f"singleton {spec.name!r}: every= must be > 0 seconds")
    specs = app.setdefault(SINGLETONS, [])
    if any(s.name == spec.name for s in specs):
        raise ValueError(f"singleton {spec.name!r} is registered twice")
    specs.append(spec)


def singleton(
    app: web.Application, name: str, start: Callback, stop: Callback | None = None
) -> None:
    """Run the daemon `start(ctx)` on the one node that owns `name`."""
    _register(app, SingletonSpec(name, start, stop))


def job(app: web.Application, name: str, *, every: float) -> Callable[[Callback], Callback]:
    """Decorator: run the function every `every` seconds on the one node that owns `name`."""

    def register(fn: Callback) -> Callback:
        _register(app, SingletonSpec(name, fn, None, float(every)))
        return fn

    return register
