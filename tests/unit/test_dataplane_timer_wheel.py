"""The client connections' deadlines on one loop timer (balancer/dataplane/timer_wheel.py):
a deadline wakes its entry at or up to one tick after it is due, never before; a removed entry
is never woken and not kept; one loop timer serves all entries."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from balancer.dataplane.timer_wheel import TICK, TimerWheel


class FakeHandle:
    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeLoop:
    """call_at, time() and call_exception_handler only: time moves when the test says."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.handles: list[FakeHandle] = []
        self.reported: list[dict[str, Any]] = []  # what reached the exception handler

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        self.reported.append(context)

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], None]) -> FakeHandle:
        handle = FakeHandle(when, callback)
        self.handles.append(handle)
        return handle

    def pending(self) -> list[FakeHandle]:
        return [h for h in self.handles if not h.cancelled and h.callback is not None]

    def run_until(self, t: float) -> None:
        """Fire every live timer due by ``t``, in order, with the clock at its time."""
        while True:
            due = [h for h in self.pending() if h.when <= t]
            if not due:
                break
            handle = min(due, key=lambda h: h.when)
            self.now = max(self.now, handle.when)
            callback, handle.callback = handle.callback, None  # type: ignore[assignment]
            try:
                callback()
            except Exception as exc:  # as asyncio.Handle does: reported, the loop goes on
                self.call_exception_handler({"message": "callback", "exception": exc})
        self.now = t


class Entry:
    def __init__(self, wheel: TimerWheel, loop: FakeLoop) -> None:
        self.wheel = wheel
        self.loop = loop
        self.timer_slot = 0
        self.woken: list[float] = []
        self.on_wake: Callable[[Entry], Any] | None = None

    def arm(self, when: float) -> None:
        if self.timer_slot:
            self.wheel.remove(self, self.timer_slot)
        self.timer_slot = self.wheel.add(self, when)

    def _on_timer(self) -> None:
        self.woken.append(self.loop.time())
        if self.on_wake is not None:
            self.on_wake(self)


def make() -> tuple[FakeLoop, TimerWheel]:
    loop = FakeLoop()
    return loop, TimerWheel(loop)  # type: ignore[arg-type]


def test_a_deadline_wakes_its_entry_after_it_is_due_and_within_one_tick() -> None:
    loop, wheel = make()
    entry = Entry(wheel, loop)
    due = loop.now + 0.33
    entry.arm(due)
    loop.run_until(due - 0.001)
    assert entry.woken == []
    loop.run_until(due + TICK)
    assert len(entry.woken) == 1
    assert due <= entry.woken[0] <= due + TICK
    assert entry.timer_slot == 0  # the wheel says it no longer holds it
    assert wheel.slots == {}


def test_a_removed_entry_is_never_woken_and_not_kept() -> None:
    loop, wheel = make()
    entry = Entry(wheel, loop)
    entry.arm(loop.now + 1)
    wheel.remove(entry, entry.timer_slot)
    # a closed connection is not held until its deadline (its empty bucket may stay)
    assert not any(entry in bucket for bucket in wheel.slots.values())
    loop.run_until(loop.now + 5)
    assert entry.woken == []


def test_rearming_later_moves_the_entry_and_it_wakes_once() -> None:
    loop, wheel = make()
    entry = Entry(wheel, loop)
    start = loop.now
    entry.arm(start + 0.5)
    entry.arm(start + 2.0)
    loop.run_until(start + 1.9)
    assert entry.woken == []
    loop.run_until(start + 2.0 + TICK)
    assert len(entry.woken) == 1 and entry.woken[0] >= start + 2.0


def test_one_loop_timer_serves_many_entries_and_an_earlier_one_moves_it() -> None:
    loop, wheel = make()
    start = loop.now
    late = [Entry(wheel, loop) for _ in range(50)]
    for i, e in enumerate(late):
        e.arm(start + 10 + i * 0.01)
    assert len(loop.pending()) == 1  # not one per entry
    early = Entry(wheel, loop)
    early.arm(start + 1)
    assert len(loop.pending()) == 1  # moved, not added
    loop.run_until(start + 1 + TICK)
    assert len(early.woken) == 1 and not any(e.woken for e in late)
    loop.run_until(start + 11 + TICK)
    assert all(len(e.woken) == 1 for e in late)
    assert all(e.woken[0] >= start + 10 + i * 0.01 for i, e in enumerate(late))
    assert loop.pending() == [] and wheel.slots == {}


def test_an_entry_may_arm_again_from_its_wake_up() -> None:
    loop, wheel = make()
    entry = Entry(wheel, loop)
    start = loop.now

    def again(e: Entry) -> None:
        if len(e.woken) < 3:
            e.arm(e.loop.time() + 1)

    entry.on_wake = again
    entry.arm(start + 1)
    loop.run_until(start + 10)
    assert len(entry.woken) == 3
    gaps = [b - a for a, b in zip(entry.woken, entry.woken[1:], strict=False)]
    assert all(gap >= 1 for gap in gaps)


def test_a_deadline_already_past_wakes_at_the_next_tick() -> None:
    loop, wheel = make()
    entry = Entry(wheel, loop)
    entry.arm(loop.now - 3)
    loop.run_until(loop.now + TICK)
    assert len(entry.woken) == 1


