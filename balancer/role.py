"""What a ``pyjk-balancer`` process is (``Role``): one balancer alone, the supervisor of N
data-plane processes (balancer/supervisor.py), or one of those processes
(balancer/dataplane_process.py) — how many processes, the shared table it creates or attaches
to, the lb state its engines use, and its run: alone, supervising, paired (balancer/standby.py:
``--cluster``, ``--standby``) or as a data-plane process (waiting while its supervisor is a
warm standby, then serving)."""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import logging
import mmap
import os
import secrets
import signal
from collections.abc import Awaitable, Callable

from balancer.config import ConfigError, load_workers
from balancer.config.model import MemberConfig, WorkersConfig
from balancer.dataplane_process import SUPERVISOR_SLOT, DataPlaneProcess
from balancer.lb.shared import ShmState
from balancer.lb.shm import SECRET_SIZE, Table, table_size
from balancer.lb.state import LOCAL, LbState
from balancer.server import Balancer
from balancer.supervisor import DataPlaneSpec, Supervisor, dataplane_listeners, publish_part

log = logging.getLogger("pyjk.balancer")

_PR_SET_PDEATHSIG = 1


def default_processes() -> int:
    """The CPUs this process may run on (a container's or taskset's limit counts)."""
    return len(os.sched_getaffinity(0))


def configured_processes(args: argparse.Namespace) -> int:
    """``worker.processes`` of the workers file; 0 when unset or the file does not load (the
    balancer's own load reports why)."""
    try:
        workers, _ = load_workers(args.workers, os.environ)
    except ConfigError:
        return 0
    return workers.balancer.processes


def _die_with_parent(parent: int) -> None:
    """SIGTERM when the supervisor goes (Linux); elsewhere the row's pid check is all."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # it died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


class Role:
    """What this process is: one balancer alone, a supervisor, or a data-plane process."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.spec: DataPlaneSpec | None = getattr(args, "dataplane", None)
        self.processes: int = args.processes or configured_processes(args) or default_processes()
        self.table: Table | None = None
        self.table_fd = -1
        self.state: LbState = LOCAL
        self.follower: DataPlaneProcess | None = None  # a data-plane process's side
        if self.spec is not None:
            # the supervisor signals a process once its row exists; until serve() has its
            # handler, a SIGHUP must not end it (the new generation is polled for anyway)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            signal.signal(signal.SIGUSR1, signal.SIG_IGN)
            _die_with_parent(self.spec.parent)
            size = os.fstat(self.spec.table_fd).st_size
            self.table = Table.attach(mmap.mmap(self.spec.table_fd, size))
            self.state = ShmState(self.table, self.spec.slot, owner=False)
            self.follower = DataPlaneProcess(self.table, self.spec.slot)
        elif self.processes > 1:
            self.table_fd = os.memfd_create("pyjk-lb-state")
            os.ftruncate(self.table_fd, table_size())
            self.table = Table(mmap.mmap(self.table_fd, table_size()))
            self.table.format(secrets.token_bytes(SECRET_SIZE))
            self.state = ShmState(self.table, SUPERVISOR_SLOT, owner=True)

    @property
    def supervises(self) -> bool:
        """Whether this process is the supervisor of data-plane processes."""
        return self.spec is None and self.table is not None

    async def run(self, balancer: Balancer) -> int:
        if self.follower is not None:
            assert self.spec is not None
            if getattr(self.args, "cluster", None) is not None:  # the supervisor's pair view
                from balancer.standby import read_view

                table = self.table
                assert table is not None
                balancer.status.pair = lambda: read_view(table.blob(SUPERVISOR_SLOT))
            if not await self.follower.wait_turn(balancer):  # a warm standby's process
                return 0
            await self.follower.run(balancer, dataplane_listeners(self.spec, balancer.listens))
            return 0
        supervisor = Supervisor(self, balancer) if self.table is not None else None
        serve = supervisor.run if supervisor is not None else self._serve_alone(balancer)
        if getattr(self.args, "cluster", None) is not None:  # a balancer pair (standby.py)
            from balancer.pair_run import run_paired

            table = self.table
            publish = None if table is None else lambda part: publish_part(table, part)
            return await run_paired(self.args, balancer, publish, serve, supervisor)
        return await serve()

    @staticmethod
    def _serve_alone(balancer: Balancer) -> Callable[[], Awaitable[int]]:
        async def serve() -> int:
            await balancer.serve()
            return 0

        return serve

    def config_source(self) -> Callable[[], tuple[str, str]] | None:
        return self.follower.config_texts if self.follower is not None else None

    def ticket_source(self) -> Callable[[], tuple[int, bytes] | None] | None:
        return self.follower.ticket_secret if self.follower is not None else None

    def dynamic_source(
        self,
    ) -> Callable[[WorkersConfig], dict[str, tuple[MemberConfig, ...]]] | None:
        return self.follower.dynamic_members if self.follower is not None else None

    def csrf(self) -> str | None:
        """One CSRF token for every process: a page one process served may be posted to
        another."""
        if self.table is None:
            return None
        return base64.urlsafe_b64encode(self.table.secret).decode("ascii").rstrip("=")
