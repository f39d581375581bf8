"""What the per-frame span costs while tracing is off.

`Connection._handle` (the frame dispatch) carries the `traced_frame` decorator; with
tracing off it adds one coroutine call. This times the reader's work for one frame
(parse and validate the JSON, then dispatch it) with the decorated dispatch against
the bare one (`__wrapped__`), in interleaved rounds, and prints the medians and their
ratio. Nothing is asserted.

    python -m bench.frame_span [--frames 200000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from townsquare.platform import tracing
from townsquare.rooms.connection import Connection
from townsquare.rooms.protocol import CLIENT_FRAME

PING = '{"type":"ping","ref":"r-1"}'


class _Sink:
    """Stands in for a connection: a ping's answer goes nowhere."""

    def send_text(self, text: str) -> None:
        pass


async def _round(handle: Callable[[Any, Any], Awaitable[None]], frames: int) -> float:
    sink = _Sink()
    validate = CLIENT_FRAME.validate_json
    started = time.perf_counter()
    for _ in range(frames):
        await handle(sink, validate(PING))
    return (time.perf_counter() - started) / frames


async def main(frames: int, rounds: int) -> None:
    tracing.instrument_app(None, None)  # type: ignore[arg-type]  # tracing off
    decorated = Connection._handle
    bare = Connection._handle.__wrapped__  # type: ignore[attr-defined]
    times: dict[str, list[float]] = {"bare": [], "decorated, tracing off": []}
    await _round(decorated, frames // 10)  # warm up
    for _ in range(rounds):
        times["bare"].append(await _round(bare, frames))
        times["decorated, tracing off"].append(await _round(decorated, frames))
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, seconds in medians.items():
        print(f"{name:>24}: {seconds * 1e9:8.0f} ns per frame (median of {rounds})")
    ratio = medians["decorated, tracing off"] / medians["bare"]
    print(f"{'ratio':>24}: {ratio:.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=7)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.frames, arguments.rounds))
