from __future__ import annotations

import asyncio

from townsquare.rooms.outbox import Outbox


async def test_full_outbox_drops_its_consumer_without_blocking_and_frees_what_it_held() -> None:
    overflowed: list[bool] = []
    outbox = Outbox[int](3, on_overflow=lambda: overflowed.append(True))
    results = [outbox.push(index) for index in range(100)]
    assert results[:3] == [True, True, True]
    assert not any(results[3:])
    assert overflowed == [True]  # told once
    assert len(outbox) == 0  # what it held was released at once
    assert outbox.overflowed
    await asyncio.wait_for(outbox.wait(), 1)  # the writer wakes to see it


async def test_waiting_writer_wakes_once_for_a_whole_batch() -> None:
    outbox = Outbox[int](100)
    wakes = 0

    async def writer() -> list[int]:
        nonlocal wakes
        await outbox.wait()
        wakes += 1
        taken = list(outbox.items)
        outbox.items.clear()
        return taken

    task = asyncio.create_task(writer())
    await asyncio.sleep(0)  # the writer is now waiting
    for index in range(50):
        outbox.push(index)
    assert await asyncio.wait_for(task, 1) == list(range(50))
    assert wakes == 1


async def test_urgent_item_goes_first_even_past_the_bound() -> None:
    outbox = Outbox[str](2)
    outbox.push("a")
    outbox.push("b")
    outbox.push_urgent("close")
    assert list(outbox.items) == ["close", "a", "b"]
