"""TCP between members: length-prefixed sealed frames, one outgoing link per member, acks.

Frame: a 4-byte big-endian length, then a sealed envelope (seal.py) holding one JSON message
(codec.py). Each direction of each connection is its own sealed stream. The first frame on a
connection must be a Hello from the member whose id is in the envelope; every later frame must
come from that same stream, so frames cannot be spliced in from elsewhere. A connection whose
Hello names no target member (`to = None`) is a probe: it gets a Hello back and is closed.

Requests travel on the sender's *outgoing* link to a member; replies (acks, snapshot chunks)
come back on the same connection. So each pair of members has two connections, one per
direction, and a member's deltas to another arrive in the order it numbered them.

A frame that fails to open or decode is dropped and counted (`drop_<reason>`), never fatal to
the node; a bad length prefix (over `max_frame`) or a frame cut short ends that connection.
Nothing here decides anything: the node (node.py) gets every Hello and message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

from . import codec
from .cache_codec import CacheReply, CacheReq
from .codec import Ack, DeltaMsg, Hello, Message, Pull, StateChunk
from .member_info import MemberInfo
from .seal import Kind, Opener, Sealer, SealError

log = logging.getLogger("pyjk.cluster")

PREFIX = struct.Struct("!I")
MAX_WRITE_BUFFER = 64 * 1024 * 1024
RECONNECT_DELAY = 0.1


class FrameError(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass
class Faults:
    """Test-only fault injection (off unless PYJK_CLUSTER_FAULTS=1): drop every frame and
    heartbeat this node sends or receives, as if its network were cut."""

    cut: bool = False


class Handler(Protocol):
    def make_hello(
        self, to: str | None, *, reply: bool, first_seq: int | None = None, shutdown: bool = False
    ) -> Hello: ...

    def on_hello(self, hello: Hello, *, incoming: bool) -> bool: ...

    def on_message(self, peer: MemberInfo, msg: Message, endpoint: Endpoint) -> None: ...

    def on_link_lost(self, member_id: str) -> None: ...


async def read_frame(reader: asyncio.StreamReader, max_frame: int) -> bytes | None:
    """One frame's bytes; None at a clean end of stream; FrameError otherwise."""
    try:
        head = await reader.readexactly(PREFIX.size)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise FrameError("truncated") from None
    (size,) = PREFIX.unpack(head)
    if size > max_frame:
        raise FrameError("oversized")
    try:
        return await reader.readexactly(size)
    except asyncio.IncompleteReadError:
        raise FrameError("truncated") from None


