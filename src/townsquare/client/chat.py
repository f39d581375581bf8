"""`townsquare chat ROOM`: a line-by-line terminal chat on `townsquare.client`.

It signs in, prints the room's recent history, then live messages and who comes
and goes; each line typed is sent (`/who` lists who is online, `/quit` or end of
input leaves). Reconnects are the client's business: the chat prints a notice and
goes on where it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from datetime import datetime
from typing import TextIO

from pydantic import ValidationError

from townsquare.client.api import Api
from townsquare.client.client import Client
from townsquare.client.errors import ApiError, ClientError
from townsquare.client.events import Connected, Disconnected
from townsquare.rooms.protocol import MessageFrame, PresenceFrame, PresenceState
from townsquare.rooms.schemas import MessageRead

RECENT = 20  # history lines shown on entry


def _line(message: MessageFrame | MessageRead) -> str:
    author = message.author.name if message.author is not None else "(deleted user)"
    stamp = message.sent_at.astimezone().strftime("%H:%M")
    return f"[{stamp}] {author}: {message.body}"


def _notice(text: str) -> str:
    return f"[{datetime.now().strftime('%H:%M')}] * {text}"


def read_lines(stream: TextIO) -> asyncio.Queue[str | None]:
    """Lines of `stream` read by a daemon thread (a blocked read never holds up the
    exit); None at the end of input."""
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str | None] = asyncio.Queue()

    def pump() -> None:
        for line in stream:
            loop.call_soon_threadsafe(lines.put_nowait, line.rstrip("\n"))
        loop.call_soon_threadsafe(lines.put_nowait, None)

    threading.Thread(target=pump, name="chat-input", daemon=True).start()
    return lines


async def chat(
    url: str,
    room: str,
    *,
    email: str,
    password: str,
    lines: asyncio.Queue[str | None],
    say: Callable[[str], None],
) -> int:
    """Run the chat until `/quit`, the end of `lines`, or a failure; the exit status."""
    try:
        async with Api(url) as api:
            tokens = await api.login(email, password)
            recent = await api.history(room, limit=RECENT)
    except ApiError as exc:
        what = "room not found" if exc.status == 404 else exc.detail
        say(f"townsquare chat: {what}")
        return 1
    for message in recent:
        say(_line(message))
    since = recent[-1].seq if recent else 0
    try:
        async with Client(url, tokens=tokens) as client:
            await client.join(room, since=since)
            say(_notice(f"you are in {room} as {client.user.name if client.user else email}"))
            say(_notice("type a line to send it; /who lists who is here, /quit leaves"))
            return await _run(client, room, lines, say)
    except ClientError as exc:
        say(f"townsquare chat: {exc}")
        return 1


async def _run(
    client: Client, room: str, lines: asyncio.Queue[str | None], say: Callable[[str], None]
) -> int:
    """Show the room and send what is typed, until either ends."""
    shown = asyncio.create_task(_show(client, room, say))
    noticed = asyncio.create_task(_notices(client, say))
    typed = asyncio.create_task(_type(client, room, lines, say))
    try:
        await asyncio.wait({shown, typed}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (shown, noticed, typed):
            task.cancel()
        await asyncio.gather(shown, noticed, typed, return_exceptions=True)
    for task in (typed, shown):
        if task.done() and not task.cancelled() and (error := task.exception()) is not None:
            if not isinstance(error, ClientError):
                raise error
            say(f"townsquare chat: {error}")
            return 1
    return 0


async def _show(client: Client, room: str, say: Callable[[str], None]) -> None:
    async for message in client.messages(room):
        say(_line(message))


async def _notices(client: Client, say: Callable[[str], None]) -> None:
    async for event in client.events():
        match event:
            case PresenceFrame(state=PresenceState.ONLINE):
                say(_notice(f"{event.user.name} is here"))
            case PresenceFrame(state=PresenceState.OFFLINE):
                say(_notice(f"{event.user.name} left"))
            case Disconnected(final=False):
                say(_notice(f"connection lost ({event.reason}); reconnecting"))
            case Connected(reconnect=True):
                say(_notice("reconnected"))


async def _type(
    client: Client, room: str, lines: asyncio.Queue[str | None], say: Callable[[str], None]
) -> int:
    while (line := await lines.get()) is not None:
        text = line.strip()
        if text == "/quit":
            break
        if text == "/who":
            names = sorted(user.name for user in client.online(room))
            say(_notice("here: " + ", ".join(names)))
        elif text:
            try:
                await client.send(room, text)
            except ValidationError as exc:  # too long, or nothing visible
                say(_notice(f"not sent: {exc.errors()[0]['msg']}"))
    with contextlib.suppress(ClientError):
        await client.leave(room)
    return 0
