"""The process's side of the broker: one handler per channel, one reader task.

Whoever owns a channel in this process (a room's feed, the control channel's
dispatcher) subscribes once with a handler; the hub holds one backend subscription
for it and one reader task that pulls `next_event()`, decodes each envelope once and
hands it to the channel's handler.

A publication reaches this process's handler at once, as the `Envelope` object (no
encode/decode round trip), and goes to the other processes through the backend,
encoded once; the copy that comes back carries this hub's instance id and is skipped.
So local delivery goes on while the backend is down.

Backend subscriptions are applied by one task, in the order asked, so a subscribe
and an unsubscribe of one channel can never overtake each other at the backend; no
lock is held across a network call, and a frozen backend delays only the first
subscriber of a new channel (up to the subscribe timeout), never publishers, readers
or the subscribers of channels already held.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable

from townsquare.platform.broker.base import BrokerBackend, BrokerUnavailable
from townsquare.platform.broker.envelope import Envelope, MalformedEnvelope

logger = logging.getLogger(__name__)

Handler = Callable[[Envelope], None]

_RETRY_FIRST, _RETRY_MAX = 0.05, 2.0


class Hub:
    def __init__(
        self,
        backend: BrokerBackend,
        *,
        instance_id: str | None = None,
        subscribe_timeout: float = 2.0,
        on_lag: Callable[[float], None] | None = None,
    ) -> None:
        self.backend = backend
        self.instance_id = instance_id or uuid.uuid4().hex
        # Our own envelopes come back from the backend: recognized by their first
        # bytes and skipped before anything is decoded.
        self._own = self.instance_id.encode() + b" "
        self._subscribe_timeout = subscribe_timeout
        # Told the seconds from publication (by another process) to this hub's read.
        self._on_lag = on_lag
        self._handlers: dict[str, Handler] = {}
        # Channel changes waiting for the backend, applied in order by `_apply_changes`.
        self._changes: deque[tuple[str, bool, asyncio.Future[None]]] = deque()
        self._changes_ready = asyncio.Event()
        self._backend_channels: set[str] = set()
        self._reader: asyncio.Task[None] | None = None
        self._changer: asyncio.Task[None] | None = None
        self._local_only = False  # publishing skipped while the backend is known down
        self._stopping = False

    async def start(self) -> None:
        self._stopping = False
        try:
            await self.backend.connect()
        except Exception:
            # The service starts anyway: local delivery needs no backend, and the
            # reader keeps trying.
            logger.warning("broker backend unavailable at start", exc_info=True)
        self._reader = asyncio.create_task(self._read(), name="broker-hub-reader")
        self._changer = asyncio.create_task(self._apply_changes(), name="broker-hub-subscriber")

    async def stop(self) -> None:
        self._stopping = True
        self._changes_ready.set()
        tasks = [task for task in (self._reader, self._changer) if task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            # Bounded: a cancellation that lands in a backend call together with its own
            # timeout can be taken for the timeout (asyncio.timeout), and the task goes
            # on; `_stopping` then ends its loop, and this wait ends regardless.
            await asyncio.wait(tasks, timeout=self._subscribe_timeout + 1)
        self._reader = self._changer = None
        for _, _, done in self._changes:
            if not done.done():
                done.set_result(None)
        self._changes.clear()
        with contextlib.suppress(Exception):
            await self.backend.disconnect()

    def is_healthy(self) -> bool:
        reading = self._reader is not None and not self._reader.done()
        return reading and self.backend.is_healthy()

    def channels(self) -> int:
        return len(self._handlers)

    def envelope(self, body: str, seq: int | None = None) -> Envelope:
        """An envelope published by this process."""
        return Envelope(origin=self.instance_id, body=body, seq=seq)

    # -- subscriptions -------------------------------------------------------------

    async def subscribe(self, channel: str, handler: Handler) -> None:
        """Send `channel`'s envelopes to `handler` (one handler per channel). Returns
        once the backend confirmed, or after the subscribe timeout: local delivery
        works at once, and the backend subscribes when it can. Never raises."""
        if channel in self._handlers:
            raise RuntimeError(f"{channel} already has a handler in this process")
        self._handlers[channel] = handler
        await self._change(channel)

    async def unsubscribe(self, channel: str, handler: Handler) -> None:
        done = self.detach(channel, handler)
        if done is not None:
            await self._wait(done)

    def detach(self, channel: str, handler: Handler) -> asyncio.Future[None] | None:
        """Stop handing `channel` to `handler` at once (no await: nothing of the
        channel reaches it after this returns, and a new handler may subscribe); the
        backend unsubscribes in the background. The future completes when it did."""
        # `==`, not `is`: a bound method is a new object at every attribute access.
        if self._handlers.get(channel) != handler:
            return None
        del self._handlers[channel]
        return self._queue_change(channel)

    async def _change(self, channel: str) -> None:
        await self._wait(self._queue_change(channel))

    def _queue_change(self, channel: str) -> asyncio.Future[None]:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._changes.append((channel, channel in self._handlers, done))
        self._changes_ready.set()
        return done

    async def _wait(self, done: asyncio.Future[None]) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._subscribe_timeout):
                await asyncio.shield(done)

    async def _apply_changes(self) -> None:
        while not self._stopping:
            if not self._changes:
                self._changes_ready.clear()
                await self._changes_ready.wait()
                continue
            channel, _, done = self._changes.popleft()
            # The latest wish wins: a subscribe and an unsubscribe queued back to back
            # leave the backend as the handlers are now.
            wanted = channel in self._handlers
            try:
                if wanted and channel not in self._backend_channels:
                    self._backend_channels.add(channel)
                    await self.backend.subscribe(channel)
                elif not wanted and channel in self._backend_channels:
                    self._backend_channels.discard(channel)
                    await self.backend.unsubscribe(channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                # The backend keeps the channel in its set and restores it when it
                # reconnects (the backend contract); local delivery is unaffected.
                logger.warning("broker (un)subscribe of %s failed", channel, exc_info=True)
            finally:
                if not done.done():
                    done.set_result(None)

    # -- publishing ----------------------------------------------------------------

    async def publish(self, channel: str, envelope: Envelope) -> None:
        """Hand `envelope` to this process's handler now, then to the other processes
        through the backend. A backend failure is logged, not raised: a stored
        message is recovered from history by the other processes."""
        handler = self._handlers.get(channel)
        if handler is not None:
            handler(envelope)
        if not self._backend_up():
            return
        try:
            await self.backend.publish(channel, envelope.encode())
        except BrokerUnavailable:
            logger.warning("broker unavailable; %s delivered in this process only", channel)
        except Exception:
            logger.exception("broker publish to %s failed", channel)

    async def publish_many(self, channel: str, envelopes: list[Envelope]) -> None:
        """`publish` for a batch, in order: one backend round trip for all of them."""
        handler = self._handlers.get(channel)
        if handler is not None:
            for envelope in envelopes:
                handler(envelope)
        if not envelopes or not self._backend_up():
            return
        try:
            await self.backend.publish_many(channel, [e.encode() for e in envelopes])
        except BrokerUnavailable:
            logger.warning("broker unavailable; %s delivered in this process only", channel)
        except Exception:
            logger.exception("broker publish to %s failed", channel)

    def _backend_up(self) -> bool:
        if not self.backend.is_healthy():
            # Known down (its listener lost the connection): do not make every sender
            # wait out a publish timeout against a Redis that is frozen or unreachable.
            if not self._local_only:
                self._local_only = True
                logger.warning("broker down; delivering in this process only until it is back")
            return False
        if self._local_only:
            self._local_only = False
            logger.warning("broker back; publishing to other processes again")
        return True

    # -- reading -------------------------------------------------------------------

    async def _read(self) -> None:
        delay = _RETRY_FIRST
        while not self._stopping:
            try:
                event = await self.backend.next_event()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("broker read failed; retrying in %.2fs", delay, exc_info=True)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RETRY_MAX)
                continue
            delay = _RETRY_FIRST
            handler = self._handlers.get(event.channel)
            if handler is None or event.payload.startswith(self._own):
                continue  # not ours to handle, or ours: already handed over by `publish`
            try:
                envelope = Envelope.decode(event.payload)
            except MalformedEnvelope:
                logger.warning("dropped a malformed broker event on %s", event.channel)
                continue
            if self._on_lag is not None:
                self._on_lag(max(0.0, time.time() - envelope.published_at))
            try:
                handler(envelope)
            except Exception:
                logger.exception("broker handler of %s failed", event.channel)
