"""One lb state shared by the data-plane processes: fixed-layout records, as mod_jk's JkShmFile.

The engine's *decisions* stay in ``engine.py``/``plan.py``; its *numbers* (lb values, states,
activations, error times, counters, the status page's settings) live in a ``Member`` and an
``LbSettings``. With one process those are plain objects (``LocalState``). With N processes
they are ``SharedMember``/``SharedSettings``: the same classes, whose fields read and write
8-byte words of one buffer every process maps (``ShmState``). The decision code cannot tell.

This module only lays records out over a writable buffer it is given (a ``bytearray`` in unit
tests, the supervisor's ``memfd`` mapping in production: balancer/supervisor.py); it does no
I/O itself.

Concurrency, without locks (so no process can die holding one and wedge the others):
- every field is one aligned 8-byte word, written by a single store; a reader sees the old or
  the new value, never half of each;
- read-modify-write of a shared word (``lb_value += lb_mult``) can lose an update when two
  processes race. mod_jk's default ``lock=O`` (optimistic) accepts the same: a lost increment
  shifts one pick, the next round evens it out;
- ``busy`` is one word *per process slot* (each has one writer), summed when read. When the
  supervisor reaps a dead process it zeroes that slot in every record, so no member stays
  busy because of requests that died with their process;
- a process row (pid, start, connections, requests) has one writer: its process.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from enum import Enum
from typing import Any

from balancer.config.model import Activation, LbConfig, Lock, MemberConfig, Method
from balancer.lb.member import Member, State
from balancer.lb.settings import LbSettings

log = logging.getLogger("pyjk.balancer")

MAGIC = b"PYJKSHM1"
MAX_PROCS = 64  # process slots; --processes is capped below this
NAME_SIZE = 64  # bytes of a record key part or a string field (mod_jk: JK_SHM_STR_SIZ 63)
WORDS = 40  # 8-byte numeric fields per record
STRINGS = 4  # string fields per record
HEADER_SIZE = 64  # magic, record count, generation, a 32-byte secret
SECRET_SIZE = 32
PROC_SIZE = 64  # bytes per process row
# record: lb name, member name ("" = the lb's settings), fingerprint, in-use, words, strings,
# one busy word per process slot
_KEY = 2 * NAME_SIZE
_WORDS_AT = _KEY + 16
_STRINGS_AT = _WORDS_AT + WORDS * 8
_BUSY_AT = _STRINGS_AT + STRINGS * NAME_SIZE
RECORD_SIZE = _BUSY_AT + MAX_PROCS * 8
DEFAULT_RECORDS = 1024


# Two slots for the configuration text of a generation (workers.properties, uriworkermap), so
# the processes load what the supervisor checked, not what the files say a moment later.
TEXT_SLOT = 1 << 20
# Per process slot: counters whose keys are not known in advance (TLS failures by reason,
# ciphers), as a small document its process rewrites; the others read and add them up.
BLOB_SIZE = 4096


def table_size(records: int = DEFAULT_RECORDS) -> int:
    return (
        HEADER_SIZE
        + MAX_PROCS * PROC_SIZE
        + records * RECORD_SIZE
        + 2 * TEXT_SLOT
        + MAX_PROCS * BLOB_SIZE
    )


class TableFull(Exception):
    """More lb members than the shared table has records."""


def fingerprint(config: object) -> int:
    """A stable 63-bit number of a frozen config (``hash()`` is salted per process)."""
    digest = hashlib.blake2b(repr(config).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


@dataclass(frozen=True, slots=True)
class ProcessRow:
    """One data-plane process as the status page shows it (HAProxy's ``show proc``)."""

    slot: int
    pid: int
    started: float  # wall-clock s
    connections: int  # open client connections now
    requests: int  # requests routed since it started
    generation: int  # configuration generation it serves


class Table:
    """The shared buffer: a header, MAX_PROCS process rows, then member/lb records."""

    def __init__(self, buf: Any, records: int = DEFAULT_RECORDS) -> None:
        self.view = memoryview(buf)
        if len(self.view) < table_size(records):
            raise ValueError(f"buffer of {len(self.view)} bytes < {table_size(records)}")
        self.words = self.view.cast("q")
        self.floats = self.view.cast("d")
        self.records = records

    @classmethod
    def attach(cls, buf: Any) -> Table:
        """The table another process formatted in ``buf``."""
        view = memoryview(buf)
        if bytes(view[:8]) != MAGIC:
            raise ValueError("not a pyjk shared lb table")
        return cls(buf, view.cast("q")[1])

    # -- header --------------------------------------------------------------------------

    def format(self, secret: bytes = b"") -> None:
        """Make a zeroed buffer a table (the supervisor, once). ``secret``: up to 32 bytes
        every process shares (the status page's CSRF token)."""
        self.view[:8] = MAGIC
        self.words[1] = self.records
        self.view[24 : 24 + SECRET_SIZE] = secret[:SECRET_SIZE].ljust(SECRET_SIZE, b"\0")

    @property
    def secret(self) -> bytes:
        return bytes(self.view[24 : 24 + SECRET_SIZE])

    @property
    def generation(self) -> int:
        """The configuration generation the supervisor loaded last."""
        return self.words[2]

    @generation.setter
    def generation(self, value: int) -> None:
        self.words[2] = value

    # -- the configuration text of each generation ----------------------------------------

    def _text_slot(self, generation: int) -> int:
        end = table_size(self.records) - MAX_PROCS * BLOB_SIZE
        return end - (2 - generation % 2) * TEXT_SLOT

    # -- per-process documents ----------------------------------------------------------------

    def _blob(self, slot: int) -> int:
        self._proc(slot)  # checks the slot
        return table_size(self.records) - (MAX_PROCS - slot) * BLOB_SIZE

    def write_blob(self, slot: int, data: bytes) -> None:
        """Replace ``slot``'s document (its process only: one writer). A seqlock: the count
        is odd while the bytes change, so a reader retries instead of reading half."""
        at = self._blob(slot)
        if len(data) > BLOB_SIZE - 16:
            raise TableFull(f"a process document of {len(data)} bytes")
        seq = self.words[at // 8]
        self.words[at // 8] = seq + 1
        self.words[at // 8 + 1] = len(data)
        self.view[at + 16 : at + 16 + len(data)] = data
        self.words[at // 8] = seq + 2

    def blob(self, slot: int) -> bytes:
        at = self._blob(slot)
        for _ in range(1000):
            seq = self.words[at // 8]
            if seq % 2:
                continue
            n = min(max(self.words[at // 8 + 1], 0), BLOB_SIZE - 16)
            data = bytes(self.view[at + 16 : at + 16 + n])
            if self.words[at // 8] == seq:
                return data
        return b""  # its writer died mid-write: nothing to add up

    def publish(self, workers: str, mounts: str) -> int:
        """The supervisor's next generation: its text first, then the generation number.
        Returns the new generation."""
        generation = self.generation + 1
        a, b = workers.encode("utf-8"), mounts.encode("utf-8")
        at = self._text_slot(generation)
        if 24 + len(a) + len(b) > TEXT_SLOT:
            raise TableFull(f"configuration text over {TEXT_SLOT} bytes")
        self.words[at // 8] = -1  # being written (a seqlock's odd count)
        self.words[at // 8 + 1] = len(a)
        self.words[at // 8 + 2] = len(b)
        self.view[at + 24 : at + 24 + len(a) + len(b)] = a + b
        self.words[at // 8] = generation
        self.generation = generation
        return generation

    def texts(self) -> tuple[int, str, str]:
        """(generation, workers text, mounts text) of the newest generation, read whole: a
        copy the supervisor overwrote meanwhile is read again."""
        while True:
            generation = self.generation
            at = self._text_slot(generation)
            if self.words[at // 8] != generation:
                continue  # two publishes since we looked: read the newest
            n, m = self.words[at // 8 + 1], self.words[at // 8 + 2]
            raw = bytes(self.view[at + 24 : at + 24 + n + m])
            if self.words[at // 8] == generation:
                return generation, raw[:n].decode("utf-8"), raw[n:].decode("utf-8")

    # -- process rows ----------------------------------------------------------------------

    def _proc(self, slot: int) -> int:
        if not 0 <= slot < MAX_PROCS:
            raise ValueError(f"process slot {slot} not in 0..{MAX_PROCS - 1}")
        return (HEADER_SIZE + slot * PROC_SIZE) // 8

    def write_process(self, row: ProcessRow) -> None:
        w = self._proc(row.slot)
        self.floats[w + 1] = row.started
        self.words[w + 2] = row.connections
        self.words[w + 3] = row.requests
        self.words[w + 4] = row.generation
        self.words[w] = row.pid  # last: a row with a pid is complete

    def processes(self) -> list[ProcessRow]:
        rows = []
        for slot in range(MAX_PROCS):
            w = self._proc(slot)
            pid = self.words[w]
            if pid:
                rows.append(
                    ProcessRow(
                        slot,
                        pid,
                        self.floats[w + 1],
                        self.words[w + 2],
                        self.words[w + 3],
                        self.words[w + 4],
                    )
                )
        return rows

    def clear_process(self, slot: int) -> None:
        """A reaped process: its row and its busy counts in every record go."""
        w = self._proc(slot)
        self.words[w : w + PROC_SIZE // 8] = memoryview(bytes(PROC_SIZE)).cast("q")
        at = self._blob(slot)
        self.words[at // 8 : at // 8 + 2] = memoryview(bytes(16)).cast("q")
        for r in range(self.records):
            self.words[self.record_word(r) + (_BUSY_AT + slot * 8) // 8] = 0

    # -- records ---------------------------------------------------------------------------

    def record_word(self, index: int) -> int:
        return (HEADER_SIZE + MAX_PROCS * PROC_SIZE + index * RECORD_SIZE) // 8

    def _key(self, index: int) -> tuple[bytes, bytes]:
        at = self.record_word(index) * 8
        return (
            bytes(self.view[at : at + NAME_SIZE]).rstrip(b"\0"),
            bytes(self.view[at + NAME_SIZE : at + _KEY]).rstrip(b"\0"),
        )

    def find(self, lb: str, member: str) -> int:
        """The record of (lb, member), or -1."""
        key = (_name(lb), _name(member))
        for i in range(self.records):
            if self.words[self.record_word(i) + _KEY // 8 + 1] and self._key(i) == key:
                return i
        return -1

    def allocate(self, lb: str, member: str) -> int:
        """The record of (lb, member), claimed if new (the supervisor only: one writer)."""
        found = self.find(lb, member)
        if found >= 0:
            return found
        for i in range(self.records):
            w = self.record_word(i)
            if not self.words[w + _KEY // 8 + 1]:
                at = w * 8
                self.view[at : at + RECORD_SIZE] = bytes(RECORD_SIZE)
                self.view[at : at + NAME_SIZE] = _name(lb).ljust(NAME_SIZE, b"\0")
                self.view[at + NAME_SIZE : at + _KEY] = _name(member).ljust(NAME_SIZE, b"\0")
                self.words[w + _KEY // 8 + 1] = 1
                return i
        raise TableFull(f"the shared lb table has no free record for {lb}/{member}")

    def release_except(self, keep: set[tuple[str, str]]) -> None:
        """Free the records of members a reload removed (the supervisor only)."""
        wanted = {(_name(lb), _name(m)) for lb, m in keep}
        for i in range(self.records):
            if self.words[self.record_word(i) + _KEY // 8 + 1] and self._key(i) not in wanted:
                self.words[self.record_word(i) + _KEY // 8 + 1] = 0

    def fingerprint_of(self, index: int) -> int:
        return self.words[self.record_word(index) + _KEY // 8]

    def set_fingerprint(self, index: int, value: int) -> None:
        self.words[self.record_word(index) + _KEY // 8] = value


def _name(text: str) -> bytes:
    raw = text.encode("utf-8")
    if len(raw) >= NAME_SIZE:
        raise ValueError(f"name {text!r} longer than {NAME_SIZE - 1} bytes")
    return raw


# -- fields as words of a record ------------------------------------------------------------


class _Word:
    """An int field: one 8-byte word of the object's record."""

    __slots__ = ("at",)

    def __init__(self, at: int) -> None:
        self.at = at

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        return obj._words[obj._base + self.at]

    def __set__(self, obj: Any, value: Any) -> None:
        obj._words[obj._base + self.at] = int(value)


class _Float(_Word):
    """A float field; None is stored as NaN (error times, slow-start start)."""

    __slots__ = ()

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        value = obj._floats[obj._base + self.at]
        return None if value != value else value

    def __set__(self, obj: Any, value: Any) -> None:
        obj._floats[obj._base + self.at] = math.nan if value is None else float(value)


class _Plain(_Word):
    """A float that is never None (carry, reset time)."""

    __slots__ = ()

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        return obj._floats[obj._base + self.at]

    def __set__(self, obj: Any, value: Any) -> None:
        obj._floats[obj._base + self.at] = float(value)


class _Bool(_Word):
    __slots__ = ()

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        return obj._words[obj._base + self.at] != 0


class _Choice(_Word):
    """An Enum field, stored as its position in the Enum."""

    __slots__ = ("index", "values")

    def __init__(self, at: int, enum: type[Enum]) -> None:
        super().__init__(at)
        self.values = tuple(enum)
        self.index = {v: i for i, v in enumerate(self.values)}

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        return self.values[obj._words[obj._base + self.at]]

    def __set__(self, obj: Any, value: Any) -> None:
        obj._words[obj._base + self.at] = self.index[value]


class _Text:
    """A string field of up to NAME_SIZE - 1 UTF-8 bytes (route, domain, ...)."""

    __slots__ = ("at",)

    def __init__(self, at: int) -> None:
        self.at = at

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        at = obj._base * 8 + self.at
        raw = bytes(obj._view[at : at + NAME_SIZE])
        return raw[: raw.find(b"\0")].decode("utf-8", "replace") if b"\0" in raw else ""

    def __set__(self, obj: Any, value: Any) -> None:
        raw = str(value).encode("utf-8")[: NAME_SIZE - 1]
        at = obj._base * 8 + self.at
        obj._view[at : at + NAME_SIZE] = raw.ljust(NAME_SIZE, b"\0")


class _Busy:
    """Forwards in flight: one word per process slot, summed (see the module docstring)."""

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        at = obj._base + _BUSY_AT // 8
        return sum(obj._words[at : at + MAX_PROCS])

    def __set__(self, obj: Any, value: Any) -> None:
        at = obj._base + _BUSY_AT // 8
        words = obj._words
        own = at + obj._slot
        others = sum(words[at : at + MAX_PROCS]) - words[own]
        words[own] = max(0, int(value) - others)


def _layout(cls: type, specs: Sequence[tuple[str, str]]) -> tuple[str, ...]:
    """Install a descriptor per (field, kind) on ``cls``; returns the field names."""
    word = text = 0
    for name, kind in specs:
        if kind == "text":
            setattr(cls, name, _Text(_STRINGS_AT + text * NAME_SIZE))
            text += 1
            continue
        at = _WORDS_AT // 8 + word
        word += 1
        if kind == "int":
            setattr(cls, name, _Word(at))
        elif kind == "float?":
            setattr(cls, name, _Float(at))
        elif kind == "float":
            setattr(cls, name, _Plain(at))
        elif kind == "bool":
            setattr(cls, name, _Bool(at))
        else:
            setattr(cls, name, _Choice(at, _ENUMS[kind]))
    assert word <= WORDS and text <= STRINGS, cls
    return tuple(name for name, _ in specs)


_ENUMS: dict[str, type[Enum]] = {
    "state": State,
    "activation": Activation,
    "method": Method,
    "lock": Lock,
}


class SharedMember(Member):
    """A ``Member`` whose runtime numbers are words of a shared record."""

    __slots__ = ("_base", "_floats", "_slot", "_view", "_words")

    def note_busy(self, delta: int) -> None:
        # this process's slot only: another process's in-flight count is not ours to change
        own = self._base + _BUSY_AT // 8 + self._slot
        self._words[own] = max(0, self._words[own] + delta)
        busy = self.busy
        if busy > self.max_busy:
            self.max_busy = busy


SHARED_MEMBER_FIELDS = _layout(
    SharedMember,
    [
        ("distance", "int"),
        ("lbfactor", "int"),
        ("activation", "activation"),
        ("retries", "int"),
        ("retry_interval", "int"),
        ("recovery_options", "int"),
        ("busy_limit", "int"),
        ("reply_timeout", "int"),
        ("state", "state"),
        ("lb_mult", "int"),
        ("lb_value", "int"),
        ("first_error_time", "float?"),
        ("last_error_time", "float?"),
        ("elected", "int"),
        ("sessions", "int"),
        ("errors", "int"),
        ("client_errors", "int"),
        ("reply_timeouts", "int"),
        ("bytes_read", "int"),
        ("bytes_transferred", "int"),
        ("max_busy", "int"),
        ("sticky_hits", "int"),
        ("sticky_misses", "int"),
        ("failovers", "int"),
        ("chosen_since_maintenance", "bool"),
        ("last_reset", "float"),
        ("health_down", "bool"),
        ("slow_start_since", "float?"),
        ("slow_start_carry", "float"),
        ("route", "text"),
        ("domain", "text"),
        ("redirect", "text"),
        ("last_error_reason", "text"),
    ],
)
SharedMember.busy = _Busy()  # type: ignore[assignment,misc]


class SharedSettings(LbSettings):
    """An lb's ``LbSettings`` (what the status page edits) in a shared record."""

    __slots__ = ("_base", "_floats", "_slot", "_view", "_words")


SHARED_SETTING_FIELDS = _layout(
    SharedSettings,
    [
        ("sticky_session", "bool"),
        ("sticky_session_force", "bool"),
        ("method", "method"),
        ("lock", "lock"),
        ("retries", "int"),
        ("lb_retries", "int"),
        ("retry_interval", "int"),
        ("recover_time", "int"),
        ("error_escalation_time", "int"),
        ("max_reply_timeouts", "int"),
        ("set_session_cookie", "bool"),
        ("session_cookie", "text"),
        ("session_path", "text"),
        ("session_cookie_path", "text"),
    ],
)


# -- the state interface the engine builds its members through ---------------------------------


class ShmState:
    """N processes: records in ``table``. The ``owner`` (the supervisor) claims records and
    writes their starting values when a member is new or its configuration changed; the
    data-plane processes (``slot`` = their process slot) only bind to them."""

    def __init__(self, table: Table, slot: int, owner: bool) -> None:
        self.table = table
        self.slot = slot
        self.owner = owner

    def _bind(self, obj: Any, index: int) -> None:
        obj._words = self.table.words
        obj._floats = self.table.floats
        obj._view = self.table.view
        obj._base = self.table.record_word(index)
        obj._slot = self.slot

    def _record(self, lb: str, name: str, config: object) -> tuple[int, bool]:
        """(record index, whether the caller must write starting values)."""
        mark = fingerprint(config)
        if self.owner:
            index = self.table.allocate(lb, name)
            fresh = self.table.fingerprint_of(index) != mark
            return index, fresh
        index = self.table.find(lb, name)
        if index < 0 or self.table.fingerprint_of(index) != mark:
            raise TableFull(f"no shared record for {lb}/{name} in this configuration")
        return index, False

    def member(self, lb: str, config: MemberConfig, now: float) -> Member:
        local = Member.from_config(config, now)
        try:
            index, fresh = self._record(lb, config.name, config)
        except TableFull as exc:
            if self.owner:
                raise
            # a data-plane process read a file the supervisor has not (yet) loaded: it serves
            # this member with its own numbers rather than not at all
            log.warning("member not shared: %s", exc)
            return local
        shared = SharedMember.__new__(SharedMember)
        self._bind(shared, index)
        for f in fields(Member):
            if f.name not in SHARED_MEMBER_FIELDS and f.name != "busy":
                setattr(shared, f.name, getattr(local, f.name))
        if fresh:
            for name in SHARED_MEMBER_FIELDS:
                setattr(shared, name, getattr(local, name))
            self.table.set_fingerprint(index, fingerprint(config))
        return shared

    def settings(self, config: LbConfig) -> LbSettings:
        local = LbSettings.from_config(config)
        try:
            index, _ = self._record(config.name, "", config)
        except TableFull as exc:
            if self.owner:
                raise
            log.warning("lb settings not shared: %s", exc)
            return local
        shared = SharedSettings.__new__(SharedSettings)
        self._bind(shared, index)
        for f in fields(LbSettings):
            if f.name not in SHARED_SETTING_FIELDS:
                setattr(shared, f.name, getattr(local, f.name))
        if self.owner:  # a reload is an explicit edit: the lb's settings come from the file
            for name in SHARED_SETTING_FIELDS:
                setattr(shared, name, getattr(local, name))
            self.table.set_fingerprint(index, fingerprint(config))
        return shared
