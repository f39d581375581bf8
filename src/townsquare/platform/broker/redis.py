"""The Redis pub/sub backend: one subscriber connection per process, supervised.

One PubSub connection holds every subscribed channel. A listener task reads it and
feeds a bounded queue that `next_event` drains. The listener is supervised: when
the connection breaks (or stays silent past a keepalive PING) it logs, turns
unhealthy, reconnects with capped exponential backoff and jitter, subscribes every
channel again, turns healthy, and goes on delivering. It never ends on its own; only
`disconnect` stops it. Publishes use a separate small pool with a short timeout, so
a publish while Redis is down raises `BrokerUnavailable` instead of hanging.

Redis pub/sub is at-most-once: what is published while this process is not
subscribed (an outage, a reconnect) is not delivered here; callers recover it from
their own history.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from townsquare.platform.broker.base import BrokerClosed, BrokerUnavailable, Event

logger = logging.getLogger(__name__)

# What a broken or unreachable Redis raises through redis-py and asyncio.
_NETWORK_ERRORS = (RedisError, OSError, TimeoutError)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


@dataclass(frozen=True, slots=True)
class Backoff:
    """Capped exponential delays with "equal jitter": half of each delay is fixed, so
    retries never collapse to zero, half is random, so many processes that lost
    Redis at the same moment do not reconnect in lockstep."""

    initial: float = 0.1
    maximum: float = 10.0

    def delay(self, attempt: int) -> float:
        ceiling = min(self.maximum, self.initial * 2.0 ** min(attempt, 32))
        return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 (not crypto)


class RedisBackend:
    """`BrokerBackend` over Redis pub/sub; see the module docstring.

    Slow consumer policy: the queue between the listener and `next_event` holds at
    most `queue_size` events; when it is full the oldest event is dropped and counted
    in `dropped` (logged), so memory stays bounded and the freshest events survive.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "townsquare:",
        timeout: float = 2.0,
        backoff_initial: float = 0.1,
        backoff_max: float = 10.0,
        keepalive: float = 5.0,
        queue_size: int = 10_000,
    ) -> None:
        self._url = url
        self._prefix = prefix
        self._timeout = timeout
        self._backoff = Backoff(backoff_initial, backoff_max)
        self._keepalive = keepalive
        self._queue_size = queue_size
        self._channels: set[str] = set()
        self._events: asyncio.Queue[Event | None] = asyncio.Queue(queue_size)
        # Per backend (so per process): probes of another process never land here.
        self._probe_channel = f"{prefix}probe:{uuid.uuid4().hex}".encode()
        self._probes: dict[bytes, asyncio.Future[None]] = {}
        # SUBSCRIBE confirmations come back in the order sent, per channel.
        self._confirmations: dict[bytes, deque[asyncio.Future[None]]] = {}
        self._publisher: Redis | None = None
        self._subscriber: Redis | None = None
        self._pubsub: PubSub | None = None  # set while a listener session is live
        self._listener: asyncio.Task[None] | None = None
        self._connected_once = asyncio.Event()
        self._healthy = False
        self._broken = False
        self._closed = False
        self._attempt = 0
        self.dropped = 0
        self.reconnects = 0

    # -- lifecycle ---------------------------------------------------------------

    async def connect(self) -> None:
        """Start the listener and wait up to `timeout` for the first subscription.

        If Redis is not reachable yet this still returns (unhealthy) and the listener
        keeps retrying: a process started during a Redis outage serves and reports
        not-ready instead of crash-looping."""
        if self._listener is not None:
            return
        if self._closed:  # connected again after a disconnect: drop the closing mark
            self._events = asyncio.Queue(self._queue_size)
            self._closed = False
        self._connected_once = asyncio.Event()
        # The publisher retries once on a broken connection: after a Redis restart
        # its pooled connections are dead, and a PUBLISH written to one never ran.
        self._publisher = self._client(Retry(NoBackoff(), 1, (RedisConnectionError,)))
        # The subscriber never retries inside redis-py: the supervisor owns that.
        self._subscriber = self._client(Retry(NoBackoff(), 0))
        self._listener = asyncio.create_task(
            self._supervise(self._subscriber), name="redis-broker-listener"
        )
        self._listener.add_done_callback(self._on_listener_done)
        try:
            async with asyncio.timeout(self._timeout):
                await self._connected_once.wait()
        except TimeoutError:
            logger.warning("Redis broker not reachable yet; the listener keeps retrying")

    async def disconnect(self) -> None:
        """Stop the listener, close every connection, and wake any `next_event`
        waiter with `BrokerClosed`. Idempotent."""
        listener, self._listener = self._listener, None
        if listener is None:
            return
        self._healthy = False
        listener.cancel()
        await asyncio.wait([listener], timeout=self._timeout)
        for client in (self._publisher, self._subscriber):
            if client is not None:
                with contextlib.suppress(*_NETWORK_ERRORS):
                    async with asyncio.timeout(self._timeout):
                        await client.aclose()
        self._publisher = self._subscriber = None
        self._channels.clear()
        self._release_waiters()
        while not self._events.empty():
            self._events.get_nowait()
        self._events.put_nowait(None)
        self._closed = True

    def is_healthy(self) -> bool:
        return self._healthy and self._listener is not None and not self._listener.done()

    # -- the BrokerBackend operations -----------------------------------------------

    async def subscribe(self, channel: str) -> None:
        """Returns once Redis confirmed the subscription, so every later publish is
        delivered; while reconnecting it returns at once and the channel is
        subscribed with the others when the connection is back."""
        if channel in self._channels:
            return
        self._channels.add(channel)
        pubsub = self._pubsub
        if pubsub is None:
            return
        key = self._key(channel)
        confirmed = asyncio.get_running_loop().create_future()
        self._confirmations.setdefault(key, deque()).append(confirmed)
        try:
            async with asyncio.timeout(self._timeout):
                await pubsub.subscribe(key)
                await asyncio.shield(confirmed)
        except _NETWORK_ERRORS as exc:
            self._mark_broken(pubsub, f"SUBSCRIBE failed ({_describe(exc)})")

    async def unsubscribe(self, channel: str) -> None:
        if channel not in self._channels:
            return
        # Leaving the set is what stops delivery: the listener drops messages of
        # channels not in it, even those Redis sent before it saw the UNSUBSCRIBE.
        self._channels.discard(channel)
        pubsub = self._pubsub
        if pubsub is None:
            return
        try:
            async with asyncio.timeout(self._timeout):
                await pubsub.unsubscribe(self._key(channel))
        except _NETWORK_ERRORS as exc:
            self._mark_broken(pubsub, f"UNSUBSCRIBE failed ({_describe(exc)})")

    async def publish(self, channel: str, payload: bytes) -> None:
        try:
            await self._publish(self._key(channel), payload)
        except BrokerUnavailable as exc:
            if isinstance(exc.__cause__, TimeoutError) and self._pubsub is not None:
                # A publish that times out means a frozen or black-holed Redis: turn
                # unhealthy now rather than after the listener's keepalive (seconds
                # later), so callers stop waiting on every publish in between.
                self._mark_broken(self._pubsub, "PUBLISH timed out")
            raise

    async def publish_many(self, channel: str, payloads: list[bytes]) -> None:
        """One pipelined round trip for the whole list."""
        if self._publisher is None:
            raise BrokerUnavailable("the Redis broker is not connected")
        key = self._key(channel)
        try:
            async with asyncio.timeout(self._timeout):
                async with self._publisher.pipeline(transaction=False) as pipe:
                    for payload in payloads:
                        pipe.publish(key, payload)
                    await pipe.execute()
        except _NETWORK_ERRORS as exc:
            if isinstance(exc, TimeoutError) and self._pubsub is not None:
                self._mark_broken(self._pubsub, "PUBLISH timed out")
            raise BrokerUnavailable(f"Redis publish failed ({_describe(exc)})") from exc

    async def next_event(self) -> Event:
        """Blocks across reconnects; raises `BrokerClosed` once disconnected."""
        event = await self._events.get()
        if event is None:
            self._events.put_nowait(None)  # for the next waiter
            raise BrokerClosed("the Redis broker was disconnected")
        return event

    async def probe(self, within: float) -> bool:
        """Publish a token on this process's probe channel and wait for the listener
        to read it back: proves Redis, the subscription and the listener all work."""
        if not self.is_healthy():
            return False
        token = uuid.uuid4().hex.encode()
        arrived = asyncio.get_running_loop().create_future()
        self._probes[token] = arrived
        try:
            async with asyncio.timeout(within):
                receivers = await self._publish(self._probe_channel, token)
                if receivers == 0:  # nobody subscribed: the listener is not there
                    return False
                await arrived
        except (BrokerUnavailable, TimeoutError):
            return False
        finally:
            self._probes.pop(token, None)
        return True

    # -- internals ------------------------------------------------------------------

    def _client(self, retry: Retry) -> Redis:
        return Redis.from_url(
            self._url,
            socket_timeout=self._timeout,
            socket_connect_timeout=self._timeout,
            socket_keepalive=True,
            retry=retry,
        )

    def _key(self, channel: str) -> bytes:
        return (self._prefix + channel).encode()

    async def _publish(self, key: bytes, payload: bytes) -> int:
        if self._publisher is None:
            raise BrokerUnavailable("the Redis broker is not connected")
        try:
            async with asyncio.timeout(self._timeout):
                receivers = await self._publisher.publish(key, payload)
        except _NETWORK_ERRORS as exc:
            raise BrokerUnavailable(f"Redis publish failed ({_describe(exc)})") from exc
        return int(receivers)

    def _stopped(self) -> bool:
        # `disconnect` clears `_listener` before cancelling it, so a listener that
        # outlives its cancellation (or belongs to an earlier `connect`) stops itself.
        return self._listener is not asyncio.current_task()

    async def _supervise(self, subscriber: Redis) -> None:
        while True:
            try:
                await self._session(subscriber)
            except _NETWORK_ERRORS as exc:
                if not self._stopped():
                    logger.warning(
                        "Redis broker connection lost (%s); reconnecting", _describe(exc)
                    )
            except Exception:
                logger.exception("Redis broker listener failed; reconnecting")
            if self._stopped():
                return
            delay = self._backoff.delay(self._attempt)
            self._attempt += 1
            await asyncio.sleep(delay)

    async def _session(self, subscriber: Redis) -> None:
        """One connection's life: connect, subscribe everything, read until it breaks."""
        pubsub = subscriber.pubsub()
        self._broken = False
        try:
            async with asyncio.timeout(self._timeout):
                await pubsub.connect()  # type: ignore[no-untyped-call]
            # From here `subscribe` sends its own SUBSCRIBE on this connection, so
            # the snapshot below and the publication of `pubsub` must not be split
            # by an await: a channel added in between would be missed.
            keys = [self._key(channel) for channel in self._channels]
            self._pubsub = pubsub
            # The probe channel goes last: its confirmation means all are subscribed.
            async with asyncio.timeout(self._timeout):
                await pubsub.subscribe(*keys, self._probe_channel)
            await self._read(pubsub)
        finally:
            if self._pubsub is pubsub:
                self._healthy = False
                self._pubsub = None
                self._release_waiters()
            with contextlib.suppress(*_NETWORK_ERRORS):
                async with asyncio.timeout(self._timeout):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _read(self, pubsub: PubSub) -> None:
        loop = asyncio.get_running_loop()
        last_heard = loop.time()
        pinged = False
        while True:
            message = await pubsub.get_message(timeout=min(1.0, self._keepalive))
            if self._stopped():
                return
            now = loop.time()
            if message is not None:
                last_heard, pinged = now, False
                self._handle(message)
            if self._broken:
                raise RedisConnectionError("a command on the subscriber connection failed")
            if message is not None:
                continue
            if now - last_heard > 2 * self._keepalive:
                raise RedisConnectionError("no reply to PING on the subscriber connection")
            if now - last_heard > self._keepalive and not pinged:
                # A half-open connection (a frozen Redis, a dropped route) reads as
                # silence; a PING that never comes back tells the two apart.
                async with asyncio.timeout(self._timeout):
                    await pubsub.ping()
                pinged = True

    def _handle(self, message: dict[str, Any]) -> None:
        kind, key, data = message["type"], message["channel"], message["data"]
        if kind == "message":
            if key == self._probe_channel:
                arrived = self._probes.get(data)
                if arrived is not None and not arrived.done():
                    arrived.set_result(None)
                return
            channel = bytes(key)[len(self._prefix.encode()) :].decode(errors="replace")
            if channel in self._channels:
                self._enqueue(Event(channel, data))
        elif kind == "subscribe":
            waiters = self._confirmations.get(key)
            if waiters:
                confirmed = waiters.popleft()
                if not confirmed.done():
                    confirmed.set_result(None)
                if not waiters:
                    del self._confirmations[key]
            if key == self._probe_channel:
                self._on_subscribed()

    def _on_subscribed(self) -> None:
        if self._connected_once.is_set():
            self.reconnects += 1
            logger.info(
                "Redis broker reconnected; %d channel(s) subscribed again", len(self._channels)
            )
        self._connected_once.set()
        self._healthy = True
        self._attempt = 0

    def _enqueue(self, event: Event) -> None:
        if self._events.full():
            self._events.get_nowait()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                logger.warning(
                    "Redis broker consumer too slow: %d event(s) dropped so far", self.dropped
                )
        self._events.put_nowait(event)

    def _mark_broken(self, pubsub: PubSub, reason: str) -> None:
        if self._pubsub is pubsub:
            logger.warning("Redis broker: %s; reconnecting", reason)
            self._broken = True
            self._healthy = False

    def _release_waiters(self) -> None:
        """Let every `subscribe` waiting on a confirmation return: its channel is in
        the set and will be subscribed on the next connection."""
        for waiters in self._confirmations.values():
            for confirmed in waiters:
                if not confirmed.done():
                    confirmed.set_result(None)
        self._confirmations.clear()

    def _on_listener_done(self, task: asyncio.Task[None]) -> None:
        self._healthy = False
        if not task.cancelled() and task.exception() is not None:
            logger.critical("Redis broker listener ended", exc_info=task.exception())


__all__ = ["Backoff", "BrokerClosed", "BrokerUnavailable", "RedisBackend"]
