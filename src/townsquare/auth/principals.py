"""Who is calling: the signed-in user as a read-only value, served from memory.

An authenticated request needs the caller's account state (is the token's version
current, is the account active, is this login still open, is the caller an admin).
Reading it from the database on every request costs a round trip and an ORM load;
instead each process keeps it per login (user id + session id) in a bounded LRU
cache, and keeps that cache honest:

- every `AccountChange` (auth/revocations.py) drops what it touches, on this instance
  at once and on the others through the broker, so a bumped token version, a disabled
  account, an admin flag taken or an ended login counts from the next request on;
- a load that raced a change is not stored (the change bumps an epoch the load
  checked before reading), and a request that arrives after a change never joins a
  load that started before it;
- an entry is trusted for `ttl` seconds at most, the bound on staleness if a change
  announced by another instance is lost on the way (broker down);
- a token newer than the cached account (a version the cache has not seen) makes it
  read again rather than refuse.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from townsquare.auth.exceptions import InactiveUser, InvalidToken, SessionEnded
from townsquare.auth.revocations import AccountChange, ChangeKind
from townsquare.auth.tokens import AccessClaims


class Actor(Protocol):
    """What an authorization check needs of whoever acts: a `Principal` on HTTP, the
    ORM `User` where a WebSocket keeps one."""

    @property
    def id(self) -> int: ...

    @property
    def is_admin(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class Principal:
    """The signed-in caller. Read-only: routes that change the account load its row."""

    id: int
    name: str
    email: str
    is_admin: bool
    is_active: bool
    token_version: int
    # The login (refresh-token family id) the access token belongs to; None for a
    # token issued before sessions were named.
    session_id: str | None


@dataclass(frozen=True, slots=True)
class Login:
    """What the database says of one login: the account, and whether the login is open."""

    principal: Principal
    session_open: bool


# Reads the account and the login's state in one statement; None when no such user.
Loader = Callable[[int, str | None], Awaitable[Login | None]]
Key = tuple[int, str | None]


@dataclass(slots=True)
class _Entry:
    login: Login
    expires_at: float


class PrincipalCache:
    def __init__(
        self,
        load: Loader,
        *,
        max_size: int,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self.max_size = max_size
        self.ttl = ttl
        self.clock = clock
        self._entries: OrderedDict[Key, _Entry] = OrderedDict()
        self._keys_of_user: dict[int, set[Key]] = {}
        # Loads under way, shared by the requests that need the same login meanwhile.
        self._loading: dict[Key, asyncio.Task[Login | None]] = {}
        # Bumped by every change: a load that saw it move stores nothing.
        self._epoch = 0

    def __len__(self) -> int:
        return len(self._entries)

    async def principal(self, claims: AccessClaims) -> Principal:
        """The caller of a verified access token, or the error that refuses it."""
        key = (claims.user_id, claims.session_id)
        entry = self._entries.get(key)
        if (
            entry is None
            or entry.expires_at <= self.clock()
            or entry.login.principal.token_version < claims.token_version
        ):
            login = await self._fetch(key)
        else:
            self._entries.move_to_end(key)
            login = entry.login
        if login is None or login.principal.token_version != claims.token_version:
            raise InvalidToken()
        if not login.session_open:
            raise SessionEnded()
        if not login.principal.is_active:
            raise InactiveUser()
        return login.principal

    async def _fetch(self, key: Key) -> Login | None:
        task = self._loading.get(key)
        if task is None:
            task = asyncio.ensure_future(self._load_and_store(key, self._epoch))
            self._loading[key] = task
            task.add_done_callback(lambda done: self._load_done(key, done))
        # Shielded: a request that gives up (its client left) does not cancel the load
        # others are waiting for.
        return await asyncio.shield(task)

    def _load_done(self, key: Key, task: asyncio.Task[Login | None]) -> None:
        if self._loading.get(key) is task:
            del self._loading[key]
        if not task.cancelled():
            task.exception()  # retrieved here, so a load nobody awaits any more stays quiet

    async def _load_and_store(self, key: Key, epoch: int) -> Login | None:
        login = await self._load(*key)
        if login is not None and epoch == self._epoch:
            self._store(key, login)
        return login

    def _store(self, key: Key, login: Login) -> None:
        self._entries[key] = _Entry(login, self.clock() + self.ttl)
        self._entries.move_to_end(key)
        self._keys_of_user.setdefault(key[0], set()).add(key)
        while len(self._entries) > self.max_size:
            oldest, _ = self._entries.popitem(last=False)
            self._forget_key(oldest)

    def _forget_key(self, key: Key) -> None:
        keys = self._keys_of_user.get(key[0])
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._keys_of_user[key[0]]

    def forget(self, user_id: int, session_id: str | None = None, *, every: bool = True) -> None:
        """Drop the logins of `user_id` (only `session_id` when `every` is false), and
        make loads already under way for them neither stored nor shared."""
        self._epoch += 1
        if every:
            keys = set(self._keys_of_user.pop(user_id, ()))
            keys.update(key for key in self._loading if key[0] == user_id)
        else:
            keys = {(user_id, session_id)}
        for key in keys:
            if self._entries.pop(key, None) is not None:
                self._forget_key(key)
            self._loading.pop(key, None)

    async def on_account_change(self, change: AccountChange) -> None:
        """A `SessionRevocations` listener."""
        if change.kind is ChangeKind.SESSION_ENDED:
            self.forget(change.user_id, change.session_id, every=False)
        else:
            # SESSIONS_ENDED, ACCOUNT_UPDATED, and any kind added later: read again.
            self.forget(change.user_id)
