"""``--processes N``: a supervisor and N data-plane processes that share one lb state
(balancer/role.py decides which of them a process is).

The supervisor (nginx's master) reads and checks the configuration, binds the listening
sockets, lays out the shared lb table (balancer/lb/shm.py) in a ``memfd`` and starts N
data-plane processes — ``python -m balancer`` again, with ``--dataplane`` naming their process
slot and the inherited descriptors. It never proxies a request. It runs, once for all:
health checks, maintenance, the URI map watch, reloads, the dynamic lbs' cluster listeners and
the cluster view's poll. The data-plane processes (balancer/dataplane_process.py) accept,
route, forward and answer the status page; their engines read and write the shared records,
so weights, states, status-page edits and counters are one set for the whole balancer.

- A data-plane process that dies is reaped: its process row and its busy counts are cleared
  (no member stays busy because of it) and it is started again, at once, then with a backoff
  up to ``RESTART_MAX`` s while it keeps dying young.
- SIGHUP (or a changed URI map file) reloads in the supervisor first. An invalid file is
  rejected there and the configuration stays (a SIGHUP's TLS renewal still reaches every
  process, in a generation with the running text). A valid one bumps the table's configuration
  generation; each data-plane process sees the new generation within ``FOLLOW_INTERVAL`` s and
  loads the same text (its process row shows the generation it serves). A dynamic lb's
  members changing makes a generation too: it carries them, so every process has the same.
- SIGTERM/SIGINT: every data-plane process drains (``worker.shutdown_timeout``), then the
  supervisor exits. A data-plane process whose supervisor is gone gets SIGTERM (Linux
  ``PR_SET_PDEATHSIG``), so a ``kill -9`` of the supervisor leaves no orphans serving.

Accepting: ``--accept reuseport`` (the default) gives each process its own ``SO_REUSEPORT``
socket; the kernel hashes connections over them, evenly (measured: 47-53 % each of 50
keep-alive connections over 2 processes, bench/accept_spread.py), but the connections queued
on a dying process's socket are reset. With ``--accept inherit`` every process accepts on the
supervisor's sockets: one queue, nothing queued is lost when a process dies, but whichever
process wakes first takes a burst of connections (28-72 % measured), and keep-alive connections
stay where they landed. docs/benchmarks.md has the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from balancer.cluster_view import view_document
from balancer.dataplane.tls_tickets import period_of
from balancer.dataplane_process import (
    FOLLOW_INTERVAL,
    SUPERVISOR_SLOT,
    control_document,
    serve_part,
    tickets_part,
)
from balancer.lb.shm import MAX_PROCESSES, Table
from balancer.server import Balancer

if TYPE_CHECKING:  # role.py makes the supervisor
    from balancer.role import Role

log = logging.getLogger("pyjk.balancer")

ACCEPT_MODES = ("inherit", "reuseport")
RESTART_MIN = 0.1  # s before restarting a process that died
RESTART_MAX = 5.0  # s, the backoff's bound for a process that keeps dying young
ANNOUNCE_TIMEOUT = 10.0  # s: longest wait for every process to serve a new generation
STOP_GRACE = 2.0  # s a cleanly stopped process waits for the supervisor's own stop
YOUNG = 2.0  # s: a process that dies younger than this doubles the backoff
REAP_TIMEOUT = 5.0  # s a SIGKILLed process may take to be reaped


@dataclass(frozen=True, slots=True)
class DataPlaneSpec:
    """What a data-plane process is told on its command line (``--dataplane``)."""

    slot: int
    table_fd: int
    parent: int  # the supervisor's pid
    listen_fds: tuple[int, ...]  # one per --listen; () with --accept reuseport

    def __str__(self) -> str:
        fds = ",".join(str(fd) for fd in self.listen_fds)
        return f"{self.slot}:{self.table_fd}:{self.parent}:{fds}"


def parse_dataplane(text: str) -> DataPlaneSpec:
    try:
        slot, table_fd, parent, fds = text.split(":")
        return DataPlaneSpec(
            int(slot),
            int(table_fd),
            int(parent),
            tuple(int(fd) for fd in fds.split(",") if fd),
        )
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected SLOT:FD:PID:FDS, got {text!r}") from None


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def unbound_listeners(listens: Sequence[tuple[str, int, bool]], accept: str) -> list[socket.socket]:
    """The supervisor's sockets before they bind: with ``--accept inherit`` the data-plane
    processes get their descriptors at start (a warm standby's before the takeover) and
    accept on them once ``bind_listeners`` made them listen; with reuseport they are the
    holders of the ports (SO_REUSEPORT, never listening)."""
    out = []
    for host, _, _ in listens:
        sock = socket.socket(_family(host), socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if accept != "inherit":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        out.append(sock)
    return out


def bind_listeners(
    sockets: Sequence[socket.socket], listens: Sequence[tuple[str, int, bool]], accept: str
) -> None:
    """Bind ``unbound_listeners``' sockets: listening ones the processes share (inherit; the
    processes hold the same open file, so it listens for them too), or bound, unlistened
    SO_REUSEPORT ones that hold the ports and find a conflict before a process binds its own."""
    for sock, (host, port, _) in zip(sockets, listens, strict=True):
        sock.bind((host, port))
        if accept == "inherit":
            sock.listen(1024)


def dataplane_listeners(
    spec: DataPlaneSpec, listens: Sequence[tuple[str, int, bool]]
) -> list[socket.socket]:
    """A data-plane process's listening sockets: inherited, or its own SO_REUSEPORT ones."""
    if spec.listen_fds:
        return [socket.socket(fileno=fd) for fd in spec.listen_fds]
    return [
        socket.create_server((host, port), family=_family(host), backlog=1024, reuse_port=True)
        for host, port, _ in listens
    ]


