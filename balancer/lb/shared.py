"""The engine's numbers in shared records: ``SharedMember``, ``SharedSettings``, ``ShmState``.

``SharedMember`` is a ``Member`` and ``SharedSettings`` an ``LbSettings`` whose runtime fields are
descriptors over 8-byte words (and 64-byte strings) of one record of a ``Table`` (shm.py), so
the engine's decision code reads and writes them as before. Compiled (shared.pxd, setup.py),
the descriptors are extension types over typed memoryviews: a field read is a C load, where
the same descriptor in Python costs a Python call (~0.3 µs, some 30 per request; see
docs/benchmarks.md, "The compiled engine"). ``ShmState`` is the ``LbState``
(state.py) that builds them: the supervisor claims and initialises records, the data-plane
processes bind to them. See shm.py for the concurrency rules.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from enum import Enum
from typing import Any

from balancer.config.model import Activation, LbConfig, Lock, MemberConfig, Method
from balancer.lb.member import FIELDS, LB_VALUE_MAX, Member, State
from balancer.lb.settings import FIELDS as SETTING_FIELDS
from balancer.lb.settings import LbSettings
from balancer.lb.shm import (
    BUSY_AT,
    MAX_PROCS,
    NAME_SIZE,
    STRINGS,
    STRINGS_AT,
    WORDS,
    WORDS_AT,
    Table,
    TableFull,
    fingerprint,
)

log = logging.getLogger("pyjk.balancer")


# -- fields as words of a record ------------------------------------------------------------


# The record's last word counts writes of its string fields: a process decodes them again
# only when it changed (a route is read on every sticky request, and rarely edited).
TEXT_VERSION = WORDS_AT // 8 + WORDS - 1
_BUSY_WORD = BUSY_AT // 8  # a record's busy words: _BUSY_WORD .. _BUSY_WORD + MAX_PROCS - 1
_PROCS = MAX_PROCS


class _Record:
    """Where one shared object's fields are: the table's words, doubles and bytes, the
    record's first word and this process's busy slot. Compiled (shared.pxd), the views are
    typed memoryviews, so a field is one C load or store; that is why the descriptors below
    reach the buffer through this one object rather than through attributes of the member.
    ``texts``: this process's decoded string fields, good while ``text_version`` is the
    record's."""

    def __init__(self, table: Table, index: int, slot: int) -> None:
        self.words = table.words
        self.floats = table.floats
        self.view = table.view
        self.base = table.record_word(index)
        self.slot = slot
        self.text_version = -1
        self.texts: list[str] = [""] * STRINGS


def _texts(rec: _Record) -> list[str]:
    """The record's string fields, decoded again when another write came in since."""
    version = rec.words[rec.base + TEXT_VERSION]
    if version != rec.text_version:
        at = rec.base * 8 + STRINGS_AT
        raw = bytes(rec.view[at : at + STRINGS * NAME_SIZE])
        texts = []
        for k in range(STRINGS):
            field = raw[k * NAME_SIZE : (k + 1) * NAME_SIZE]
            end = field.find(b"\0")
            texts.append((field if end < 0 else field[:end]).decode("utf-8", "replace"))
        # a write between the two reads of the version: decode again on the next read
        rec.texts = texts
        rec.text_version = version if rec.words[rec.base + TEXT_VERSION] == version else -1
    return rec.texts


def _record_of(obj: Any) -> _Record:
    return obj._rec  # type: ignore[no-any-return]


def _busy_sum(rec: _Record) -> int:
    """The busy words of every process slot, added up."""
    at = rec.base + _BUSY_WORD
    total = 0
    for k in range(at, at + _PROCS):
        total += rec.words[k]
    return total


class _Word:
    """An int field: one 8-byte word of the object's record."""

    def __init__(self, at: int) -> None:
        self.at = at

    def __get__(self, obj: Any, owner: type | None) -> Any:
        if obj is None:
            return self
        rec = _record_of(obj)
        return rec.words[rec.base + self.at]

    def __set__(self, obj: Any, value: Any) -> None:
        rec = _record_of(obj)
        rec.words[rec.base + self.at] = int(value)


class _Float(_Word):
    """A float field; None is stored as NaN (error times, slow-start start)."""

    def __get__(self, obj: Any, owner: type | None) -> Any:
        if obj is None:
            return self
        rec = _record_of(obj)
        value = rec.floats[rec.base + self.at]
        return None if value != value else value

    def __set__(self, obj: Any, value: Any) -> None:
        rec = _record_of(obj)
        rec.floats[rec.base + self.at] = math.nan if value is None else float(value)


class _Plain(_Word):
    """A float that is never None (carry, reset time)."""

    def __get__(self, obj: Any, owner: type | None) -> Any:
        if obj is None:
            return self
        rec = _record_of(obj)
        return rec.floats[rec.base + self.at]

    def __set__(self, obj: Any, value: Any) -> None:
        rec = _record_of(obj)
        rec.floats[rec.base + self.at] = float(value)


class _Bool(_Word):
    def __get__(self, obj: Any, owner: type | None) -> Any:
        if obj is None:
            return self
        rec = _record_of(obj)
        return rec.words[rec.base + self.at] != 0


