"""`townsquare chat ROOM` as a person uses it: signs in, shows recent messages and
live ones, sends each line typed, leaves on /quit."""

from __future__ import annotations

import asyncio
import sys

import pytest

from tests.client.conftest import PASSWORD, new_room, sign_up
from tests.client.servers import WAIT
from tests.support.server import ServerProcess
from townsquare.client import Api

pytestmark = pytest.mark.e2e


async def _read_until(stream: asyncio.StreamReader, text: str, seen: list[str]) -> str:
    async with asyncio.timeout(WAIT):
        while line := (await stream.readline()).decode():
            seen.append(line)
            if text in line:
                return line
    raise AssertionError(f"{text!r} never shown; output: {''.join(seen)}")


async def test_chat_shows_history_and_live_messages_and_sends_lines(
    server: ServerProcess,
) -> None:
    ann = await sign_up(server.base_url, "Ann")
    bob = await sign_up(server.base_url, "Bob")
    room = await new_room(server.base_url, bob)
    async with Api(server.base_url, token=bob.tokens.access_token) as bob_api:
        await bob_api.post_message(room, "earlier on")
        chat = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "townsquare.cli",
            "chat",
            room,
            "--url",
            server.base_url,
            "--email",
            ann.email,
            "--password-stdin",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        assert chat.stdin is not None
        assert chat.stdout is not None
        seen: list[str] = []
        try:
            chat.stdin.write(f"{PASSWORD}\n".encode())
            await chat.stdin.drain()
            assert "Bob: earlier on" in await _read_until(chat.stdout, "earlier on", seen)
            await _read_until(chat.stdout, f"you are in {room} as Ann", seen)

            await bob_api.post_message(room, "hi Ann")
            await _read_until(chat.stdout, "Bob: hi Ann", seen)

            chat.stdin.write(b"hello from the terminal\n")
            await chat.stdin.drain()
            await _read_until(chat.stdout, "Ann: hello from the terminal", seen)
            stored = await bob_api.history(room, limit=10)
            assert [m.body for m in stored] == ["earlier on", "hi Ann", "hello from the terminal"]

            chat.stdin.write(b"/who\n")
            await chat.stdin.drain()
            assert "Ann" in await _read_until(chat.stdout, "here:", seen)

            chat.stdin.write(b"/quit\n")
            await chat.stdin.drain()
            assert await asyncio.wait_for(chat.wait(), WAIT) == 0
        finally:
            if chat.returncode is None:
                chat.kill()
                await chat.wait()


async def test_chat_with_a_wrong_password_says_so_and_exits_1(server: ServerProcess) -> None:
    ann = await sign_up(server.base_url, "Ann")
    chat = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "townsquare.cli",
        "chat",
        "general",
        "--url",
        server.base_url,
        "--email",
        ann.email,
        "--password-stdin",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(chat.communicate(b"not the password\n"), WAIT)
    assert chat.returncode == 1
    assert "townsquare chat:" in output.decode()
