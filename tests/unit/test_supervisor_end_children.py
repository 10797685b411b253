"""Supervisor.end_children (balancer/supervisor.py): the drain cut of a step-down kills and
reaps every data-plane process, one being spawned at that moment too."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from types import SimpleNamespace

from balancer.supervisor import Supervisor


async def test_a_process_spawned_while_the_keepers_are_cancelled_is_killed_and_reaped(
    monkeypatch,
):
    # before: end_children killed what self.children held; a keeper cancelled inside
    # create_subprocess_exec had not recorded its process: it survived the exec, unknown
    sup = Supervisor.__new__(Supervisor)
    sup.children, sup.spawns = {}, {}
    sup._stopping = asyncio.Event()
    sup.table = SimpleNamespace(clear_process=lambda slot: None)
    command = [sys.executable, "-c", "import time; time.sleep(60)"]
    monkeypatch.setattr(sup, "_command", lambda slot: (command, ()), raising=False)
    real = asyncio.create_subprocess_exec
    spawned: asyncio.Future[asyncio.subprocess.Process] = asyncio.Future()
    gate = asyncio.Event()

    async def slow_exec(*args, **kwargs):  # the process exists; the spawn has not returned
        proc = await real(*args, **kwargs)
        spawned.set_result(proc)
        await gate.wait()
        return proc

    monkeypatch.setattr(asyncio, "create_subprocess_exec", slow_exec)
    sup.keepers = [asyncio.create_task(sup._keep(0))]
    proc = await asyncio.wait_for(spawned, 10)
    try:
        assert sup.children == {}
        ending = asyncio.create_task(sup.end_children())
        await asyncio.sleep(0)  # the keepers are cancelled mid-spawn; the spawn ends later
        gate.set()
        await asyncio.wait_for(ending, 10)
        assert proc.returncode is not None  # killed and reaped: no orphan, no zombie
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
