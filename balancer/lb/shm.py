"""One lb state shared by the data-plane processes: fixed-layout records, as mod_jk's JkShmFile.

The engine's *decisions* stay in ``engine.py``/``plan.py``; its *numbers* (lb values, states,
activations, error times, counters, the status page's settings) live in a ``Member`` and an
``LbSettings``. With one process those are plain objects (state.py's ``LOCAL``). With N
processes they are ``SharedMember``/``SharedSettings`` (shared.py): the same classes, whose
fields read and write 8-byte words of one buffer every process maps. The decision code cannot
tell. This module is the buffer's layout (``Table``): a header, a row per process, a record
per lb member and per lb, the configuration text of the current generation, and a small
document per process.

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
- a process row (pid, start, connections, requests, generations) has one writer: its process.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

MAGIC = b"PYJKSHM1"
MAX_PROCS = 64  # process slots
MAX_PROCESSES = MAX_PROCS - 1  # data-plane processes: the last slot is the supervisor's
NAME_SIZE = 64  # bytes of a record key part or a string field (mod_jk: JK_SHM_STR_SIZ 63)
WORDS = 40  # 8-byte numeric fields per record
STRINGS = 4  # string fields per record
HEADER_SIZE = 64  # magic, record count, generation, a 32-byte secret, scrape requests
SECRET_SIZE = 32
PROC_SIZE = 64  # bytes per process row
# record: lb name, member name ("" = the lb's settings), fingerprint, in-use, words, strings,
# one busy word per process slot. The in-use word: IN_USE, FREE, or -G: freed by generation G
# and not reusable until every live process serves G or later (one still on an older
# generation may write it).
KEY_SIZE = 2 * NAME_SIZE
WORDS_AT = KEY_SIZE + 16
STRINGS_AT = WORDS_AT + WORDS * 8
BUSY_AT = STRINGS_AT + STRINGS * NAME_SIZE
RECORD_SIZE = BUSY_AT + MAX_PROCS * 8
DEFAULT_RECORDS = 1024
IN_USE, FREE = 1, 0


# Two slots for the configuration text of a generation (workers.properties, uriworkermap), so
# the processes load what the supervisor checked, not what the files say a moment later.
TEXT_SLOT = 1 << 20
TEXT_HEAD = 32  # a slot's generation (the seqlock) and the lengths of its three parts
# Per process slot: counters whose keys are not known in advance (TLS failures by reason,
# ciphers), as a small document its process rewrites; the others read and add them up. Two
# copies (double buffering): a write goes to the copy not read, then the slot's current word
# names it, so a writer killed mid-write leaves the previous document whole.
BLOB_SIZE = 128 * 1024
BLOB_COPY = (BLOB_SIZE - 8) // 16 * 8  # a copy: its seqlock count, its length, the document
BLOB_MAX = BLOB_COPY - 16  # the traffic histograms of a few hundred members


# The last one-shot ids the status page consumed (a result shown once, by any process).
RING = 64


def table_size(records: int = DEFAULT_RECORDS) -> int:
    return (
        HEADER_SIZE
        + MAX_PROCS * PROC_SIZE
        + records * RECORD_SIZE
        + 2 * TEXT_SLOT
        + MAX_PROCS * BLOB_SIZE
        + (RING + 1) * 8
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
    # the oldest generation whose member objects it still writes through (an exchange in
    # flight planned with an engine of that generation); 0: none older than ``generation``
    holds: int = 0

    @property
    def oldest(self) -> int:
        """The oldest generation whose records this process may still write."""
        return min(self.holds, self.generation) if self.holds > 0 else self.generation


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

    @property
    def asked(self) -> int:
        """How many times a page asked every process to publish its document now."""
        return self.words[7]

    def ask(self) -> None:
        """A scrape's request (two at once may count one: either way everyone publishes)."""
        self.words[7] = self.words[7] + 1

    # -- the configuration text of each generation ----------------------------------------

    def consume(self, token: int) -> bool:
        """Whether ``token`` (non-zero) is seen for the first time; it is remembered among
        the last RING. Two processes consuming the same token at one instant may both be
        first: it only decides whether a message is shown again."""
        at = (table_size(self.records) - (RING + 1) * 8) // 8
        ring = self.words[at + 1 : at + 1 + RING]
        if token in ring.tolist():
            return False
        self.words[at + 1 + self.words[at] % RING] = token
        self.words[at] = self.words[at] + 1
        return True

    def _text_slot(self, generation: int) -> int:
        end = table_size(self.records) - MAX_PROCS * BLOB_SIZE - (RING + 1) * 8
        return end - (2 - generation % 2) * TEXT_SLOT

    # -- per-process documents ----------------------------------------------------------------

    def _blob(self, slot: int) -> int:
        self._proc(slot)  # checks the slot
        return table_size(self.records) - (RING + 1) * 8 - (MAX_PROCS - slot) * BLOB_SIZE

    def _copy(self, slot: int, which: int) -> int:
        return self._blob(slot) + 8 + which * BLOB_COPY

    def write_blob(self, slot: int, data: bytes) -> None:
        """Replace ``slot``'s document (its process only: one writer). It is written into
        the copy not current, under a seqlock (the count is odd while the bytes change, so a
        reader retries instead of reading half), and only then made current: a writer that
        dies mid-write leaves the previous document readable."""
        if len(data) > BLOB_MAX:
            raise TableFull(f"a process document of {len(data)} bytes")
        head = self._blob(slot) // 8
        which = 1 - self.words[head] if self.has_blob(slot) else self.words[head]
        at = self._copy(slot, which)
        seq = self.words[at // 8]
        self.words[at // 8] = seq | 1
        self.words[at // 8 + 1] = len(data)
        self.view[at + 16 : at + 16 + len(data)] = data
        self.words[at // 8] = (seq | 1) + 1
        self.words[head] = which

    def has_blob(self, slot: int) -> bool:
        at = self._copy(slot, self.words[self._blob(slot) // 8])
        return self.words[at // 8 + 1] > 0

    def blob(self, slot: int) -> bytes:
        head = self._blob(slot) // 8
        for _ in range(1000):
            at = self._copy(slot, self.words[head])
            seq = self.words[at // 8]
            if seq % 2:
                continue  # rewritten under us (two writes since we looked): read it again
            n = min(max(self.words[at // 8 + 1], 0), BLOB_MAX)
            data = bytes(self.view[at + 16 : at + 16 + n])
            if self.words[at // 8] == seq:
                return data
        return b""  # a current copy left mid-write: never made current by write_blob

    def publish(self, workers: str, mounts: str, control: str = "") -> int:
        """The supervisor's next generation: its text first, then the generation number.
        ``control``: what the supervisor decided for this generation besides the files (the
        dynamic lbs' members it heard). Returns the new generation."""
        generation = self.generation + 1
        parts = [t.encode("utf-8") for t in (workers, mounts, control)]
        raw = b"".join(parts)
        at = self._text_slot(generation)
        if TEXT_HEAD + len(raw) > TEXT_SLOT:
            raise TableFull(f"configuration text over {TEXT_SLOT} bytes")
        self.words[at // 8] = -1  # being written (a seqlock's odd count)
        for i, part in enumerate(parts):
            self.words[at // 8 + 1 + i] = len(part)
        self.view[at + TEXT_HEAD : at + TEXT_HEAD + len(raw)] = raw
        self.words[at // 8] = generation
        self.generation = generation
        return generation

    def texts(self) -> tuple[int, str, str, str]:
        """(generation, workers text, mounts text, control) of the newest generation, read
        whole: a copy the supervisor overwrote meanwhile is read again."""
        while True:
            generation = self.generation
            at = self._text_slot(generation)
            if self.words[at // 8] != generation:
                continue  # two publishes since we looked: read the newest
            n, m, c = (self.words[at // 8 + 1 + i] for i in range(3))
            raw = bytes(self.view[at + TEXT_HEAD : at + TEXT_HEAD + n + m + c])
            if self.words[at // 8] == generation:
                return (
                    generation,
                    raw[:n].decode("utf-8"),
                    raw[n : n + m].decode("utf-8"),
                    raw[n + m :].decode("utf-8"),
                )

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
        self.words[w + 5] = row.holds
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
                        self.words[w + 5],
                    )
                )
        return rows

    def clear_process(self, slot: int) -> None:
        """A reaped process: its row and its busy counts in every record go. Its document
        stays: what it counted still counts in the totals, and the next process of the slot
        goes on from it."""
        w = self._proc(slot)
        self.words[w : w + PROC_SIZE // 8] = memoryview(bytes(PROC_SIZE)).cast("q")
        for r in range(self.records):
            self.words[self.record_word(r) + (BUSY_AT + slot * 8) // 8] = 0

    # -- records ---------------------------------------------------------------------------

    def record_word(self, index: int) -> int:
        return (HEADER_SIZE + MAX_PROCS * PROC_SIZE + index * RECORD_SIZE) // 8

    def _key(self, index: int) -> tuple[bytes, bytes]:
        at = self.record_word(index) * 8
        return (
            bytes(self.view[at : at + NAME_SIZE]).rstrip(b"\0"),
            bytes(self.view[at + NAME_SIZE : at + KEY_SIZE]).rstrip(b"\0"),
        )

    def _in_use(self, index: int) -> int:
        return self.words[self.record_word(index) + KEY_SIZE // 8 + 1]

    def find(self, lb: str, member: str) -> int:
        """The record of (lb, member), or -1."""
        key = (_name(lb), _name(member))
        for i in range(self.records):
            if self._in_use(i) == IN_USE and self._key(i) == key:
                return i
        return -1

    def allocate(self, lb: str, member: str) -> int:
        """The record of (lb, member), claimed if new (the supervisor only: one writer). A
        never-used record first; else a freed one, the longest freed first, once no live
        process serves an older generation or still writes through an older generation's
        member objects (an exchange in flight planned before a reload: ``ProcessRow.holds``)."""
        found = self.find(lb, member)
        if found >= 0:
            return found
        oldest = min((r.oldest for r in self.processes()), default=self.generation)
        chosen, freed_by = -1, 0
        for i in range(self.records):
            used = self._in_use(i)
            if used == FREE:
                chosen = i
                break
            if used < 0 and -used <= oldest and (chosen < 0 or -used < freed_by):
                chosen, freed_by = i, -used
        if chosen < 0:
            raise TableFull(f"the shared lb table has no free record for {lb}/{member}")
        w = self.record_word(chosen)
        at = w * 8
        self.view[at : at + RECORD_SIZE] = bytes(RECORD_SIZE)
        self.view[at : at + NAME_SIZE] = _name(lb).ljust(NAME_SIZE, b"\0")
        self.view[at + NAME_SIZE : at + KEY_SIZE] = _name(member).ljust(NAME_SIZE, b"\0")
        self.words[w + KEY_SIZE // 8 + 1] = IN_USE
        return chosen

    def release_except(self, keep: set[tuple[str, str]], generation: int) -> list[tuple[str, str]]:
        """Free the records of members ``generation`` no longer has (a reload removed them, or
        they left a dynamic lb); the supervisor only. They are reused once every live process
        serves ``generation``: until then a process on an older one may still write them.
        Returns the (lb, member) keys freed."""
        wanted = {(_name(lb), _name(m)) for lb, m in keep}
        freed = []
        for i in range(self.records):
            key = self._key(i)
            if self._in_use(i) == IN_USE and key not in wanted:
                self.words[self.record_word(i) + KEY_SIZE // 8 + 1] = -generation
                freed.append((key[0].decode("utf-8"), key[1].decode("utf-8")))
        return freed

    def fingerprint_of(self, index: int) -> int:
        return self.words[self.record_word(index) + KEY_SIZE // 8]

    def set_fingerprint(self, index: int, value: int) -> None:
        self.words[self.record_word(index) + KEY_SIZE // 8] = value


def _name(text: str) -> bytes:
    raw = text.encode("utf-8")
    if len(raw) >= NAME_SIZE:
        raise ValueError(f"name {text!r} longer than {NAME_SIZE - 1} bytes")
    return raw
