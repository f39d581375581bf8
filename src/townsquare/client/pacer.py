"""Pacing of outgoing frames, so a busy client stays under the server's frame rate."""

from __future__ import annotations

import asyncio
import time


class Pacer:
    """A token bucket: `rate` frames a second, bursts of up to `burst`. `take()` waits
    for a token instead of refusing. The server counts every frame (pings too) and
    closes a connection that keeps on over its rate, so the client slows itself down."""

    def __init__(self, rate: float, burst: int | None = None) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = float(burst if burst is not None else max(1, int(rate)))
        self._tokens = self.burst
        self._stamp = time.monotonic()
        self._paused_until = 0.0
        self._lock = asyncio.Lock()

    def pause(self, seconds: float) -> None:
        """Send nothing for `seconds` and start again with an empty bucket (after the
        server said `rate_limited`: its bucket is empty too)."""
        self._paused_until = max(self._paused_until, time.monotonic() + seconds)
        self._tokens = 0.0

    async def take(self) -> None:
        # One waiter at a time keeps the order of frames the order of callers.
        async with self._lock:
            while True:
                now = time.monotonic()
                if now < self._paused_until:
                    await asyncio.sleep(self._paused_until - now)
                    self._stamp = time.monotonic()
                    continue
                self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
                self._stamp = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                await asyncio.sleep((1 - self._tokens) / self.rate)
