"""The per-process cache of signed-in logins: hits, bounds, expiry, and account changes
(including the ones that race a load)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace

import pytest

from townsquare.auth.exceptions import InactiveUser, InvalidToken, SessionEnded
from townsquare.auth.principals import Login, Principal, PrincipalCache
from townsquare.auth.revocations import AccountChange, ChangeKind
from townsquare.auth.tokens import AccessClaims


def _principal(user_id: int, session_id: str | None, **changes: object) -> Principal:
    base = Principal(
        id=user_id,
        name=f"user {user_id}",
        email=f"u{user_id}@example.com",
        is_admin=False,
        is_active=True,
        token_version=0,
        session_id=session_id,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


@dataclass
class FakeAccounts:
    """What the database would say; counts the reads and can hold them at a gate."""

    principals: dict[int, Principal] = field(default_factory=dict)
    ended: set[str] = field(default_factory=set)
    loads: int = 0
    gate: asyncio.Event | None = None
    started: asyncio.Event = field(default_factory=asyncio.Event)

    async def load(self, user_id: int, session_id: str | None) -> Login | None:
        self.loads += 1
        found = self.principals.get(user_id)
        # Read before waiting: the gate stands for the round trip after the read.
        answer = (
            None
            if found is None
            else Login(replace(found, session_id=session_id), session_id not in self.ended)
        )
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        return answer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def claims(user_id: int = 1, version: int = 0, session: str | None = "s1") -> AccessClaims:
    return AccessClaims(
        user_id=user_id, token_version=version, expires_at=2**40, session_id=session
    )


def make_cache(
    accounts: FakeAccounts, *, max_size: int = 100, ttl: float = 30.0
) -> tuple[PrincipalCache, Clock]:
    clock = Clock()
    return PrincipalCache(accounts.load, max_size=max_size, ttl=ttl, clock=clock), clock


async def test_second_request_of_a_login_is_served_without_a_load() -> None:
    accounts = FakeAccounts({1: _principal(1, None)})
    cache, _ = make_cache(accounts)
    first = await cache.principal(claims())
    second = await cache.principal(claims())
    assert first == second == _principal(1, "s1")
    assert accounts.loads == 1


async def test_cache_over_its_size_drops_least_recently_used_logins() -> None:
    accounts = FakeAccounts({n: _principal(n, None) for n in range(1, 51)})
    cache, _ = make_cache(accounts, max_size=10)
    for user_id in range(1, 51):
        for session in ("a", "b"):
            await cache.principal(claims(user_id, session=session))
            assert len(cache) <= 10
    assert len(cache) == 10
    loads = accounts.loads
    await cache.principal(claims(50, session="b"))  # most recent: still cached
    assert accounts.loads == loads
    await cache.principal(claims(1, session="a"))  # long gone: read again
    assert accounts.loads == loads + 1
    assert len(cache) == 10


async def test_entry_older_than_ttl_is_read_again() -> None:
    accounts = FakeAccounts({1: _principal(1, None)})
    cache, clock = make_cache(accounts, ttl=30)
    await cache.principal(claims())
    accounts.principals[1] = _principal(1, None, is_active=False)  # an event was lost
    clock.now += 29
    await cache.principal(claims())
    assert accounts.loads == 1
    clock.now += 2
    with pytest.raises(InactiveUser):
        await cache.principal(claims())
    assert accounts.loads == 2


async def test_sessions_ended_refuses_the_old_token_at_once() -> None:
    accounts = FakeAccounts({1: _principal(1, None)})
    cache, _ = make_cache(accounts)
    await cache.principal(claims(version=0))
    accounts.principals[1] = _principal(1, None, token_version=1)
    await cache.on_account_change(AccountChange(1, ChangeKind.SESSIONS_ENDED))
    with pytest.raises(InvalidToken):
        await cache.principal(claims(version=0))
    assert (await cache.principal(claims(version=1))).token_version == 1


async def test_token_newer_than_the_cached_account_reads_it_again() -> None:
    # Another instance bumped the version and issued a token; the news is not here yet.
    accounts = FakeAccounts({1: _principal(1, None)})
    cache, _ = make_cache(accounts)
    await cache.principal(claims(version=0))
    accounts.principals[1] = _principal(1, None, token_version=1)
    assert (await cache.principal(claims(version=1))).token_version == 1
    with pytest.raises(InvalidToken):
        await cache.principal(claims(version=0))


async def test_session_ended_refuses_that_login_only() -> None:
    accounts = FakeAccounts({1: _principal(1, None)})
    cache, _ = make_cache(accounts)
    await cache.principal(claims(session="s1"))
    await cache.principal(claims(session="s2"))
    accounts.ended.add("s1")
    await cache.on_account_change(AccountChange(1, ChangeKind.SESSION_ENDED, session_id="s1"))
    with pytest.raises(SessionEnded):
        await cache.principal(claims(session="s1"))
    loads = accounts.loads
    assert (await cache.principal(claims(session="s2"))).session_id == "s2"
    assert accounts.loads == loads  # the other login stayed cached


async def test_account_updated_serves_the_new_admin_flag_at_once() -> None:
    accounts = FakeAccounts({1: _principal(1, None, is_admin=True)})
    cache, _ = make_cache(accounts)
    assert (await cache.principal(claims())).is_admin
    accounts.principals[1] = _principal(1, None, is_admin=False)
    await cache.on_account_change(AccountChange(1, ChangeKind.ACCOUNT_UPDATED))
    assert not (await cache.principal(claims())).is_admin


async def test_unknown_user_is_refused() -> None:
    cache, _ = make_cache(FakeAccounts())
    with pytest.raises(InvalidToken):
        await cache.principal(claims())


async def test_concurrent_requests_of_one_login_share_one_load() -> None:
    accounts = FakeAccounts({1: _principal(1, None)}, gate=asyncio.Event())
    cache, _ = make_cache(accounts)
    waiting = [asyncio.create_task(cache.principal(claims())) for _ in range(5)]
    await accounts.started.wait()
    await asyncio.sleep(0)  # let every request reach the shared load
    assert accounts.gate is not None
    accounts.gate.set()
    assert {principal.id for principal in await asyncio.gather(*waiting)} == {1}
    assert accounts.loads == 1


async def test_change_during_a_load_is_not_undone_by_it() -> None:
    # A load reads the account, then the account is disabled and the change announced
    # while the load's answer is still on its way: the stale answer must not be stored,
    # and a request that comes after the change must not be handed it.
    first_gate = asyncio.Event()
    accounts = FakeAccounts({1: _principal(1, None)}, gate=first_gate)
    cache, _ = make_cache(accounts)
    early = asyncio.create_task(cache.principal(claims()))
    await accounts.started.wait()
    accounts.principals[1] = _principal(1, None, is_active=False)
    await cache.on_account_change(AccountChange(1, ChangeKind.ACCOUNT_UPDATED))
    accounts.gate = None  # the next load answers at once
    with pytest.raises(InactiveUser):
        # Bounded: joining the early load would wait on its gate forever.
        await asyncio.wait_for(cache.principal(claims()), 5)
    assert accounts.loads == 2
    # The early request was under way before the change: it may be answered with the
    # old state, but what it read must not replace the newer entry.
    first_gate.set()
    assert (await early).is_active
    with pytest.raises(InactiveUser):
        await cache.principal(claims())
    assert accounts.loads == 2
