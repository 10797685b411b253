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
applies now; a wheel entry is only a wake-up.
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
        # its deadline, as ClientConnection._on_timer checks, arms again)
        now_slot = int((self.loop.time() + 0.001) / self.tick)
        due = sorted(s for s in slots if s <= now_slot)
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
                entry._on_timer()
        if slots and self.handle is None:
            self._schedule(max(min(slots), now_slot + 1))

    def close(self) -> None:
        """Stop the loop timer (the server is closing); entries left are not woken."""
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None
        self.slots.clear()
        self.last_slot = 0
        self.last_bucket = None