def test_close_stops_the_loop_timer() -> None:
    loop, wheel = make()
    entry = Entry(wheel, loop)
    entry.arm(loop.now + 1)
    wheel.close()
    assert loop.pending() == []
    assert entry.timer_slot == 0  # it names no bucket of a wheel that holds none
    loop.run_until(loop.now + 5)
    assert entry.woken == []


def test_a_bucket_that_left_is_never_used_again() -> None:
    # The wheel reuses the bucket it used last; an entry woken in a pass may arm into a bucket
    # the same pass then empties, and a later entry must not land in that emptied bucket.
    loop, wheel = make()
    start = loop.now
    first, other, second, fourth = (Entry(wheel, loop) for _ in range(4))
    first.arm(start - TICK)
    other.arm(start)

    def arm_past(e: Entry) -> None:
        second.arm(start)  # a deadline already due, in a bucket this pass empties next

    first.on_wake = arm_past
    loop.now = start + 5 * TICK  # the loop was busy: the timer runs late, both buckets due
    loop.run_until(loop.now)
    assert [len(e.woken) for e in (first, other, second)] == [1, 1, 1]
    fourth.arm(start)  # due already: woken at the next tick
    loop.run_until(loop.now + 2 * TICK)
    assert len(fourth.woken) == 1


def test_an_entry_arming_far_ahead_from_its_wake_up_does_not_delay_an_earlier_bucket() -> None:
    # A keep-alive connection woken at its first deadline arms again seconds ahead; a slowloris
    # client's header deadline, in a bucket between, still fires on time (it once waited for
    # the keep-alive one: the loop timer went to the bucket the woken entry armed).
    loop, wheel = make()
    start = loop.now
    idle, slow = Entry(wheel, loop), Entry(wheel, loop)
    idle.on_wake = lambda e: e.arm(e.loop.time() + 5) if len(e.woken) == 1 else None
    idle.arm(start + 0.05)
    slow.arm(start + 0.35)
    loop.run_until(start + 0.35 + TICK)
    assert len(idle.woken) == 1
    assert len(slow.woken) == 1 and start + 0.35 <= slow.woken[0]
    loop.run_until(start + 0.05 + 5 + 2 * TICK)
    assert len(idle.woken) == 2


def test_an_entry_arming_again_into_an_ended_bucket_is_woken_at_the_next_tick() -> None:
    # A bucket ending within 1 ms of the clock counts as ended (a libuv timer may run 1 ms
    # early); an entry arming into one from its wake-up is woken by the next pass, and the
    # loop timer is not left armed for a time already past (it would run again at once).
    loop, wheel = make()
    start = loop.now
    entry = Entry(wheel, loop)
    entry.on_wake = lambda e: e.arm(e.loop.time() - 0.0005) if len(e.woken) < 3 else None
    entry.arm(start + 0.05)
    loop.run_until(start + 0.05 + TICK)
    assert len(entry.woken) == 1
    assert len(loop.pending()) == 1  # one loop timer, for the next tick, not one due now
    assert loop.pending()[0].when > loop.now
    loop.run_until(start + 0.05 + 3 * TICK)
    assert len(entry.woken) == 3


def test_a_wake_up_that_raises_is_reported_and_the_other_entries_are_still_woken() -> None:
    loop, wheel = make()
    start = loop.now
    failing, same_bucket, later = Entry(wheel, loop), Entry(wheel, loop), Entry(wheel, loop)

    def boom(e: Entry) -> None:
        raise RuntimeError("boom")

    failing.on_wake = boom
    failing.arm(start + 0.05)
    same_bucket.arm(start + 0.05)
    later.arm(start + 0.35)
    loop.run_until(start + 0.35 + TICK)
    assert len(failing.woken) == 1
    assert len(same_bucket.woken) == 1 and same_bucket.timer_slot == 0
    assert len(later.woken) == 1
    assert [str(c["exception"]) for c in loop.reported] == ["boom"]
    assert loop.reported[0]["entry"] is failing  # which connection failed, for the log
    assert wheel.slots == {} and loop.pending() == []


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.lists(st.integers(min_value=0, max_value=8000), min_size=1, max_size=4),
        min_size=1,
        max_size=6,
    )
)
def test_every_deadline_fires_within_one_tick_whatever_the_entries_arm_on_waking(
    plans: list[list[int]],
) -> None:
    # Each entry is a connection with a chain of deadlines, each one ``ms`` after the moment
    # the one before fired (a request answered, then a keep-alive wait...); as
    # ClientConnection._on_timer does, it arms again if woken before its deadline. (Deadlines
    # half a millisecond off the ms grid keep them away from the buckets' edges.)
    loop, wheel = make()
    start = loop.now
    fired: list[tuple[float, float]] = []  # (deadline, when it fired)

    class Connection(Entry):
        def __init__(self, plan: list[int]) -> None:
            super().__init__(wheel, loop)
            self.plan = list(plan)
            self.due = start + (self.plan.pop(0) + 0.5) / 1000
            self.arm(self.due)

        def _on_timer(self) -> None:
            now = self.loop.time()
            if now < self.due:
                self.arm(self.due)
                return
            fired.append((self.due, now))
            if self.plan:
                self.due = now + (self.plan.pop(0) + 0.5) / 1000
                self.arm(self.due)

    for plan in plans:
        Connection(plan)
    loop.run_until(start + 4 * 8.1)
    assert len(fired) == sum(len(plan) for plan in plans)
    for due, at in fired:
        assert due <= at <= due + TICK + 1e-9, (due - start, at - due)