class Endpoint:
    """This node's side of one connection: seals what it writes, opens and checks what it reads."""

    def __init__(
        self, channel: Channel, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.channel, self.reader, self.writer = channel, reader, writer
        self.sealer = channel.new_sealer()
        self.bound: tuple[bytes, int, int, int] | None = None
        self.peer: MemberInfo | None = None

    def write(self, msg: Message) -> bool:
        ch = self.channel
        if ch.faults.cut:
            ch.counters["drop_fault_out"] += 1
            return False
        if self.writer.is_closing():
            return False
        blob = self.sealer.seal(codec.encode(msg), ch.clock())
        self.writer.write(PREFIX.pack(len(blob)) + blob)
        ch.counters["frames_out"] += 1
        ch.counters["bytes_out"] += PREFIX.size + len(blob)
        if self.peer is not None:
            per_peer = ch.per_peer[self.peer.route]
            per_peer["frames_out"] += 1
            per_peer["bytes_out"] += PREFIX.size + len(blob)
        if self.writer.transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
            log.warning("peer too slow, closing connection peer=%s", self.peer and self.peer.route)
            ch.counters["slow_peer_closed"] += 1
            self.writer.close()
            return False
        return True

    async def read(self) -> Message | None:
        """The next good message; None when the connection ended or its first frame was bad."""
        ch = self.channel
        while True:
            try:
                data = await read_frame(self.reader, ch.max_frame)
            except FrameError as exc:
                ch.counters[f"drop_{exc.reason}"] += 1
                return None
            if data is None:
                return None
            ch.counters["bytes_in"] += PREFIX.size + len(data)
            if ch.faults.cut:
                ch.counters["drop_fault_in"] += 1
                continue
            msg = self._open(data)
            if msg is not None:
                ch.counters["frames_in"] += 1
                if self.peer is not None:  # known once its Hello was taken
                    per_peer = ch.per_peer[self.peer.route]
                    per_peer["frames_in"] += 1
                    per_peer["bytes_in"] += PREFIX.size + len(data)
                return msg
            if self.bound is None:  # a connection that starts with garbage is not worth keeping
                return None

    def _open(self, data: bytes) -> Message | None:
        ch = self.channel
        try:
            opened = ch.opener.open(data, ch.clock())
            if opened.kind is not Kind.FRAME:
                raise SealError("malformed", "a heartbeat envelope on a TCP connection")
            if self.bound is not None and opened.stream_key != self.bound:
                raise SealError("stream", "frame from another stream spliced into this one")
            msg = codec.decode(opened.payload)
        except SealError as exc:
            ch.counters[f"drop_{exc.reason}"] += 1
            return None
        except codec.CodecError as exc:
            ch.counters["drop_malformed"] += 1
            log.debug("malformed frame dropped: %s", exc)
            return None
        if self.bound is None:
            if not isinstance(msg, Hello) or msg.member.id != opened.sender.hex():
                ch.counters["drop_malformed"] += 1
                return None
            self.bound = opened.stream_key
        return msg

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class Link:
    """This node's persistent outgoing connection to one member (connects on first use)."""

    def __init__(self, channel: Channel, member: MemberInfo) -> None:
        self.channel, self.member = channel, member
        self._ep: Endpoint | None = None
        self._task: asyncio.Task[None] | None = None
        self._pending: list[Message] = []
        self._n = 0
        self._acks: dict[int, asyncio.Future[None]] = {}
        self._pulls: dict[int, asyncio.Queue[StateChunk | None]] = {}
        self._requests: dict[int, asyncio.Future[CacheReply]] = {}
        self._closed = False

    @property
    def connected(self) -> bool:
        return self._ep is not None

    def send(self, msg: Message) -> asyncio.Future[None] | None:
        """Queue or write `msg`; a DeltaMsg gets a future resolved by its ack."""
        future = None
        if isinstance(msg, DeltaMsg):
            self._n += 1
            msg = replace(msg, n=self._n)
            future = asyncio.get_running_loop().create_future()
            self._acks[self._n] = future
        self._write(msg)
        return future

    def pull(self, msg: Pull) -> asyncio.Queue[StateChunk | None]:
        """Send a pull; its chunks arrive on the queue, None if the connection is lost."""
        self._n += 1
        queue: asyncio.Queue[StateChunk | None] = asyncio.Queue()
        self._pulls[self._n] = queue
        self._write(replace(msg, n=self._n))
        return queue

    def request(self, msg: CacheReq) -> asyncio.Future[CacheReply]:
        """Send a cache request; the future gets its reply, or ConnectionError if the link
        is lost first."""
        self._n += 1
        future: asyncio.Future[CacheReply] = asyncio.get_running_loop().create_future()
        n = self._n
        self._requests[n] = future
        # an asker that gave up (its timeout cancels the future) leaves no entry behind
        future.add_done_callback(lambda _: self._requests.pop(n, None))
        self._write(replace(msg, n=n))
        return future

    def _write(self, msg: Message) -> None:
        if self._closed:
            return
        if self._ep is not None:
            self._ep.write(msg)
            return
        self._pending.append(msg)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"link-{self.member.route}")

    async def _run(self) -> None:
        ch, member = self.channel, self.member
        writer = None
        try:
            await asyncio.sleep(0 if ch.last_failure(member.id) is None else RECONNECT_DELAY)
            async with asyncio.timeout(ch.connect_timeout):
                reader, writer = await asyncio.open_connection(member.host, member.port)
            ep = Endpoint(ch, reader, writer)
            ep.peer = member
            seqs = [m.seq for m in self._pending if isinstance(m, DeltaMsg)]
            first_seq = min(seqs) - 1 if seqs else None
            ep.write(ch.handler.make_hello(member.id, reply=False, first_seq=first_seq))
            for msg in self._pending:
                ep.write(msg)
            self._pending.clear()
            self._ep = ep
            first = await ep.read()
            me = ch.sender.hex()
            if not (
                isinstance(first, Hello)
                and first.reply
                and first.member.id == member.id
                and first.to == me
                and ch.handler.on_hello(first, incoming=False)
            ):
                ch.counters["hello_refused"] += 1
                return
            while (received := await ep.read()) is not None:
                self._dispatch(received)
        except (OSError, TimeoutError) as exc:
            log.debug("link to %s failed: %r", member.route, exc)
        finally:
            self._ep = None
            if writer is not None:
                writer.close()
            ch.note_failure(member.id)
            self._fail_waiters()
            if not self._closed:
                ch.handler.on_link_lost(member.id)

    def _dispatch(self, msg: Message) -> None:
        if isinstance(msg, Ack):
            future = self._acks.pop(msg.n, None)
            if future is not None and not future.done():
                future.set_result(None)
        elif isinstance(msg, StateChunk):
            queue = self._pulls.get(msg.n)
            if queue is not None:
                queue.put_nowait(msg)
                if msg.final:
                    del self._pulls[msg.n]
        elif isinstance(msg, CacheReply):
            waiting = self._requests.pop(msg.n, None)
            if waiting is not None and not waiting.done():
                waiting.set_result(msg)
        else:
            self.channel.counters["drop_unexpected"] += 1

    def _fail_waiters(self) -> None:
        self.channel.counters["frames_lost"] += len(self._pending)
        self._pending.clear()
        for future in self._acks.values():
            if not future.done():
                future.set_exception(ConnectionError(f"link to {self.member.route} lost"))
                future.exception()  # retrieved here: nobody may be waiting any more
        self._acks.clear()
        for waiting in self._requests.values():
            if not waiting.done():
                waiting.set_exception(ConnectionError(f"link to {self.member.route} lost"))
                waiting.exception()
        self._requests.clear()
        for queue in self._pulls.values():
            queue.put_nowait(None)
        self._pulls.clear()

    async def close(self) -> None:
        self._closed = True
        if self._ep is not None:
            self._ep.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