class _Choice(_Word):
    """An Enum field, stored as its position in the Enum."""

    def __init__(self, at: int, enum: type[Enum]) -> None:
        super().__init__(at)
        self.values = tuple(enum)
        self.index = {v: i for i, v in enumerate(self.values)}

    def __get__(self, obj: Any, owner: type | None) -> Any:
        if obj is None:
            return self
        rec = _record_of(obj)
        return self.values[rec.words[rec.base + self.at]]

    def __set__(self, obj: Any, value: Any) -> None:
        rec = _record_of(obj)
        rec.words[rec.base + self.at] = self.index[value]


class _Text:
    """A string field of up to NAME_SIZE - 1 UTF-8 bytes (route, domain, ...): the
    ``index``-th of the record's strings."""

    def __init__(self, index: int) -> None:
        self.index = index

    def __get__(self, obj: Any, owner: type | None) -> Any:
        if obj is None:
            return self
        return _texts(_record_of(obj))[self.index]

    def __set__(self, obj: Any, value: Any) -> None:
        rec = _record_of(obj)
        raw = str(value).encode("utf-8")[: NAME_SIZE - 1]
        at = rec.base * 8 + STRINGS_AT + self.index * NAME_SIZE
        rec.view[at : at + NAME_SIZE] = raw.ljust(NAME_SIZE, b"\0")
        rec.words[rec.base + TEXT_VERSION] += 1  # after the bytes: see _texts


class _Busy:
    """Forwards in flight: one word per process slot, summed (see the module docstring)."""

    def __get__(self, obj: Any, owner: type | None) -> Any:
        if obj is None:
            return self
        return _busy_sum(_record_of(obj))

    def __set__(self, obj: Any, value: Any) -> None:
        rec = _record_of(obj)
        own = rec.base + _BUSY_WORD + rec.slot
        others = _busy_sum(rec) - rec.words[own]
        rec.words[own] = max(0, int(value) - others)


def _layout(cls: type, specs: Sequence[tuple[str, str]]) -> tuple[str, ...]:
    """Install a descriptor per (field, kind) on ``cls``; returns the field names."""
    word = text = 0
    for name, kind in specs:
        if kind == "text":
            setattr(cls, name, _Text(text))
            text += 1
            continue
        at = WORDS_AT // 8 + word
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
    assert word <= WORDS - 1 and text <= STRINGS, cls  # the last word is TEXT_VERSION
    return tuple(name for name, _ in specs)


_ENUMS: dict[str, type[Enum]] = {
    "state": State,
    "activation": Activation,
    "method": Method,
    "lock": Lock,
}


class SharedNumbers(Member):
    """The engine's per-request reads and writes of a ``Member`` (member.py, the end of the
    class), on the member's shared record. Compiled (shared.pxd), an extension type: the
    engine's calls are C calls that read a word of the record, where a field read through the
    descriptors below is a generic attribute lookup and a descriptor call. The word of each
    field comes from the layout (``_at`` below)."""

    _rec: _Record

    def note_busy(self, delta: int) -> None:
        # this process's slot only: another process's in-flight count is not ours to change
        _note_busy(self._rec, delta)

    def clear_error_times(self) -> None:
        rec = self._rec
        rec.floats[rec.base + _FIRST_ERROR_TIME] = math.nan
        rec.floats[rec.base + _LAST_ERROR_TIME] = math.nan

    def read_state(self) -> State:
        rec = self._rec
        return _STATES[rec.words[rec.base + _STATE]]

    def read_activation(self) -> Activation:
        rec = self._rec
        return _ACTIVATIONS[rec.words[rec.base + _ACTIVATION]]

    def read_distance(self) -> int:
        rec = self._rec
        return rec.words[rec.base + _DISTANCE]

    def read_lb_value(self) -> int:
        rec = self._rec
        return rec.words[rec.base + _LB_VALUE]

    def read_lb_mult(self) -> int:
        rec = self._rec
        return rec.words[rec.base + _LB_MULT]

    def read_route(self) -> str:
        return _texts(self._rec)[_ROUTE]

    def read_busy(self) -> int:
        return _busy_sum(self._rec)

    def read_busy_limit(self) -> int:
        rec = self._rec
        return rec.words[rec.base + _BUSY_LIMIT]

    def read_reply_timeout(self) -> int:
        rec = self._rec
        return rec.words[rec.base + _REPLY_TIMEOUT]

    def ramping(self) -> bool:
        rec = self._rec
        since = rec.floats[rec.base + _SLOW_START_SINCE]
        return since == since  # None is stored as NaN

    def add_lb_value(self, delta: int) -> None:
        # saturates as Member.add_lb_value does (a wrapped value would win every choice)
        rec = self._rec
        value = rec.words[rec.base + _LB_VALUE]
        if delta > _LB_VALUE_MAX - value:
            rec.words[rec.base + _LB_VALUE] = _LB_VALUE_MAX
        else:
            rec.words[rec.base + _LB_VALUE] = value + delta

    def set_lb_value(self, value: int) -> None:
        rec = self._rec
        rec.words[rec.base + _LB_VALUE] = value

    def note_elected(self, new_session: bool) -> None:
        rec = self._rec
        rec.words[rec.base + _ELECTED] += 1
        rec.words[rec.base + _CHOSEN] = 1
        if new_session:
            rec.words[rec.base + _SESSIONS] += 1

    def add_traffic(self, sent: int, received: int) -> None:
        rec = self._rec
        if sent > 0:
            rec.words[rec.base + _BYTES_TRANSFERRED] += sent
        if received > 0:
            rec.words[rec.base + _BYTES_READ] += received

    def add_sticky_hit(self) -> None:
        rec = self._rec
        rec.words[rec.base + _STICKY_HITS] += 1


