"""Live sessions per route, as the workers' cluster sees them (pyjk beyond mod_jk).

mod_jk estimates nothing about sessions: its "sessions" column counts requests that came without
a session id. pyjk workers that replicate (``--cluster``) answer ``GET /cluster-manager`` with
every member and the live sessions whose route names it; since every member holds every session,
one reachable member per lb is enough. The status page shows these counts as Live and marks a
disabled member with none left as drained, so an operator knows when a deploy may proceed.

``live_by_route`` is pure; ``ClusterView`` is the poller around it (control plane only: it runs
every ``worker.cluster_poll_interval`` seconds, never on the request path). With ``--processes
N`` only the supervisor polls; it publishes each round (``view_document``) and the data-plane
processes show what it published (``PublishedView``), so every process shows the same Live
column.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import aiohttp

from balancer.lb.engine import LbEngine

log = logging.getLogger("pyjk.balancer")

TIMEOUT = 1.0  # s per listing request


def live_by_route(listing: Mapping[str, Any]) -> dict[str, int]:
    """Route → live sessions from one ``/cluster-manager`` answer; malformed entries skipped."""
    out: dict[str, int] = {}
    members = listing.get("members")
    if not isinstance(members, list):
        return out
    for member in members:
        if not isinstance(member, dict):
            continue
        route, live = member.get("route"), member.get("live_sessions")
        if isinstance(route, str) and isinstance(live, int) and not isinstance(live, bool):
            out[route] = live
    return out


def sessions_limit(listing: Mapping[str, Any]) -> int | None:
    """The answering node's ``sessions_limit`` (max_active_sessions): with all-to-all
    replication every node holds every session, so it bounds the whole cluster."""
    limit = listing.get("sessions_limit")
    return limit if isinstance(limit, int) and not isinstance(limit, bool) else None


class ClusterView:
    """Polls one reachable member per lb; ``counts()`` is what the status worker reads."""

    def __init__(self, token: str = "", interval: float = 0.0) -> None:
        self.token = token
        self.interval = interval
        self.engines: Mapping[str, LbEngine] = {}
        self._counts: dict[str, int] | None = None
        self._limits: dict[str, int] = {}  # lb → sessions_limit of the member that answered
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._preferred: dict[str, tuple[str, int]] = {}  # lb → the member that answered last
        self.on_update: Callable[[], None] | None = None  # after each round (the supervisor's)

    def counts(self) -> Mapping[str, int] | None:
        """Route → live sessions, or None while nothing could be read (the page shows "-")."""
        return self._counts

    def limits(self) -> Mapping[str, int]:
        """Lb name → the cluster's sessions limit, for the lbs whose cluster answered."""
        return self._limits

    def update(self, engines: Mapping[str, LbEngine], token: str, interval: float) -> None:
        self.engines, self.token, self.interval = engines, token, interval

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="cluster-view")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _run(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT))
        while True:
            if self.interval <= 0:
                self._counts = None
                self._updated()
                await asyncio.sleep(1.0)
                continue
            merged: dict[str, int] = {}
            reached = False
            for lb, engine in list(self.engines.items()):
                counts = await self._read_one(lb, engine)
                if counts is not None:
                    reached = True
                    merged.update(counts)
            self._counts = merged if reached else None
            self._updated()
            await asyncio.sleep(self.interval)

    def _updated(self) -> None:
        if self.on_update is not None:
            self.on_update()

    async def _read_one(self, lb: str, engine: LbEngine) -> dict[str, int] | None:
        endpoints = [
            (m.config.host, m.config.port) for m in engine.members if m.config.type == "http"
        ]
        preferred = self._preferred.get(lb)
        for host, port in _preferred_first(endpoints, preferred):
            listing = await self._fetch(host, port)
            if listing is not None:
                self._preferred[lb] = (host, port)
                limit = sessions_limit(listing)
                if limit is None:
                    self._limits.pop(lb, None)
                else:
                    self._limits[lb] = limit
                return live_by_route(listing)
        self._limits.pop(lb, None)
        return None

    async def _fetch(self, host: str, port: int) -> Mapping[str, Any] | None:
        assert self._session is not None
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        url = f"http://{host}:{port}/cluster-manager"
        try:
            async with self._session.get(url, headers=headers) as resp:
                if resp.status != 200:
                    return None
                data = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None
        return data if isinstance(data, dict) else None


def view_document(view: ClusterView) -> bytes:
    """What a supervisor publishes after each round of its poll."""
    return json.dumps({"live": view.counts(), "limits": dict(view.limits())}).encode()


class PublishedView:
    """A data-plane process's cluster view: the supervisor's last round (``read`` returns
    ``view_document``'s bytes, b"" before the first), parsed once per change."""

    def __init__(self, read: Callable[[], bytes]) -> None:
        self.read = read
        self._raw = b""
        self._counts: dict[str, int] | None = None
        self._limits: dict[str, int] = {}

    def _refresh(self) -> None:
        raw = self.read()
        if raw == self._raw:
            return
        self._raw = raw
        try:
            doc = json.loads(raw)
            live, limits = doc["live"], doc["limits"]
            self._counts = None if live is None else {str(k): int(v) for k, v in live.items()}
            self._limits = {str(k): int(v) for k, v in limits.items()}
        except (ValueError, KeyError, TypeError, AttributeError):
            return  # keep the last good round

    def counts(self) -> Mapping[str, int] | None:
        self._refresh()
        return self._counts

    def limits(self) -> Mapping[str, int]:
        self._refresh()
        return self._limits


def _preferred_first(
    endpoints: Iterable[tuple[str, int]], preferred: tuple[str, int] | None
) -> list[tuple[str, int]]:
    items = list(dict.fromkeys(endpoints))
    if preferred in items:
        items.remove(preferred)
        items.insert(0, preferred)
    return items
