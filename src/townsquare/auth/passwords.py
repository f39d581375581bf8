"""argon2id hashing, off the event loop and bounded in how many run at once."""

from __future__ import annotations

import os

import anyio
from argon2 import PasswordHasher as Argon2Hasher
from argon2 import Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError


class PasswordHasher:
    def __init__(self, *, time_cost: int, memory_kib: int) -> None:
        self._hasher = Argon2Hasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=1, type=Type.ID
        )
        # Each hash holds `memory_kib` of RAM for tens of milliseconds; a burst of logins
        # must queue here instead of taking the worker's memory or every thread.
        self._limiter = anyio.CapacityLimiter(max(2, os.cpu_count() or 2))
        # Verified when the email is unknown, so that a miss costs as long as a wrong
        # password and response time does not reveal who has an account.
        self._dummy_hash = self._hasher.hash("dummy password for timing")

    async def hash(self, password: str) -> str:
        return await anyio.to_thread.run_sync(self._hasher.hash, password, limiter=self._limiter)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        target = password_hash if password_hash is not None else self._dummy_hash
        ok = await anyio.to_thread.run_sync(self._verify, target, password, limiter=self._limiter)
        return ok and password_hash is not None

    def needs_rehash(self, password_hash: str) -> bool:
        return self._hasher.check_needs_rehash(password_hash)

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
