"""Jittered exponential backoff between reconnect attempts."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delays of `first`, doubling up to `cap` seconds, each drawn at random from its
    upper half ("equal jitter"): clients cut off together do not come back together,
    and no attempt follows the last one at once."""

    first: float = 0.2
    cap: float = 10.0
    attempts: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if not 0 < self.first <= self.cap:
            raise ValueError("backoff needs 0 < first <= cap")

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.first * 2.0 ** min(self.attempts, 32))
        self.attempts += 1
        return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 (jitter, not secrets)

    def reset(self) -> None:
        self.attempts = 0
