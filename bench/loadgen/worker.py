"""A load-generator process: holds sockets and runs one command at a time for the
coordinator, answering over a multiprocessing pipe. Each reply carries the CPU this
process used and the wall time the command took, so a saturated client shows.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Any

import uvloop

from bench.loadgen import idle
from bench.loadgen.client import Socket, connect
from bench.loadgen.protocols import PROTOCOLS, REPLAY, Protocol, Townsquare, body

CONNECT_CONCURRENCY = 50


class Worker:
    def __init__(self, pipe: Connection) -> None:
        self.pipe = pipe
        self.sockets: list[Socket] = []
        self.protocol: Protocol | None = None
        self.idle = idle.IdleSockets()

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        reader = ThreadPoolExecutor(max_workers=1)
        while True:
            command: dict[str, Any] = await loop.run_in_executor(reader, self.pipe.recv)
            op = command.pop("op")
            if op == "exit":
                for socket in self.sockets:
                    socket.close()
                await self.idle.close()
                self.pipe.send({"ok": True})
                return
            cpu, wall = time.process_time(), time.perf_counter()
            try:
                reply = await getattr(self, f"op_{op}")(**command)
                reply["ok"] = True
            except Exception as exc:  # reported to the coordinator, which marks the run
                reply = {"ok": False, "error": f"{op}: {exc.__class__.__name__}: {exc}"}
            wall = time.perf_counter() - wall
            reply["cpu"] = time.process_time() - cpu
            reply["wall"] = wall
            self.pipe.send(reply)

    # -- commands --------------------------------------------------------------------

    async def op_connect(
        self, url: str, protocol: str, tokens: list[str], room: str, senders: list[int]
    ) -> dict[str, Any]:
        """Open one socket per token, authenticated and joined to `room`."""
        proto = self.protocol = PROTOCOLS[protocol]
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def one(token: str, sender: int) -> Socket:
            async with gate:
                return await connect(url, proto, token=token, room=room, sender=sender)

        began = time.perf_counter()
        self.sockets += await asyncio.gather(
            *(one(t, s) for t, s in zip(tokens, senders, strict=True))
        )
        return {"connected": len(self.sockets), "seconds": time.perf_counter() - began}

    async def op_arm(
        self, expected: int, sender: int | None, record_latency: bool
    ) -> dict[str, Any]:
        """Start counting afresh: each socket expects `expected` messages (from the
        round's new sender ids, so nothing of an earlier round can pass for them)."""
        for socket in self.sockets:
            socket.reset(expected, record_latency=record_latency)
        return {}

    async def op_settle(self, expected: int, within: float) -> dict[str, Any]:
        """Now that the total is known, wait until each socket has `expected`."""
        for socket in self.sockets:
            socket.expected = expected
            if socket.count >= expected and not socket.done.done():
                socket.done.set_result(None)
        return await self.op_wait(within)

    async def op_wait(self, within: float) -> dict[str, Any]:
        """Until every socket has what it expects, or `within` seconds of no progress."""
        while True:
            pending = [s.done for s in self.sockets if not s.done.done()]
            if not pending:
                break
            before = sum(s.count for s in self.sockets)
            await asyncio.wait(pending, timeout=within)
            if sum(s.count for s in self.sockets) == before:
                break
        return self.receipts()

    async def op_status(self) -> dict[str, Any]:
        """Whether any socket was closed or told of an error (a publisher's health)."""
        return {
            "closed": sum(s.closed for s in self.sockets),
            "errors": sum(s.errors for s in self.sockets),
            "first_error": next(
                (s.first_error.decode(errors="replace") for s in self.sockets if s.first_error),
                None,
            ),
        }

    def receipts(self) -> dict[str, Any]:
        sockets = self.sockets
        latencies = b"".join(s.latencies.tobytes() for s in sockets)
        return {
            "sockets": len(sockets),
            "received": sum(s.count for s in sockets),
            "missing": sum(max(0, s.expected - s.count) for s in sockets),
            "gaps": sum(s.gaps for s in sockets),
            "duplicates": sum(s.duplicates for s in sockets),
            "seq_errors": sum(s.seq_errors for s in sockets),
            "errors": sum(s.errors for s in sockets),
            "closed": sum(s.closed for s in sockets),
            "first_error": next(
                (s.first_error.decode(errors="replace") for s in sockets if s.first_error), None
            ),
            "first_ns": min((s.first_ns for s in sockets if s.first_ns), default=0),
            "last_ns": max((s.last_ns for s in sockets), default=0),
            "latencies": latencies,
        }

    def _publisher(self, sender: int) -> Socket:
        socket = self.sockets[0]
        socket.sender, socket.sent = sender, 0
        return socket

    async def op_burst(self, messages: int, sender: int) -> dict[str, Any]:
        """The first socket sends `messages` messages back to back."""
        socket = self._publisher(sender)
        first = time.monotonic_ns()
        for n in range(1, messages + 1):
            socket.send_text(body(socket.sender, n, time.monotonic_ns()))
        return {"first_send_ns": first, "last_send_ns": time.monotonic_ns()}

    async def op_paced(self, messages: int, rate: float, sender: int) -> dict[str, Any]:
        """The first socket sends `messages` messages, `rate` a second, on a fixed
        schedule."""
        socket = self._publisher(sender)
        loop = asyncio.get_running_loop()
        start = loop.time()
        first = time.monotonic_ns()
        for n in range(1, messages + 1):
            delay = start + (n - 1) / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            socket.send_text(body(socket.sender, n, time.monotonic_ns()))
        return {"first_send_ns": first, "last_send_ns": time.monotonic_ns()}

    async def op_loop(self, seconds: float, sender_base: int) -> dict[str, Any]:
        """Hot room: every socket sends its next message as soon as its previous one
        comes back, for `seconds`; returns how many each sent."""
        for index, socket in enumerate(self.sockets):
            socket.sender, socket.sent = sender_base + index, 0
            socket.looping = True
            socket.rtts = type(socket.rtts)("q")
        began = time.monotonic_ns()
        for socket in self.sockets:
            socket.send_next()
        await asyncio.sleep(seconds)
        for socket in self.sockets:
            socket.looping = False
        return {
            "began_ns": began,
            "ended_ns": time.monotonic_ns(),
            "sent": {str(s.sender): s.sent for s in self.sockets},
            "rtts": b"".join(s.rtts.tobytes() for s in self.sockets),
        }

    async def op_seed(self, total: int, window: int) -> dict[str, Any]:
        """Store `total` messages through the sockets, each keeping up to `window` of
        its own in flight (seeding B4's history)."""
        share = -(-total // len(self.sockets))
        began = time.perf_counter()

        async def feed(socket: Socket) -> None:
            socket.on_own = asyncio.Event()
            target = min(share, total - self.sockets.index(socket) * share)
            while socket.sent < target:
                while (
                    socket.sent < target
                    and socket.sent - socket.last.get(socket.sender, 0) < window
                ):
                    socket.send_next()
                socket.on_own.clear()
                async with asyncio.timeout(60):
                    await socket.on_own.wait()
            while socket.last.get(socket.sender, 0) < socket.sent:
                socket.on_own.clear()
                async with asyncio.timeout(60):
                    await socket.on_own.wait()

        await asyncio.gather(*(feed(s) for s in self.sockets))
        return {"stored": sum(s.sent for s in self.sockets), "seconds": time.perf_counter() - began}

    async def op_replay(
        self, url: str, protocol: str, token: str, room: str, since: int, last_seq: int
    ) -> dict[str, Any]:
        """Time one replay on a fresh socket until message `last_seq` has arrived:
        townsquare's `join` with `since`, or the bare server's `/replay` endpoint."""
        expected = last_seq - since
        if protocol == "townsquare":
            proto = PROTOCOLS[protocol]
            assert isinstance(proto, Townsquare)
            socket = await connect(url, proto, token=token, room=None)
            socket.reset(expected, record_latency=False)
            began = time.monotonic_ns()
            socket.send_raw(proto.join(room, since))
        else:
            began = time.monotonic_ns()
            socket = await connect(
                url, REPLAY, token=token, room=None, path=f"/replay?room={room}&since={since}"
            )
            socket.reset(expected, record_latency=False)
        try:
            async with asyncio.timeout(120):
                await socket.done
        finally:
            socket.close()
        return {
            "messages": socket.count,
            "seconds": (socket.last_ns - began) / 1e9,
            "in_order_complete": socket.count == expected
            and not (socket.gaps or socket.duplicates or socket.seq_errors),
        }

    async def op_idle(self, **kwargs: Any) -> dict[str, Any]:
        return await self.idle.open(**kwargs)

    async def op_idle_close(self) -> dict[str, Any]:
        await self.idle.close()
        return {}


def main(pipe: Connection) -> None:
    uvloop.install()
    asyncio.run(Worker(pipe).serve())
