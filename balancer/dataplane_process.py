"""A data-plane process of a supervisor (``--processes N``): what it reads, what it publishes.

It reads, never decides again, what the supervisor decided once for all: the configuration
text of each generation, the dynamic lbs' members the supervisor heard from the cluster (the
process joins no multicast group), whether a generation renews the TLS contexts (a SIGHUP
does; a URI map change or a member joining does not, so a session ticket stays good), and the
cluster view's Live column. It publishes its process row every ``FOLLOW_INTERVAL`` and its
counters' document when they changed (balancer/process_totals.py).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import os
import signal
import time
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from balancer.cluster_view import PublishedView
from balancer.config.model import MemberConfig, WorkersConfig
from balancer.dynamic import published
from balancer.lb.shm import MAX_PROCESSES, ProcessRow, Table
from balancer.process_totals import AllProcessesTraffic, Totals
from balancer.status.traffic_metrics import TrafficCollector

if TYPE_CHECKING:  # server.py imports the supervisor, which imports this module
    from balancer.server import Balancer

log = logging.getLogger("pyjk.balancer")

FOLLOW_INTERVAL = 0.05  # s: refresh of the process row; new-generation and scrape checks
SUPERVISOR_SLOT = MAX_PROCESSES  # the last slot: the supervisor's busy counts, its document


def control_document(dynamic: Mapping[str, Any], tls_epoch: int) -> str:
    """What the supervisor publishes with a generation besides the files: the dynamic
    members, its SIGHUP count."""
    return json.dumps({"dynamic": dynamic, "tls": tls_epoch}, sort_keys=True)


def tickets_part(period: int, secret: bytes) -> dict[str, Any]:
    """The supervisor's document's part with the TLS session ticket ratchet (republished
    every period: balancer/dataplane/tls_tickets.py)."""
    return {"tickets": {"period": period, "secret": base64.b64encode(secret).decode()}}


def read_tickets(blob: bytes) -> tuple[int, bytes] | None:
    """``(period, secret)`` from the supervisor's document; None when absent or malformed."""
    try:
        part = json.loads(blob or b"{}")["tickets"]
        period, secret = part["period"], base64.b64decode(part["secret"], validate=True)
    except (ValueError, KeyError, TypeError, binascii.Error):
        return None
    return (period, secret) if isinstance(period, int) and len(secret) == 32 else None


def serve_part(serve: bool) -> dict[str, Any]:
    """The supervisor's document's part that lets its data-plane processes accept: false
    while a standby waits (they are started and loaded, warm, but bind and accept nothing),
    true once it serves (``DataPlaneProcess.wait_turn``)."""
    return {"serve": serve}


def read_serve(blob: bytes) -> bool:
    """``serve_part`` in the supervisor's document; False before it wrote one."""
    try:
        doc = json.loads(blob or b"{}")
    except ValueError:
        return False
    return isinstance(doc, dict) and doc.get("serve") is True


class EngineGenerations:
    """The generation each engine this process routed with was last current in, so that its
    row can say which older generations' member objects exchanges in flight still write
    (``ProcessRow.holds``; the supervisor reuses a freed record only once none does)."""

    def __init__(self) -> None:
        self._of: dict[int, tuple[object, int]] = {}  # id(engine) -> (engine, generation)

    def serve(self, engines: Iterable[object], generation: int) -> None:
        for engine in engines:
            self._of[id(engine)] = (engine, generation)

    def holds(self, current: Iterable[object], in_flight: Iterable[object]) -> int:
        """The oldest generation of an engine in flight that is no longer current (0: none).
        Entries of engines neither current nor in flight are forgotten."""
        keep = {id(e) for e in current}
        if keep.issuperset(self._of):
            return 0  # no older engine left: the connections are not even looked at
        oldest = 0
        for engine in in_flight:
            key = id(engine)
            if key in keep:
                continue
            keep.add(key)
            # an engine never recorded: as old as can be (it holds every freed record)
            generation = self._of[key][1] if key in self._of else 1
            oldest = generation if oldest == 0 else min(oldest, generation)
        self._of = {k: v for k, v in self._of.items() if k in keep}
        return oldest


class DeferredFold:
    """When a process may fold departed members' answers into their lb's entry: only once
    every process serves the generation that dropped them. Folded earlier, a scrape answered
    by a process still on the older generation (the member still configured there) summed
    that member's answers of the other processes no more: its counter went backwards."""

    def __init__(self) -> None:
        self.after = 0  # the generation that dropped members; 0: nothing to fold

    def departed(self, generation: int) -> None:
        self.after = max(self.after, generation)

    def due(self, rows: Iterable[ProcessRow]) -> bool:
        """Whether to fold now (then it is not due again until the next ``departed``)."""
        if self.after and all(r.generation >= self.after for r in rows):
            self.after = 0
            return True
        return False