def publish_part(table: Table, part: Mapping[str, Any]) -> None:
    """Merge ``part`` into the supervisor's document (one JSON object in its slot, read by
    every data-plane process): the cluster view's round ("live", "limits") and the balancer
    pair's view ("pair", balancer/standby.py) are written at their own pace, each keeping the
    other's keys."""
    try:
        doc = json.loads(table.blob(SUPERVISOR_SLOT) or b"{}")
    except ValueError:
        doc = {}
    if not isinstance(doc, dict):
        doc = {}
    doc.update(part)
    table.write_blob(SUPERVISOR_SLOT, json.dumps(doc, separators=(",", ":")).encode())


class Supervisor:
    def __init__(self, role: Role, balancer: Balancer) -> None:
        assert role.table is not None
        self.role = role
        self.table = role.table
        self.balancer = balancer
        self.accept: str = role.args.accept
        self.processes = min(role.processes, MAX_PROCESSES)
        self.children: dict[int, asyncio.subprocess.Process] = {}
        self._stopping = asyncio.Event()
        self._announcing: set[asyncio.Task[None]] = set()
        self.tls_epoch = 0  # SIGHUPs: a generation with a new one renews the TLS contexts
        self.control = ""  # the control document of the newest generation
        self.sockets: list[socket.socket] = []
        self.keepers: list[asyncio.Task[None]] = []
        # each slot's latest spawn: a keeper cancelled inside it has not recorded its process
        self.spawns: dict[int, asyncio.Future[asyncio.subprocess.Process]] = {}
        self.tickets: asyncio.Task[None] | None = None

    def warm_up(self, serve: bool = False) -> None:
        """Start the data-plane processes: loaded with generation 1, bound to the shared lb
        state, following generations. ``serve``: bind first (a conflict shows before any
        process starts) and let them accept; without it they wait, binding and accepting
        nothing, until ``go`` (a warm standby: its takeover only binds and accepts)."""
        if self.keepers:
            return
        self.sockets = unbound_listeners(self.balancer.listens, self.accept)
        if serve:
            bind_listeners(self.sockets, self.balancer.listens, self.accept)
        self.tickets = asyncio.create_task(self._publish_tickets(), name="tls-tickets")
        self._next_generation()  # generation 1: what the processes start with
        self.balancer.on_reload = self._next_generation
        # the supervisor alone hears the dynamic lbs' clusters and polls the cluster view;
        # the processes follow what it publishes
        self.balancer.on_members = self._members_changed
        self.balancer.cluster.on_update = self._publish_view
        publish_part(self.table, serve_part(serve))
        log.info(
            "supervisor pid=%d: %d data-plane processes, accept=%s%s",
            os.getpid(),
            self.processes,
            self.accept,
            "" if serve else " (warm standby: they accept nothing until the takeover)",
        )
        self.keepers = [asyncio.create_task(self._keep(slot)) for slot in range(self.processes)]

    def waiting_handlers(self) -> dict[signal.Signals, Callable[[], object]]:
        """What SIGHUP and SIGUSR1 do while a warm standby waits: reload (the waiting
        processes follow the generation) and reopen the processes' access logs."""
        return {
            signal.SIGHUP: self._sighup,
            signal.SIGUSR1: lambda: self._signal_all(signal.SIGUSR1),
        }

    def request_stop(self) -> None:
        """As SIGTERM: every process drains, then ``run`` returns (an active stepping down)."""
        self._stopping.set()

    def _term(self) -> None:
        """SIGTERM/SIGINT: as ``request_stop``, said to the balancer pair (a stop for good)."""
        self.balancer.term()
        self._stopping.set()

    def go(self) -> None:
        """A warm standby's turn: bind, then tell the waiting processes to accept (they read
        the document every FOLLOW_INTERVAL)."""
        bind_listeners(self.sockets, self.balancer.listens, self.accept)
        publish_part(self.table, serve_part(True))
        log.info("supervisor pid=%d: data-plane processes accept", os.getpid())

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        if self.keepers:
            self.go()
        else:
            self.warm_up(serve=True)
        for sig, handler in (
            (signal.SIGHUP, self._sighup),
            (signal.SIGTERM, self._term),
            (signal.SIGINT, self._term),
            (signal.SIGUSR1, lambda: self._signal_all(signal.SIGUSR1)),  # reopen access logs
        ):
            loop.add_signal_handler(sig, handler)
        self.balancer.start_control()
        await self._stopping.wait()
        await self.stop()
        return 0

    async def stop(self) -> None:
        """Every data-plane process drains (SIGTERM: it closes its listening sockets first),
        the supervisor's own work ends (a warm standby's too: its processes only wait)."""
        self._stopping.set()
        for proc in list(self.children.values()):
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)  # each closes its listening sockets, drains
        for sock in self.sockets:  # the ports are free once the processes closed theirs
            sock.close()
        if self.balancer.on_stopping is not None:
            self.balancer.on_stopping()
        grace = float(self.balancer.runtime.workers.balancer.shutdown_timeout) + 5.0
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await asyncio.gather(*self.keepers, return_exceptions=True)
        await self.end_children()
        if self.tickets is not None:
            self.tickets.cancel()
        await self.balancer.stop_control()
        await self.balancer.dynamic.stop()
        log.info("stopped")

    async def end_children(self) -> None:
        """SIGKILL the data-plane processes still running and reap them (bounded): none is
        left a zombie under this pid, whose next image (a step-down's exec) knows nothing of
        them. The keepers end first: one cancelled while it spawned left its process only in
        ``spawns``, which finishes (shielded) and is ended too."""
        for keeper in self.keepers:
            keeper.cancel()
        await asyncio.gather(*self.keepers, return_exceptions=True)
        procs = list(self.children.values())
        for spawn in self.spawns.values():
            with contextlib.suppress(Exception):
                proc = await spawn
                if all(proc is not p for p in procs):
                    procs.append(proc)
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        if procs:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(REAP_TIMEOUT):
                    await asyncio.gather(*(proc.wait() for proc in procs))

    async def _publish_tickets(self) -> None:
        """The TLS session ticket ratchet (the supervisor's Terminator holds it): republished
        at each period boundary, so a process started later ratchets forward from the current
        period's secret and never learns an older one (balancer/dataplane/tls_tickets.py)."""
        tls = self.balancer.tls
        if tls is None or tls.tickets is None:
            return
        rotation = tls.settings.ticket_rotation
        while True:  # the first round runs before any process starts (a task runs in order)
            tls.rotate_keys(period_of(time.time(), rotation))
            ratchet = tls.tickets.ratchet
            publish_part(self.table, tickets_part(ratchet.period, ratchet.secret))
            await asyncio.sleep(max(0.0, (ratchet.period + 1) * rotation - time.time()) + 0.001)

    def _signal_all(self, sig: int) -> None:
        for row in self.table.processes():  # a row exists once its handlers are safe to use
            with contextlib.suppress(ProcessLookupError):
                os.kill(row.pid, sig)

    def _sighup(self) -> None:
        self.tls_epoch += 1
        if not self.balancer.reload_all("SIGHUP") and self.balancer.tls is not None:
            # the files were rejected, the certificates may be renewed: a generation with the
            # running text and the new TLS epoch, so every process reads its certificates
            self._next_generation("tls reloaded (SIGHUP; the files were rejected)")

    def _control(self) -> str:
        workers = self.balancer.runtime.workers
        dynamic = self.balancer.dynamic.document(workers)
        return control_document(dynamic, self.tls_epoch)

    def _members_changed(self) -> None:
        """A dynamic lb's members changed here: a generation with them for every process
        (one that is only leaving needs none: its activation is in the shared record)."""
        if self._control() != self.control:
            self._next_generation()

    def _publish_view(self) -> None:
        publish_part(self.table, json.loads(view_document(self.balancer.cluster)))

    def _next_generation(self, summary: str = "") -> None:
        engines = self.balancer.runtime.engines
        kept = {(lb, m.name) for lb, e in engines.items() for m in e.members}
        kept |= {(lb, "") for lb in engines}
        # removed members' records: reused once no process serves an older generation
        for lb, member in self.table.release_except(kept, self.table.generation + 1):
            log.info(
                "lb=%s member=%s shared record freed generation=%d",
                lb,
                member or "-",
                self.table.generation + 1,
            )
        self.control = self._control()
        generation = self.table.publish(*self.balancer.loaded_texts, self.control)
        self._signal_all(signal.SIGHUP)
        if summary:
            task = asyncio.create_task(self._announce(summary, generation))
            self._announcing.add(task)
            task.add_done_callback(self._announcing.discard)

    async def _announce(self, summary: str, generation: int) -> None:
        """Log the reload once every running process serves ``generation`` (operators and
        scripts wait for this line), or say which ones do not."""
        deadline = time.monotonic() + ANNOUNCE_TIMEOUT
        while time.monotonic() < deadline:
            behind = [r for r in self.table.processes() if r.generation < generation]
            if not behind:
                log.info("%s processes=%d generation=%d", summary, self.processes, generation)
                return
            await asyncio.sleep(FOLLOW_INTERVAL / 2)
        for r in behind:
            log.warning(
                "generation %d not taken by slot=%d pid=%d (serves %d)",
                generation,
                r.slot,
                r.pid,
                r.generation,
            )
        log.info("%s processes=%d generation=%d (partly)", summary, self.processes, generation)

    def _command(self, slot: int) -> tuple[list[str], tuple[int, ...]]:
        fds = tuple(s.fileno() for s in self.sockets) if self.accept == "inherit" else ()
        spec = DataPlaneSpec(slot, self.role.table_fd, os.getpid(), fds)
        argv = [*self.role.args.argv, "--processes", "1", "--dataplane", str(spec)]
        return [sys.executable, "-m", "balancer", *argv], (self.role.table_fd, *fds)

    async def _keep(self, slot: int) -> None:
        """Run the process of ``slot``; start it again whenever it dies, until SIGTERM."""
        backoff = RESTART_MIN
        while not self._stopping.is_set():
            command, fds = self._command(slot)
            born = time.monotonic()
            spawn = asyncio.ensure_future(asyncio.create_subprocess_exec(*command, pass_fds=fds))
            self.spawns[slot] = spawn
            proc = await asyncio.shield(spawn)  # cancelled: end_children still finds it
            self.children[slot] = proc
            log.info("data-plane process slot=%d pid=%d started", slot, proc.pid)
            if self._stopping.is_set():  # stop() signalled the children before this one was
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
            code = await proc.wait()
            del self.children[slot]
            self.table.clear_process(slot)  # its row, and its busy counts in every member
            if code == 0 and not self._stopping.is_set():
                # a clean exit is a stop on request: Ctrl-C reaches the whole process group,
                # and the supervisor's own SIGINT may be a moment behind
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(STOP_GRACE):
                        await self._stopping.wait()
            if self._stopping.is_set():
                log.info("data-plane process slot=%d pid=%d exited %s", slot, proc.pid, code)
                return
            backoff = min(backoff * 2, RESTART_MAX) if time.monotonic() - born < YOUNG else 0
            log.warning(
                "data-plane process slot=%d pid=%d died (%s); restarting in %.1fs",
                slot,
                proc.pid,
                f"signal {-code}" if code < 0 else f"exit {code}",
                backoff,
            )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(backoff):
                    await self._stopping.wait()
            backoff = max(backoff, RESTART_MIN)