class SharedMember(SharedNumbers):
    """A ``Member`` whose runtime numbers are words of a shared record: its fields are the
    descriptors ``_layout`` installs below (``SharedNumbers`` does the engine's hot reads)."""

    __slots__ = ()


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
SharedMember.busy = _Busy()  # type: ignore[assignment]


def _at(name: str, cls: type = SharedMember) -> int:
    """The word (or, for a string, the index) of ``cls``'s field ``name``."""
    field = vars(cls)[name]
    return field.index if isinstance(field, _Text) else field.at


# where SharedNumbers and SettingsNumbers find each field (C variables, compiled)
_STATE = _at("state")
_ACTIVATION = _at("activation")
_DISTANCE = _at("distance")
_LB_VALUE = _at("lb_value")
_LB_MULT = _at("lb_mult")
_ROUTE = _at("route")
_BUSY_LIMIT = _at("busy_limit")
_REPLY_TIMEOUT = _at("reply_timeout")
_SLOW_START_SINCE = _at("slow_start_since")
_FIRST_ERROR_TIME = _at("first_error_time")
_LAST_ERROR_TIME = _at("last_error_time")
_ELECTED = _at("elected")
_CHOSEN = _at("chosen_since_maintenance")
_SESSIONS = _at("sessions")
_BYTES_TRANSFERRED = _at("bytes_transferred")
_BYTES_READ = _at("bytes_read")
_STICKY_HITS = _at("sticky_hits")
_MAX_BUSY = _at("max_busy")
_LB_VALUE_MAX = LB_VALUE_MAX
_STATES = tuple(State)  # as _Choice stores them: the position in the Enum
_ACTIVATIONS = tuple(Activation)


def _note_busy(rec: _Record, delta: int) -> None:
    own = rec.base + _BUSY_WORD + rec.slot
    mine = rec.words[own] + delta
    rec.words[own] = mine if mine > 0 else 0
    busy = _busy_sum(rec)
    if busy > rec.words[rec.base + _MAX_BUSY]:
        rec.words[rec.base + _MAX_BUSY] = busy


class SettingsNumbers(LbSettings):
    """The plan's per-request reads of an ``LbSettings`` (settings.py), on the shared record
    (see ``SharedNumbers``)."""

    _rec: _Record

    def read_method(self) -> Method:
        rec = self._rec
        return _METHODS[rec.words[rec.base + _METHOD]]

    def read_lb_retries(self) -> int:
        rec = self._rec
        return rec.words[rec.base + _LB_RETRIES]

    def read_set_session_cookie(self) -> bool:
        rec = self._rec
        return rec.words[rec.base + _SET_SESSION_COOKIE] != 0

    def read_sticky_session(self) -> bool:
        rec = self._rec
        return rec.words[rec.base + _STICKY_SESSION] != 0

    # The names are text fields: SharedSettings' descriptors read them from the record's
    # strings. getattr, because compiled, ``self.session_path`` here is LbSettings' C field.
    def read_session_path(self) -> str:
        return getattr(self, "session_path")  # type: ignore[no-any-return]  # noqa: B009

    def read_session_cookie(self) -> str:
        return getattr(self, "session_cookie")  # type: ignore[no-any-return]  # noqa: B009


class SharedSettings(SettingsNumbers):
    """An lb's ``LbSettings`` (what the status page edits) in a shared record."""

    __slots__ = ()


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
_METHOD = _at("method", SharedSettings)
_LB_RETRIES = _at("lb_retries", SharedSettings)
_SET_SESSION_COOKIE = _at("set_session_cookie", SharedSettings)
_STICKY_SESSION = _at("sticky_session", SharedSettings)
_METHODS = tuple(Method)


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
        obj._rec = _Record(self.table, index, self.slot)

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
        shared.forget_route_bytes()
        for name in FIELDS:
            if name not in SHARED_MEMBER_FIELDS and name != "busy":
                setattr(shared, name, getattr(local, name))
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
        for name in SETTING_FIELDS:
            if name not in SHARED_SETTING_FIELDS:
                setattr(shared, name, getattr(local, name))
        if self.owner:  # a reload is an explicit edit: the lb's settings come from the file
            for name in SHARED_SETTING_FIELDS:
                setattr(shared, name, getattr(local, name))
            self.table.set_fingerprint(index, fingerprint(config))
        return shared
