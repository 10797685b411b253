"""A backend that records every byte it receives: ``python recorder.py PORT FILE``.

For the malformed-request corpus: whatever the balancer lets through ends up in FILE, and the
test expects FILE to stay empty. It answers a minimal 200 to anything, so a request that should
have been refused but was forwarded is also visible to the client.
"""

from __future__ import annotations

import asyncio
import sys

PORT = int(sys.argv[1])
OUT = open(sys.argv[2], "ab", buffering=0)  # noqa: SIM115 - lives as long as the process


class Recorder(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        OUT.write(data)
        self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nrecorded")  # type: ignore[attr-defined]


async def main() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Recorder, "127.0.0.1", PORT)
    async with server:
        await server.serve_forever()


asyncio.run(main())
