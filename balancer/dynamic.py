"""Dynamic lbs in the running balancer: one cluster listener per ``worker.<lb>.cluster``.

An lb's members are "static ∪ dynamic": the static ones from workers.properties, then those
its cluster brought (``balancer.cluster_members``, fed by ``balancer.cluster_source``). A change
of the dynamic set is applied like a reload of that one lb: ``LbEngine.from_previous`` keeps
every unchanged member's state and counters, and members announcing that they leave are
disabled (activation D) on the new engine.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from balancer.cluster_members import members_document, members_from_document
from balancer.cluster_source import ClusterSource, signature
from balancer.config.model import Activation, LbConfig, MemberConfig, WorkersConfig
from balancer.lb.engine import LbEngine

log = logging.getLogger("pyjk.balancer")


class DynamicLbs:
    def __init__(self, on_change: Callable[[str], None]) -> None:
        self.on_change = on_change  # lb name: its members changed, rebuild() it
        self.sources: dict[str, ClusterSource] = {}  # by lb name
        self._tasks: set[asyncio.Future[None]] = set()

    def members(self, workers: WorkersConfig) -> dict[str, tuple[MemberConfig, ...]]:
        """The dynamic members of each lb that still listens to the same cluster."""
        return {
            name: source.pool.members()
            for name, source in self.sources.items()
            if name in workers.lbs and workers.lbs[name].cluster == source.config.source
        }

    def document(self, workers: WorkersConfig) -> dict[str, list[list[Any]]]:
        """``members()`` as plain data, for the supervisor to publish (see ``published``)."""
        return members_document(self.members(workers))

    def sync(self, workers: WorkersConfig, engines: Mapping[str, LbEngine]) -> None:
        """One listener per dynamic lb: kept when its cluster settings are unchanged (its
        static members updated), replaced when they changed, stopped when the lb is gone.
        Called at start (inside the event loop) and after each reload."""
        wanted = {n: lb for n, lb in workers.lbs.items() if lb.cluster and n in engines}
        for name in list(self.sources):
            source, lb = self.sources[name], wanted.get(name)
            template = _template(workers, lb) if lb is not None else None
            if lb is not None and source.signature == signature(lb, template):
                source.pool.configure(
                    allow=lb.cluster_allow, template=template, static=workers.lb_members(lb)
                )
                continue
            del self.sources[name]
            self._background(source.stop())
        for name, lb in wanted.items():
            if name in self.sources:
                continue
            try:
                source = ClusterSource(
                    lb, _template(workers, lb), workers.lb_members(lb), self.on_change
                )
            except Exception as exc:  # the file was checked at load; e.g. an unreadable key
                log.error("lb=%s cannot listen to cluster %s: %s", name, lb.cluster, exc)
                continue
            self.sources[name] = source
            self._background(source.start())

    def rebuild(
        self, workers: WorkersConfig, engines: Mapping[str, LbEngine], lb_name: str, now: float
    ) -> LbEngine | None:
        """The lb's engine with its current members; None when it is no dynamic lb now."""
        source = self.sources.get(lb_name)
        lb = workers.lbs.get(lb_name)
        old = engines.get(lb_name)
        if source is None or lb is None or old is None:
            return None
        members = workers.lb_members(lb) + source.pool.members()
        engine = LbEngine.from_previous(old, lb, members, workers.maintain, now)
        for name in source.pool.leaving():
            member = engine.member(name)
            if member.activation is Activation.ACTIVE:
                member.activation = Activation.DISABLED
        return engine

    async def stop(self) -> None:
        for source in self.sources.values():
            await source.stop()
        self.sources.clear()
        for task in list(self._tasks):
            await asyncio.gather(task, return_exceptions=True)

    def _background(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Future[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("dynamic lb listener failed: %s", exc)


def published(doc: object, workers: WorkersConfig) -> dict[str, tuple[MemberConfig, ...]]:
    """A data-plane process's dynamic members: those its supervisor heard and published
    (``DynamicLbs.document``), for the lbs that are dynamic in ``workers``. The process
    listens to no cluster itself, so every process has the same members at one generation."""
    templates = {name: _template(workers, lb) for name, lb in workers.lbs.items() if lb.cluster}
    return members_from_document(doc, templates)


def _template(workers: WorkersConfig, lb: LbConfig) -> MemberConfig | None:
    return workers.members.get(lb.cluster_template) if lb.cluster_template else None
