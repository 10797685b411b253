"""Replication benchmark: how fast a write is visible on every peer, and what it costs on the wire.

    python bench/replication_bench.py                 # 300 writes per mode, sync and async
    python bench/replication_bench.py --writes 1000 --modes sync --json repl.json

Three real workers (`python -m worker --cluster ...`) on 127.0.0.1 with loopback multicast, a
fresh cluster name and group port. One session holds ~10 KB (ten 1 KB attributes); each write
changes one small attribute on node1. Measured per write:

- `write`: node1's response time (in sync mode it includes every peer's ack);
- `visible`: from sending the write until node2 *and* node3 both return the new value
  (polled back to back over keep-alive connections, so it includes one poll round trip).

Bytes: the channel's own `bytes_out` counter on node1 per write and peer (a sealed, framed
delta), against the sealed, framed full copy of the same session (what a replication of whole
sessions would send). Every process started here is stopped at exit.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from replication import codec  # noqa: E402
from replication.codec import StateChunk  # noqa: E402
from replication.seal import Kind, Sealer  # noqa: E402
from worker import get_session  # noqa: E402

PAYLOAD_ATTRIBUTES = 10
PAYLOAD_BYTES = 1000


# -- the app the workers run (--app bench.replication_bench:create_app) ---------------------
async def fill(request: web.Request) -> web.Response:
    session = await get_session(request)
    assert session is not None
    for i in range(PAYLOAD_ATTRIBUTES):
        session[f"blob{i}"] = "x" * PAYLOAD_BYTES
    session["v"] = 0
    return web.json_response({"v": 0})


async def write(request: web.Request) -> web.Response:
    session = await get_session(request)
    assert session is not None
    session["v"] = int(request.query["v"])
    return web.json_response({"v": session["v"]})


async def read(request: web.Request) -> web.Response:
    session = await get_session(request, create=False)
    return web.json_response({"v": None if session is None else session.get("v")})


def create_app() -> web.Application:
    app = web.Application()
    app.router.add_post("/bench/fill", fill)
    app.router.add_post("/bench/write", write)
    app.router.add_get("/bench/read", read)
    return app


# -- driving it -------------------------------------------------------------------------------
class Client:
    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def call(self, method: str, path: str, cookie: str | None = None) -> tuple[Any, Any]:
        self.conn.request(method, path, headers={"Cookie": cookie} if cookie else {})
        resp = self.conn.getresponse()
        body = resp.read()
        return json.loads(body) if resp.status == 200 else None, resp.headers


def get_json(port: int, path: str) -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"null")
    finally:
        conn.close()


def start_cluster(tmp: Path, mode: str) -> tuple[list[subprocess.Popen], list[int]]:
    config = tmp / f"cluster-{mode}.toml"
    config.write_text(
        f'name = "bench-{uuid.uuid4().hex[:8]}"\n'
        f"[membership]\nport = {random.randint(20000, 60000)}\nfrequency = 200\n"
        f'[replication]\nsend_mode = "{mode}"\n'
    )
    procs, ports = [], []
    for i in (1, 2, 3):
        port = free_port()
        log = open(tmp / f"node{i}-{mode}.log", "wb")  # noqa: SIM115 - closed with the process
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "worker", "--route", f"node{i}", "--listen",
             f"127.0.0.1:{port}", "--cluster", str(config), "--app",
             "bench.replication_bench:create_app"],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        ))  # fmt: skip
        ports.append(port)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            listings = [get_json(p, "/cluster-manager")[1] for p in ports]
            if all(len(lst["members"]) == 3 and lst["ready"] for lst in listings):
                return procs, ports
        except OSError:
            pass
        time.sleep(0.05)
    stop(procs)
    raise SystemExit(f"the cluster did not form; logs in {tmp}")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_mode(mode: str, writes: int, tmp: Path) -> dict[str, Any]:
    procs, ports = start_cluster(tmp, mode)
    try:
        a, b, c = (Client(p) for p in ports)
        _, headers = a.call("POST", "/bench/fill")
        cookie = headers["Set-Cookie"].split(";")[0]
        session_id = cookie.split("=", 1)[1]
        for peer in (b, c):  # the filled session is everywhere before we start timing
            while peer.call("GET", "/bench/read", cookie)[0]["v"] != 0:
                time.sleep(0.01)
        before = get_json(ports[0], "/cluster-manager")[1]["counters"].get("bytes_out", 0)
        write_ms, visible_ms = [], []
        for v in range(1, writes + 1):
            t0 = time.perf_counter()
            a.call("POST", f"/bench/write?v={v}", cookie)
            write_ms.append(1000 * (time.perf_counter() - t0))
            pending = [b, c]
            for _ in range(100_000):  # bounded: a lost write must not hang the benchmark
                pending = [p for p in pending if p.call("GET", "/bench/read", cookie)[0]["v"] != v]
                if not pending:
                    break
            visible_ms.append(1000 * (time.perf_counter() - t0))
        counters = get_json(ports[0], "/cluster-manager")[1]["counters"]
        # node1's own touches and heartbeat replies are a few bytes more; all are counted
        per_write = (counters.get("bytes_out", 0) - before) / writes / 2
        return {
            "mode": mode,
            "writes": writes,
            "write_p50_ms": round(statistics.median(write_ms), 3),
            "write_p99_ms": round(percentile(write_ms, 0.99), 3),
            "visible_p50_ms": round(statistics.median(visible_ms), 3),
            "visible_p99_ms": round(percentile(visible_ms, 0.99), 3),
            "bytes_per_change_per_peer": round(per_write),
            "delta_frame_bytes": delta_frame_bytes(session_id),
            "full_copy_bytes": full_copy_bytes(session_id),
        }
    finally:
        stop(procs)


def sealed_frame_size(msg: codec.Message) -> int:
    now = time.time()
    return 4 + len(
        Sealer(os.urandom(32), os.urandom(16), 1, Kind.FRAME).seal(codec.encode(msg), now)
    )


def delta_frame_bytes(session_id: str) -> int:
    """The sealed, framed size of one 1-attribute delta as the channel sends it."""
    from replication.codec import DeltaMsg
    from worker.delta import SessionDelta

    delta = SessionDelta(session_id, time.time(), set_attributes=(("v", "123"),))
    return sealed_frame_size(DeltaMsg(17, 123, delta, (1234, "a" * 32), (1233, "a" * 32)))


def full_copy_bytes(session_id: str) -> int:
    """The sealed, framed size of shipping this session whole (same codec, same sealing)."""
    from replication.merge import Replica, SessionMeta
    from worker.delta import SessionState
    from worker.values import encode

    attributes = {f"blob{i}": encode("b", "x" * PAYLOAD_BYTES) for i in range(PAYLOAD_ATTRIBUTES)}
    attributes["v"] = encode("v", 123)
    now = time.time()
    state = SessionState(session_id, now, now, 1800.0, attributes)
    stamp = (1234, "a" * 32)
    meta = SessionMeta({n: stamp for n in attributes}, {}, stamp, stamp)
    return sealed_frame_size(StateChunk(1, True, 1, (Replica(state, meta),)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--writes", type=int, default=300)
    parser.add_argument("--modes", default="sync,async")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="pyjk-repl-bench-") as tmp:
        for mode in args.modes.split(","):
            results.append(run_mode(mode, args.writes, Path(tmp)))
    header = (
        "mode", "writes", "write p50 / p99 ms", "visible on all p50 / p99 ms",
        "measured bytes per change per peer", "one delta frame", "full copy frame",
    )  # fmt: skip
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for r in results:
        print(
            f"| {r['mode']} | {r['writes']} | {r['write_p50_ms']} / {r['write_p99_ms']} | "
            f"{r['visible_p50_ms']} / {r['visible_p99_ms']} | {r['bytes_per_change_per_peer']} | "
            f"{r['delta_frame_bytes']} | {r['full_copy_bytes']} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
