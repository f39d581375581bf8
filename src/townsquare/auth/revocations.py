"""Announce account changes that open sessions must see at once, on every instance.

Auth does not know who holds connections or caches; whoever does registers a
listener at start-up (the WebSocket layer closes or re-checks sockets, a cache of
signed-in users drops its entry). Whoever can carry the news to the other instances
(the WebSocket layer, through the broker's control channel) installs a transport.
Listeners of this process are always told directly, before the transport runs, so
the instance that made a change acts on it at once even while the broker is down.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum

logger = logging.getLogger(__name__)


class ChangeKind(StrEnum):
    # Every login of the account ended: its token version was bumped (logout-all, a
    # password change or reset, the account disabled).
    SESSIONS_ENDED = "sessions_ended"
    # One login ended (logout, a session deleted): `session_id` names it.
    SESSION_ENDED = "session_ended"
    # What the account may do changed (admin granted or taken, renamed, email
    # verified): caches reload it, sockets re-check their rooms.
    ACCOUNT_UPDATED = "account_updated"


@dataclass(frozen=True, slots=True)
class AccountChange:
    user_id: int
    kind: ChangeKind
    session_id: str | None = None


Listener = Callable[[AccountChange], Awaitable[None]]
Transport = Callable[[AccountChange], Awaitable[None]]


class SessionRevocations:
    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self._transport: Transport | None = None

    def add_listener(self, listener: Listener) -> None:
        """`listener` is told of every change, made on this instance or another."""
        self._listeners.append(listener)

    def set_transport(self, transport: Transport | None) -> None:
        """`transport(change)` must get `change` to `deliver` on every other instance."""
        self._transport = transport

    async def announce(self, change: AccountChange) -> None:
        """Called after the change is committed to the database."""
        await self.deliver(change)
        if self._transport is None:
            return
        try:
            await self._transport(change)
        except Exception:
            # The change is already in the database; a transport failing (say, the
            # broker is down) only delays what other instances see until their next
            # check, so it must not turn the request into an error.
            logger.exception("account change transport failed for user %s", change.user_id)

    async def deliver(self, change: AccountChange) -> None:
        for listener in self._listeners:
            try:
                await listener(change)
            except Exception:
                logger.exception("account change listener failed for user %s", change.user_id)

    async def revoked(self, user_id: int) -> None:
        """Every session of `user_id` ended."""
        await self.announce(AccountChange(user_id, ChangeKind.SESSIONS_ENDED))