class Channel:
    def __init__(
        self,
        handler: Handler,
        *,
        key: bytes | None,
        sender: bytes,
        epoch_ms: int,
        opener: Opener,
        counters: Counter[str],
        clock: Callable[[], float],
        max_frame: int,
        connect_timeout: float,
        faults: Faults,
    ) -> None:
        self.handler, self.opener, self.counters, self.clock = handler, opener, counters, clock
        self.key, self.sender, self.epoch_ms = key, sender, epoch_ms
        self.max_frame, self.connect_timeout, self.faults = max_frame, connect_timeout, faults
        self.links: dict[str, Link] = {}
        self._server: asyncio.Server | None = None
        # frames and bytes by peer route, for /metrics (the counters above are the totals)
        self.per_peer: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self._incoming: set[Endpoint] = set()
        self._failures: dict[str, float] = {}

    def new_sealer(self) -> Sealer:
        return Sealer(self.key, self.sender, self.epoch_ms, Kind.FRAME)

    async def start(self, host: str, port: int) -> int:
        self._server = await asyncio.start_server(self._serve, host, port)
        return int(self._server.sockets[0].getsockname()[1])

    def link(self, member: MemberInfo) -> Link:
        link = self.links.get(member.id)
        if link is None:
            link = self.links[member.id] = Link(self, member)
        return link

    async def drop_link(self, member_id: str, route: str | None = None) -> None:
        """Forget a member that left: its link, its failure mark and (when no other member
        has its route: a restart comes back under a new id) its per-peer counters."""
        link = self.links.pop(member_id, None)
        self._failures.pop(member_id, None)
        if route is not None and all(other.member.route != route for other in self.links.values()):
            self.per_peer.pop(route, None)
        if link is not None:
            await link.close()

    def note_failure(self, member_id: str) -> None:
        self._failures[member_id] = self.clock()

    def last_failure(self, member_id: str) -> float | None:
        return self._failures.get(member_id)

    def link_down(self, member_id: str) -> bool:
        """The link to the member failed and is not connected again (a killed member's link
        fails at once: its kernel resets the connection)."""
        if member_id not in self._failures:
            return False
        link = self.links.get(member_id)
        return link is None or not link.connected

    async def probe(
        self, host: str, port: int, timeout: float, *, shutdown: bool = False
    ) -> Hello | None:
        """Open a connection, trade Hellos, close: the peer's Hello, or None if it failed."""
        return (await self.probe_verdict(host, port, timeout, shutdown=shutdown))[0]

    async def probe_verdict(
        self, host: str, port: int, timeout: float, *, shutdown: bool = False
    ) -> tuple[Hello | None, bool]:
        """As probe(), and whether the connection was refused: the host answered that nothing
        listens there — proof the member's process is gone, which a timeout is not."""
        writer = None
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(host, port)
                ep = Endpoint(self, reader, writer)
                ep.write(self.handler.make_hello(None, reply=False, shutdown=shutdown))
                msg = await ep.read()
        except ConnectionRefusedError:
            return None, True
        except (OSError, TimeoutError):
            return None, False
        finally:
            if writer is not None:
                writer.close()
        return (msg if isinstance(msg, Hello) and msg.reply else None), False

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ep = Endpoint(self, reader, writer)
        self._incoming.add(ep)
        try:
            first = await ep.read()
            me = self.sender.hex()
            if (
                not isinstance(first, Hello)
                or first.reply
                or first.to not in (None, me)
                or not self.handler.on_hello(first, incoming=True)
            ):
                self.counters["hello_refused"] += 1
                return
            ep.peer = first.member
            ep.write(self.handler.make_hello(first.member.id, reply=True))
            if first.to is None:  # a probe
                await writer.drain()
                return
            while (msg := await ep.read()) is not None:
                self.handler.on_message(first.member, msg, ep)
        except (OSError, TimeoutError):
            pass
        except Exception:
            log.exception("cluster connection handling failed")
        finally:
            self._incoming.discard(ep)
            ep.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in list(self.links.values()):
            await link.close()
        self.links.clear()
        for ep in list(self._incoming):
            ep.close()
        if self._server is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await self._server.wait_closed()
