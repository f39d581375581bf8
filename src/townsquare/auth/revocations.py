"""Announce that a user's sessions ended, so open connections can be closed.

Auth does not know who holds connections; whoever does (the WebSocket layer, which
fans the news out to every instance) registers a listener at start-up.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)

Listener = Callable[[int], Awaitable[None]]


class SessionRevocations:
    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    async def revoked(self, user_id: int) -> None:
        for listener in self._listeners:
            try:
                await listener(user_id)
            except Exception:
                # The tokens are already dead in the database; a listener failing (say,
                # the broker is down) only delays closing sockets until their next
                # token check, so it must not turn the request into an error.
                logger.exception("session revocation listener failed for user %s", user_id)
