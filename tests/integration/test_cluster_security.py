"""Hostile traffic against a running member: forged, replayed, truncated and garbage heartbeats
and frames are dropped and counted, and the cluster keeps working."""

from __future__ import annotations

import os
import socket
import struct
import time

import pytest

from replication import codec
from replication.codec import Heartbeat, Hello, MemberInfo
from replication.keyfile import parse_key
from replication.seal import Kind, Sealer
from tests.integration.test_cluster_kit import (
    Cluster,
    Node,
    cluster,
    multicast_socket,
    session_cookie,
    wait_until,
)

__all__ = ["cluster"]

pytestmark = pytest.mark.integration
GROUP = "228.0.0.4"
HEADER_SENDER = slice(7, 23)  # magic 4, version 1, flags 1, kind 1, then the sender id (seal.py)


def grew(node: Node, before: dict[str, int], name: str, by: int = 1) -> bool:
    return node.counters().get(name, 0) >= before.get(name, 0) + by


def receiver(node: Node) -> tuple[str, int]:
    me = next(m for m in node.manager()["members"] if m["state"] == "self")
    return me["host"], me["port"]


def send_tcp(address: tuple[str, int], data: bytes) -> bytes:
    """Write `data`, half-close, and return whatever the member answers before closing."""
    with socket.create_connection(address, timeout=5) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def frame(blob: bytes) -> bytes:
    return struct.pack("!I", len(blob)) + blob


def fake_member(port: int = 9) -> tuple[bytes, MemberInfo]:
    sender = os.urandom(16)
    return sender, MemberInfo(sender.hex(), "mallory", "127.0.0.1", port, time.time())


def test_hostile_heartbeats_are_dropped_and_counted(cluster: Cluster):
    a, b = cluster.start_many(["node1", "node2"])
    wait_until(lambda: a.routes() == {"node1", "node2"}, 5, "a and b to meet")
    sock = multicast_socket(GROUP, cluster.mport)
    try:
        before = a.counters()
        sock.sendto(os.urandom(120), (GROUP, cluster.mport))  # garbage
        wait_until(lambda: grew(a, before, "drop_malformed"), 5, "garbage counted")

        sender, mallory = fake_member()
        hb = codec.encode(Heartbeat(cluster.name, mallory, 0, "0" * 16, False))
        forged = Sealer(os.urandom(32), sender, 1, Kind.HEARTBEAT).seal(hb, time.time())
        sock.sendto(forged, (GROUP, cluster.mport))  # sealed with a key of its own
        wait_until(lambda: grew(a, before, "drop_auth"), 5, "forgery counted")

        b_id = bytes.fromhex(b.manager()["self"])
        for _ in range(200):  # capture one of b's real heartbeats off the group ...
            data = sock.recv(65536)
            if data[HEADER_SENDER] == b_id:
                break
        else:
            raise AssertionError("no heartbeat of b seen on the group")
        sock.sendto(data, (GROUP, cluster.mport))  # ... and play it again
        wait_until(lambda: grew(a, before, "drop_replay"), 5, "replay counted")
        sock.sendto(data[:30], (GROUP, cluster.mport))  # cut short, inside the header
        wait_until(lambda: grew(a, before, "drop_malformed", 2), 5, "truncation counted")
    finally:
        sock.close()
    assert a.routes() == {"node1", "node2"}  # mallory never joined; b is still there


def test_hostile_frames_are_dropped_counted_and_the_node_keeps_replicating(cluster: Cluster):
    a, b = cluster.start_many(["node1", "node2"])
    wait_until(lambda: a.routes() == {"node1", "node2"}, 5, "a and b to meet")
    address = receiver(a)
    before = a.counters()

    assert send_tcp(address, frame(os.urandom(200))) == b""  # garbage: closed, no answer
    wait_until(lambda: grew(a, before, "drop_malformed"), 5, "garbage frame counted")

    assert send_tcp(address, struct.pack("!I", 1 << 30)) == b""  # absurd length prefix
    wait_until(lambda: grew(a, before, "drop_oversized"), 5, "oversized frame counted")

    assert send_tcp(address, struct.pack("!I", 500) + os.urandom(100)) == b""  # then EOF
    wait_until(lambda: grew(a, before, "drop_truncated"), 5, "truncated frame counted")

    sender, mallory = fake_member()
    hello = codec.encode(Hello(cluster.name, mallory, 0, None, False, True))
    forged = Sealer(os.urandom(32), sender, 1, Kind.FRAME).seal(hello, time.time())
    assert send_tcp(address, frame(forged)) == b""
    wait_until(lambda: grew(a, before, "drop_auth"), 5, "forged frame counted")

    # With the real key (someone who stole it and recorded one frame): the first copy is
    # accepted (a shutdown Hello, so nothing joins), the copy on a new connection is not.
    key = parse_key((cluster.tmp / "cluster.key").read_text(), cluster.tmp / "cluster.key")
    recorded = frame(Sealer(key, sender, 1, Kind.FRAME).seal(hello, time.time()))
    assert send_tcp(address, recorded) != b""  # answered with a Hello
    assert send_tcp(address, recorded) == b""
    wait_until(lambda: grew(a, before, "drop_replay"), 5, "replayed frame counted")
    assert a.routes() == {"node1", "node2"}

    # and the node still does its job
    status, headers, _ = a.get("/app/counter")
    cookie = session_cookie(headers)
    status, _, body = b.get("/app/counter", {"Cookie": cookie})
    assert status == 200 and b'"count": 2' in body
