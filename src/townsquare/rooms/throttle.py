"""Frame budgets per user: one token bucket shared by all of a user's sockets here.

`rate` frames a second with bursts of twice that, whatever number of sockets the
user opens on this process (their count is capped separately). Buckets live as long
as one of the user's connections does.
"""

from __future__ import annotations

import time


class UserThrottle:
    __slots__ = ("capacity", "rate", "stamp", "tokens", "users")

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = max(2.0, 2 * rate)
        self.tokens = self.capacity
        self.stamp = time.monotonic()
        self.users = 0  # connections sharing this bucket

    def take(self) -> bool:
        """Spend one frame; False when the budget is used up (the frame is refused)."""
        now = time.monotonic()
        tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if tokens < 1:
            self.tokens = tokens
            return False
        self.tokens = tokens - 1
        return True


class Throttles:
    """The buckets of this process, one per user with an open connection."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._buckets: dict[int, UserThrottle] = {}

    def acquire(self, user_id: int) -> UserThrottle:
        bucket = self._buckets.get(user_id)
        if bucket is None:
            bucket = self._buckets[user_id] = UserThrottle(self.rate)
        bucket.users += 1
        return bucket

    def release(self, user_id: int) -> None:
        bucket = self._buckets.get(user_id)
        if bucket is not None:
            bucket.users -= 1
            if bucket.users <= 0:
                del self._buckets[user_id]

    def __len__(self) -> int:
        return len(self._buckets)
