"""Backoff delays and frame pacing."""

from __future__ import annotations

import time

import pytest

from townsquare.client import Backoff
from townsquare.client.pacer import Pacer


def test_backoff_doubles_up_to_the_cap_with_jitter_in_the_upper_half() -> None:
    backoff = Backoff(first=0.1, cap=1.0)
    ceilings = [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    for ceiling in ceilings:
        delay = backoff.next_delay()
        assert ceiling / 2 <= delay <= ceiling
    backoff.reset()
    assert backoff.next_delay() <= 0.1


def test_backoff_delays_differ_between_clients() -> None:
    delays = {Backoff(first=1.0, cap=1.0).next_delay() for _ in range(20)}
    assert len(delays) > 1


def test_backoff_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="first"):
        Backoff(first=0, cap=1)


async def test_pacer_waits_for_tokens_past_its_burst() -> None:
    pacer = Pacer(rate=50, burst=5)
    started = time.monotonic()
    for _ in range(10):
        await pacer.take()
    # The five frames past the burst need 5/50 s of refill: the pacer must have waited.
    assert time.monotonic() - started >= 0.09


async def test_pacer_pause_holds_every_frame_back() -> None:
    pacer = Pacer(rate=1000, burst=10)
    pacer.pause(0.2)
    started = time.monotonic()
    await pacer.take()
    assert time.monotonic() - started >= 0.19
