"""Who may open a WebSocket: the /ws budgets, apart from the HTTP side's.

Three limits, checked in the order a connection meets them:

- the worker's sockets (`WS_MAX_CONNECTIONS`): authenticating or authenticated, so
  sockets can never use up what HTTP requests and the probes need;
- a client IP's sockets that are open but not yet authenticated
  (`WS_MAX_PENDING_PER_IP`), so one address cannot hold the others' share with
  sockets that never say who they are (a handshake with `Authorization` is checked
  before it is accepted, and is never pending);
- a user's sockets on every instance (`WS_MAX_CONNECTIONS_PER_USER`), counted in a
  `SlotStore` (Redis when configured).

The first two are answered before the handshake completes (HTTP 503 / 429 with
`Retry-After`); the per-user limit, known only once the socket is authenticated, with
`bye` and close code 1008.
"""

from __future__ import annotations

from dataclasses import dataclass

from townsquare.platform.slots import SlotStore


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    detail: str
    retry_after: int


class Admission:
    def __init__(
        self,
        *,
        max_connections: int,
        max_pending_per_ip: int,
        max_per_user: int,
        slots: SlotStore,
    ) -> None:
        self.max_connections = max_connections
        self.max_pending_per_ip = max_pending_per_ip
        self.max_per_user = max_per_user
        self.slots = slots
        self.open = 0
        self.pending: dict[str, int] = {}

    def enter(self, ip: str, *, pending: bool) -> Refusal | None:
        """Count a new socket of `ip` as open (and as pending when it has yet to
        authenticate), or say why not."""
        if self.open >= self.max_connections:
            return Refusal(503, "Too many WebSockets on this server, retry shortly", 1)
        if pending and self.pending.get(ip, 0) >= self.max_pending_per_ip:
            return Refusal(
                429, "Too many unauthenticated WebSockets from this address, retry shortly", 5
            )
        self.open += 1
        if pending:
            self.pending[ip] = self.pending.get(ip, 0) + 1
        return None

    def authenticated(self, ip: str) -> None:
        """The socket said who it is: it no longer counts as pending."""
        left = self.pending.get(ip, 0) - 1
        if left > 0:
            self.pending[ip] = left
        else:
            self.pending.pop(ip, None)

    def leave(self, ip: str, *, pending: bool) -> None:
        self.open -= 1
        if pending:
            self.authenticated(ip)

    async def claim_user_slot(self, user_id: int, socket_id: str) -> bool:
        return await self.slots.acquire(f"user-sockets:{user_id}", socket_id, self.max_per_user)

    async def release_user_slot(self, user_id: int, socket_id: str) -> None:
        await self.slots.release(f"user-sockets:{user_id}", socket_id)
