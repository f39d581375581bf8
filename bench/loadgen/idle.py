"""B3's idle sockets, on the `websockets` client (picows offers no permessage-deflate):
open N sockets with or without the compression extension, authenticate, hold them."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bench.loadgen.protocols import IDLE_PROTOCOLS, Protocol

CONNECT_CONCURRENCY = 50


class IdleSockets:
    def __init__(self) -> None:
        self.sockets: list[ClientConnection] = []
        self.readers: list[asyncio.Task[None]] = []

    async def open(
        self, url: str, protocol: str, tokens: list[str], compression: bool
    ) -> dict[str, Any]:
        proto = IDLE_PROTOCOLS[protocol]
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
        negotiated = 0

        async def one(token: str) -> None:
            nonlocal negotiated
            async with gate:
                socket = await connect(
                    url + proto.path(""),
                    additional_headers=proto.headers(token),
                    compression="deflate" if compression else None,
                    open_timeout=30,
                    ping_interval=None,
                )
                response = socket.response
                extensions = (
                    response.headers.get("Sec-WebSocket-Extensions", "") if response else ""
                )
                negotiated += "permessage-deflate" in extensions
                for step in proto.handshake(None, token):
                    while True:
                        async with asyncio.timeout(30):
                            data = await socket.recv(decode=False)
                        if step.expect in data:
                            break
                    if step.reply is not None:
                        await socket.send(step.reply.decode())
                self.sockets.append(socket)
                self.readers.append(asyncio.create_task(hold(socket, proto)))

        began = time.perf_counter()
        await asyncio.gather(*(one(token) for token in tokens))
        return {
            "connected": len(self.sockets),
            "deflate": negotiated,
            "seconds": time.perf_counter() - began,
        }

    async def close(self) -> None:
        for reader in self.readers:
            reader.cancel()
        await asyncio.gather(*(s.close() for s in self.sockets), return_exceptions=True)
        self.sockets, self.readers = [], []


async def hold(socket: ClientConnection, proto: Protocol) -> None:
    """Read and drop what the server sends; answer what asks for an answer."""
    with contextlib.suppress(ConnectionClosed):
        async for message in socket:
            data = message.encode() if isinstance(message, str) else message
            answer = proto.answer(data)
            if answer is not None:
                await socket.send(answer.decode())
