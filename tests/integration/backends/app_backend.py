"""A backend process for balancer integration tests: ``python app_backend.py NAME PORT``.

Endpoints under /app/ report who served them and what arrived, so tests can check routing,
forwarded headers and bodies from the outside. /-/posts counts POSTs that reached this process
(no-replay tests); /-/ready is the health probe (503 once /-/unready was called).
"""

from __future__ import annotations

import asyncio
import hashlib
import sys

from aiohttp import WSMsgType, web

NAME = sys.argv[1]
PORT = int(sys.argv[2])
state = {"posts": 0, "ready": True, "inflight": 0}


async def info(request: web.Request) -> web.Response:
    body = await request.read()
    if request.method == "POST":
        state["posts"] += 1
    if request.query.get("slow") == NAME:  # ?slow=<node>&ms=N: only that node is slow
        state["inflight"] += 1
        try:
            await asyncio.sleep(int(request.query.get("ms", "1000")) / 1000)
        finally:
            state["inflight"] -= 1
    return web.json_response(
        {
            "node": NAME,
            "method": request.method,
            "path": request.raw_path,
            "cookie": request.headers.get("Cookie"),
            "activation": request.headers.get("X-Pyjk-Activation"),
            "request_id": request.headers.get("X-Pyjk-Request-Id"),
            "xff": request.headers.get("X-Forwarded-For"),
            "xfproto": request.headers.get("X-Forwarded-Proto"),
            "xfhost": request.headers.get("X-Forwarded-Host"),
            "hop": request.headers.get("X-Hop"),
            "forwarded": request.headers.getall("Forwarded", []),
            "client_cert": request.headers.get("Client-Cert"),
            "body_len": len(body),
        }
    )


async def slow(request: web.Request) -> web.Response:
    if request.method == "POST":
        state["posts"] += 1
        await request.read()
    state["inflight"] += 1
    try:
        await asyncio.sleep(int(request.query.get("ms", "1000")) / 1000)
    finally:
        state["inflight"] -= 1
    return web.json_response({"node": NAME, "slept_ms": int(request.query.get("ms", "1000"))})


async def upload(request: web.Request) -> web.Response:
    digest = hashlib.sha256()
    total = 0
    async for chunk in request.content.iter_chunked(1 << 16):
        digest.update(chunk)
        total += len(chunk)
    return web.json_response({"node": NAME, "bytes": total, "sha256": digest.hexdigest()})


async def download(request: web.Request) -> web.StreamResponse:
    size = int(request.query["size"])
    resp = web.StreamResponse()
    resp.content_length = size
    await resp.prepare(request)
    block = b"x" * (1 << 16)
    left = size
    while left > 0:
        n = min(left, len(block))
        await resp.write(block[:n])
        left -= n
    await resp.write_eof()
    return resp


async def status(request: web.Request) -> web.Response:
    code = int(request.query["code"])
    return web.Response(status=code, text=f"{NAME} says {code}")


async def set_cookie(request: web.Request) -> web.Response:
    resp = web.json_response({"node": NAME})
    resp.set_cookie("JSESSIONID", f"fromapp.{NAME}", path="/")
    return resp


async def ws(request: web.Request) -> web.WebSocketResponse:
    sock = web.WebSocketResponse()
    await sock.prepare(request)
    async for msg in sock:
        if msg.type == WSMsgType.TEXT:
            await sock.send_str(f"{NAME}:{msg.data}")
        elif msg.type == WSMsgType.BINARY:
            await sock.send_bytes(msg.data)
    return sock


async def posts(request: web.Request) -> web.Response:
    return web.json_response({"node": NAME, "posts": state["posts"], "inflight": state["inflight"]})


async def ready(request: web.Request) -> web.Response:
    return web.Response(status=200 if state["ready"] else 503, text=NAME)


async def unready(request: web.Request) -> web.Response:
    state["ready"] = request.query.get("ready") == "1"
    return web.Response(text="ok")


app = web.Application(client_max_size=2**40)
app.router.add_route("*", "/app/slow", slow)
app.router.add_post("/app/upload", upload)
app.router.add_get("/app/download", download)
app.router.add_get("/app/status", status)
app.router.add_get("/app/set-cookie", set_cookie)
app.router.add_get("/app/ws", ws)
app.router.add_route("*", "/app/{tail:.*}", info)
app.router.add_get("/-/posts", posts)
app.router.add_get("/-/ready", ready)
app.router.add_get("/-/unready", unready)

if __name__ == "__main__":
    web.run_app(app, host="127.0.0.1", port=PORT, print=None, shutdown_timeout=1)
