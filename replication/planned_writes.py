"""One request's session writes, planned when the response is committed and sent once.

A request's commit (``CommitObserver.committed``) sees all of its deltas and the response to
record; the session manager then calls the store's ``sink`` once per delta. The stores that
write elsewhere (the distributed cache, Redis) plan every write of the request at commit,
send them together on the first ``sink`` call and let the other deltas' calls wait for the
same answer: all of the request's writes are confirmed, or none is acknowledged. Shared by
``replication.dist_sessions`` and ``replication.redis_store``; what a write is stays theirs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from worker.backend import SessionNotSaved
from worker.delta import SessionDelta

W = TypeVar("W")


@dataclass(eq=False)
class Plan(Generic[W]):
    """One request's writes, sent together by the first sink call (`refused`: never sent)."""

    writes: list[W]
    refused: str | None = None  # why it may not be written (replay.Unverified)
    task: asyncio.Future[None] | None = None


class PlannedWrites(Generic[W]):
    """The plans of the requests between commit and sink, by delta."""

    def __init__(self, write: Callable[[list[W]], Awaitable[None]]) -> None:
        self._write = write  # sends one plan's writes; raises SessionNotSaved
        self._plans: dict[int, tuple[SessionDelta, Plan[W]]] = {}

    def plan(self, deltas: Sequence[SessionDelta], plan: Plan[W]) -> None:
        for delta in deltas:
            self._plans[id(delta)] = (delta, plan)

    def take(self, delta: SessionDelta) -> Plan[W] | None:
        """The plan made for `delta` at commit, or None (not seen at commit)."""
        entry = self._plans.pop(id(delta), None)
        return None if entry is None or entry[0] is not delta else entry[1]

    async def send(self, plan: Plan[W]) -> None:
        """Send `plan` once (the first delta's call); every call gets the same answer.

        Raises SessionNotSaved when it was refused or not confirmed; the request's other
        deltas are then dropped with it (nothing of the request is written)."""
        if plan.refused is not None:
            self._drop(plan)
            raise SessionNotSaved(plan.refused)
        if plan.task is None:
            plan.task = asyncio.ensure_future(self._write(plan.writes))
        try:
            await asyncio.shield(plan.task)
        except SessionNotSaved:
            self._drop(plan)
            raise

    def _drop(self, plan: Plan[W]) -> None:
        for key in [k for k, (_, p) in self._plans.items() if p is plan]:
            del self._plans[key]

    def __len__(self) -> int:
        return len(self._plans)
