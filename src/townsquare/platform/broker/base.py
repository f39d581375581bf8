"""The broker backend contract: publish and subscribe by channel, bytes in and out.

A backend carries messages between processes and nothing more. Fan-out to the
connections of this process lives once, above the backends (see `hub.py`), which
holds one backend subscription per channel however many local subscribers it has.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Event:
    channel: str
    payload: bytes


class BrokerUnavailable(Exception):
    """The backend cannot take a publish right now (for example, Redis is down)."""


class BrokerClosed(Exception):
    """`next_event` was called on, or was waiting in, a backend that was disconnected."""


class BrokerBackend(Protocol):
    async def connect(self) -> None:
        """Open connections; return once the backend can publish and subscribe."""

    async def disconnect(self) -> None:
        """Close everything; a `next_event` waiting must return or raise promptly."""

    async def subscribe(self, channel: str) -> None:
        """Start receiving `channel`; idempotent. Survives reconnects of the backend."""

    async def unsubscribe(self, channel: str) -> None:
        """Stop receiving `channel`; idempotent."""

    async def publish(self, channel: str, payload: bytes) -> None:
        """Send `payload` to every subscriber of `channel` in every process, this one
        included. Raises `BrokerUnavailable` when it cannot."""

    async def publish_many(self, channel: str, payloads: list[bytes]) -> None:
        """`publish` each payload, in order, in as few round trips as the backend
        can. Raises `BrokerUnavailable` when it cannot."""

    async def next_event(self) -> Event:
        """The next message on any subscribed channel, in publish order per channel.
        Blocks while the backend reconnects; never ends silently."""

    def is_healthy(self) -> bool:
        """True while the backend is connected and its listener is running."""

    async def probe(self, within: float) -> bool:
        """A round trip for readiness: True if a message published now comes back
        through this process's listener within `within` seconds. Never raises."""
