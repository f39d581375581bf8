"""The instance registry: one contract for the memory and Redis stores."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from tests.support.brokers import REDIS_URL, random_prefix, require_shared_redis
from townsquare.platform.instances import (
    InstanceLoad,
    InstanceRegistry,
    InstanceReport,
    InstanceStore,
    InstancesUnavailable,
    MemoryInstances,
    RedisInstances,
    create_instance_store,
)


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[InstanceStore]:
    if request.param == "memory":
        made: InstanceStore = MemoryInstances()
    else:
        made = RedisInstances(await require_shared_redis(), prefix=random_prefix())
    yield made
    await made.aclose()


def _report(instance_id: str, sockets: int = 1) -> InstanceReport:
    return InstanceReport(
        id=instance_id,
        host="h",
        pid=1,
        started_at=time.time(),
        reported_at=time.time(),
        sockets=sockets,
        rooms=1,
        messages_per_second=0.0,
        broker_healthy=True,
    )


async def test_reports_of_every_instance_are_listed_and_replaced(store: InstanceStore) -> None:
    await store.put(_report("a", sockets=1), ttl=30)
    await store.put(_report("b", sockets=2), ttl=30)
    await store.put(_report("a", sockets=5), ttl=30)
    reports = {report.id: report.sockets for report in await store.reports()}
    assert reports == {"a": 5, "b": 2}


async def test_a_report_expires_when_not_renewed_and_remove_withdraws_at_once(
    store: InstanceStore,
) -> None:
    await store.put(_report("short"), ttl=0.2)
    await store.put(_report("long"), ttl=30)
    await store.put(_report("gone"), ttl=30)
    await store.remove("gone")
    assert {report.id for report in await store.reports()} == {"short", "long"}
    deadline = time.monotonic() + 5
    while {report.id for report in await store.reports()} != {"long"}:
        assert time.monotonic() < deadline, "the unrenewed report did not expire"
        await asyncio.sleep(0.05)


async def test_registry_reports_load_and_message_rate_and_withdraws_on_exit(
    store: InstanceStore,
) -> None:
    published = 0

    def load() -> InstanceLoad:
        return InstanceLoad(sockets=3, rooms=2, messages=published)

    registry = InstanceRegistry(store, load=load, broker_healthy=lambda: True, interval=0.05)
    async with registry.running():
        first = (await registry.reports())[0]
        assert (first.id, first.sockets, first.rooms, first.broker_healthy) == (
            registry.id,
            3,
            2,
            True,
        )
        published = 100
        deadline = time.monotonic() + 5
        while (await registry.reports())[0].messages_per_second <= 0:
            assert time.monotonic() < deadline, "the message rate never rose"
            await asyncio.sleep(0.02)
    assert await store.reports() == []


async def test_redis_store_down_raises_unavailable() -> None:
    store = RedisInstances("redis://127.0.0.1:1/0", prefix=random_prefix(), timeout=0.5)
    with pytest.raises(InstancesUnavailable):
        await store.reports()
    await store.aclose()


def test_store_is_chosen_by_url() -> None:
    assert isinstance(create_instance_store(None), MemoryInstances)
    assert isinstance(create_instance_store("memory://"), MemoryInstances)
    assert isinstance(create_instance_store(REDIS_URL), RedisInstances)
    with pytest.raises(ValueError, match="unsupported"):
        create_instance_store("kafka://x")
