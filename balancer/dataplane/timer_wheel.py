"""The client connections' deadlines on one event-loop timer: a coarse timer wheel.

A deadline per client connection (header, body, keep-alive, send, linger; downstream.py) as a
``loop.call_at`` each makes a TimerHandle and a libuv timer per connection, started and
stopped again for nearly every connection, which is most of what arming costs when each
request comes on a new connection. Here a connection's deadline is an entry in the bucket of
its ``tick``: one dict insert to arm, one removal to disarm, and one loop timer for all of
them, armed for the earliest bucket. (nginx keeps its timers in one red-black tree, HAProxy
in a wheel; both also round them.)

Granularity: a deadline fires at the end of its tick, so at most ``tick`` seconds (100 ms by
default) after it is due, never before. The entries' ``_on_timer`` works out which deadline
applies now; a wheel entry is only a wake-up. An entry may arm again from its wake-up (most
do: the deadline that applies now is later), and the loop timer still goes to the earliest
bucket left. A wake-up that raises is reported to the loop's exception handler, as a failing
callback is, and the other entries are woken all the same.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

# seconds per bucket: how late a deadline may fire
TICK = 0.1


class Sleeper(Protocol):
    # The bucket the entry is in (0: none), kept by the entry for ``remove``.
    timer_slot: int

    def _on_timer(self) -> None: ...


class TimerWheel:
    __slots__ = ("handle", "handle_slot", "last_bucket", "last_slot", "loop", "slots", "tick")

    def __init__(self, loop: asyncio.AbstractEventLoop, tick: float = TICK) -> None:
        self.loop = loop
        self.tick = tick
        # bucket number -> the entries due in it (a dict as an ordered set)
        self.slots: dict[int, dict[Any, None]] = {}
        self.handle: asyncio.TimerHandle | None = None
        self.handle_slot = 0  # the bucket the loop timer is armed for (with handle)
        # The bucket used last and its number: connections made in one tick share it, and
        # they find it without a dict lookup (nor an int object for the key). Always a
        # bucket of ``slots``: forgotten when its bucket leaves.
        self.last_slot = 0
        self.last_bucket: dict[Any, None] | None = None

    def add(self, entry: Sleeper, when: float) -> int:
        """Wake ``entry`` (its ``_on_timer``) at ``when`` or up to one tick later; the bucket
        it went in, for ``remove``."""
        slot = int(when / self.tick) + 1  # the first bucket that ends after ``when``
        last = self.last_bucket
        if slot == self.last_slot and last is not None:
            bucket = last
        else:
            found = self.slots.get(slot)
            if found is None:
                bucket = {}
                self.slots[slot] = bucket
            else:
                bucket = found
            self.last_slot = slot
            self.last_bucket = bucket
        bucket[entry] = None
        if self.handle is None or slot < self.handle_slot:
            self._schedule(slot)
        return slot

    def remove(self, entry: Sleeper, slot: int) -> None:
        """Take ``entry`` out of bucket ``slot`` (a wheel holds no closed connection)."""
        last = self.last_bucket
        if slot == self.last_slot and last is not None:
            bucket: dict[Any, None] | None = last
        else:
            bucket = self.slots.get(slot)
        if bucket is not None:
            bucket.pop(entry, None)
        # (an empty bucket stays until its time comes, as the loop timer does: a bucket is
        # shared by the connections of one tick, made and dropped once per tick, not per
        # connection)

    def _schedule(self, slot: int) -> None:
        if self.handle is not None:
            self.handle.cancel()
        self.handle_slot = slot
        self.handle = self.loop.call_at(slot * self.tick, self._fire)

    def _fire(self) -> None:
        self.handle = None
        slots = self.slots
        if not slots:
            return
        # the buckets that have ended: a libuv timer is in whole milliseconds and may run up
        # to one early, so a bucket ending within 1 ms counts as ended (an entry woken before
        # its deadline, as ClientConnection._on_timer checks, arms again). Taken once: an entry
        # arming again into a bucket that counts as ended is woken by the next pass, not by
        # this one (which would spin for as long as the loop's clock stands still).
        now_slot = int((self.loop.time() + 0.001) / self.tick)
        due = [s for s in slots if s <= now_slot]
        if len(due) > 1:  # the loop ran late: the earliest deadlines first
            due.sort()
        try:
            for slot in due:
                bucket = slots.pop(slot, None)
                if slot == self.last_slot:  # (an entry woken below may have added to it)
                    self.last_slot = 0
                    self.last_bucket = None
                if bucket is None:
                    continue
                for entry in bucket:
                    entry.timer_slot = 0
                    # an entry may arm again from here: into another bucket, never this one
                    try:
                        entry._on_timer()
                    except Exception as exc:
                        # one connection's failure is not the others': they are still woken
                        # (and the loop timer armed below), the error reported as the loop
                        # reports a callback's (asyncio.Handle)
                        self.loop.call_exception_handler(
                            {
                                "message": "Exception in a deadline's wake-up (TimerWheel)",
                                "exception": exc,
                                "entry": entry,
                            }
                        )
        finally:
            # The loop timer for the earliest bucket left, whatever an entry woken above armed
            # it for (add): its own bucket, a keep-alive deadline seconds ahead, while an
            # earlier bucket waits (whose deadlines would wait for it); or a bucket that counts
            # as ended (woken early, armed again), which would run the timer again at once.
            if slots:
                nxt = max(min(slots), now_slot + 1)
                if self.handle is None or self.handle_slot != nxt:
                    self._schedule(nxt)

    def close(self) -> None:
        """Stop the loop timer (the server is closing); entries left are not woken."""
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None
        # (the server aborted its connections first; an entry left no longer names a bucket,
        # so a connection still open arms anew rather than removing itself from a bucket gone)
        for bucket in self.slots.values():
            for entry in bucket:
                entry.timer_slot = 0
        self.slots.clear()
        self.last_slot = 0
        self.last_bucket = None