class DataPlaneProcess:
    def __init__(self, table: Table, slot: int) -> None:
        self.table, self.slot = table, slot
        self.generation = 0  # the configuration generation this process serves
        self.reading = 0  # the generation of the text read last
        self.control: dict[str, Any] = {}  # the control document of the text read last
        self.tls_epoch: object = None  # the supervisor's SIGHUP count this process's TLS has
        self.engines = EngineGenerations()
        self.fold = DeferredFold()

    # -- what Balancer reads through (server.py) -----------------------------------------------

    def config_texts(self) -> tuple[str, str]:
        """The text the supervisor published, never the files (they may have changed since)."""
        self.reading, workers, mounts, control = self.table.texts()
        try:
            doc = json.loads(control) if control else {}
        except ValueError:
            doc = {}
        self.control = doc if isinstance(doc, dict) else {}
        return workers, mounts

    def ticket_secret(self) -> tuple[int, bytes] | None:
        """The supervisor's ticket ratchet as last published: this process ratchets forward
        from it (it never gets an older period's secret)."""
        return read_tickets(self.table.blob(SUPERVISOR_SLOT))

    def dynamic_members(self, workers: WorkersConfig) -> dict[str, tuple[MemberConfig, ...]]:
        return published(self.control.get("dynamic"), workers)

    # -- running --------------------------------------------------------------------------------

    def _attach(self, balancer: Balancer) -> None:
        """Follow the supervisor's generations from now on (once: waiting, then serving)."""
        if balancer.on_sighup is not None:
            return
        self.generation = self.reading
        self.tls_epoch = self.control.get("tls")
        self.engines.serve(balancer.runtime.engines.values(), self.generation)
        balancer.on_reload = lambda summary: self._loaded(balancer, summary)
        balancer.on_departed = lambda: self.fold.departed(self.reading)
        balancer.on_sighup = lambda: self.catch_up(balancer)

    async def wait_turn(self, balancer: Balancer) -> bool:
        """Until the supervisor's document says serve (at once unless it is a waiting
        standby's): loaded and following generations (SIGHUP), its row written so the
        supervisor sees it, but no socket bound or accepted on. False when SIGTERM/SIGINT came
        first. Polled every FOLLOW_INTERVAL: the takeover waits at most that for it."""
        self._attach(balancer)
        if read_serve(self.table.blob(SUPERVISOR_SLOT)):
            return True
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()

        def stop() -> None:
            stopping.set()
            balancer.stop()  # one that lands between the go and serve()'s own handler

        for sig, handler in (
            (signal.SIGTERM, stop),
            (signal.SIGINT, stop),
            (signal.SIGHUP, lambda: self.catch_up(balancer)),
            (signal.SIGUSR1, balancer.reopen_access_log),
        ):
            loop.add_signal_handler(sig, handler)  # serve() installs its own over them
        log.info("slot=%d pid=%d waits (standby): loaded, accepts nothing", self.slot, os.getpid())
        started = time.time()
        while not stopping.is_set():
            self.catch_up(balancer)
            self.table.write_process(balancer.process_row(self.slot, started, self.generation))
            if read_serve(self.table.blob(SUPERVISOR_SLOT)):
                log.info("slot=%d pid=%d accepts (takeover)", self.slot, os.getpid())
                return True
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(FOLLOW_INTERVAL):
                    await stopping.wait()
        log.info("slot=%d pid=%d stopped while waiting", self.slot, os.getpid())
        return False

    async def run(self, balancer: Balancer, sockets: list[Any]) -> None:
        table, slot = self.table, self.slot
        self._attach(balancer)
        tls = balancer.tls
        self.totals = Totals(
            table, slot, balancer.proxy.stats, lambda: tls.stats if tls is not None else None
        )
        self.totals.inherit()
        if tls is not None:
            balancer.tls_stats = lambda: self.totals.tls(tls.stats)
        # /metrics shows the traffic of every process, and the connections open in all
        proxy = balancer.proxy

        def open_connections() -> int:
            others = sum(r.connections for r in table.processes() if r.slot != slot)
            return others + len(proxy.connections)

        balancer.status.collectors = tuple(
            AllProcessesTraffic(c, self.totals.traffic, open_connections)
            if isinstance(c, TrafficCollector)
            else c
            for c in balancer.status.collectors
        )
        view = PublishedView(lambda: table.blob(SUPERVISOR_SLOT))
        balancer.status.cluster_view = view.counts
        balancer.status.cluster_limits = view.limits
        balancer.status.rebuild(balancer.runtime)
        follow = asyncio.create_task(self._follow(balancer))
        try:
            await balancer.serve(sockets, control=False)
        finally:
            follow.cancel()

    def catch_up(self, balancer: Balancer) -> None:
        """Serve the supervisor's newest generation (its SIGHUP, or the follow loop's check);
        a reload that failed on a generation is not tried again."""
        if self.table.generation in (self.generation, self.reading):
            return
        balancer.reload(f"generation {self.table.generation}")
        epoch = self.control.get("tls")
        if balancer.tls is not None and epoch != self.tls_epoch:
            self.tls_epoch = epoch
            balancer.tls.reload()  # a bad pair keeps the running certificates

    def _loaded(self, balancer: Balancer, summary: str) -> None:
        # the supervisor logs "reloaded (...)" once every process serves the generation
        log.debug("%s", summary)
        log.info("slot=%d pid=%d serves generation %d", self.slot, os.getpid(), self.reading)
        self.generation = self.reading
        self.engines.serve(balancer.runtime.engines.values(), self.generation)

    def holds(self, balancer: Balancer) -> int:
        """``ProcessRow.holds``: the oldest generation exchanges in flight still plan with."""
        in_flight = (
            c.exchange.route.engine
            for c in balancer.proxy.connections
            if c.exchange is not None and c.exchange.route is not None
        )
        return self.engines.holds(balancer.runtime.engines.values(), in_flight)

    async def _follow(self, balancer: Balancer) -> None:
        """Publish this process's row and, when due, its document; catch up with a generation
        whose SIGHUP did not arrive."""
        started = time.time()
        warned = False
        while True:
            self.catch_up(balancer)
            row = balancer.process_row(self.slot, started, self.generation)
            self.table.write_process(replace(row, holds=self.holds(balancer)))
            if self.fold.after and self.fold.due(self.table.processes()):
                balancer.fold_departed()
            self.totals.tick(time.monotonic())
            if self.totals.too_big and not warned:
                warned = True
                log.warning("slot=%d counters not shared: the document is over its slot", self.slot)
            await asyncio.sleep(FOLLOW_INTERVAL)
