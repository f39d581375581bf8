"""A real SMTP server (aiosmtpd) on a free loopback port, served by the test's own
event loop, that keeps every mail it accepts and can be stopped, started and stalled."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.support.server import free_port

_LINK = re.compile(r"https?://\S+")


class MailServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"smtp://127.0.0.1:{self.port}"
        self.received: list[EmailMessage] = []
        self._arrived = asyncio.Condition()
        self._server: asyncio.Server | None = None
        self._clients: list[SMTP] = []
        # While set, DATA is held (the client waits mid-transaction); `stalled` tells
        # the test a client is held there.
        self.stall = False
        self.stalled = asyncio.Event()
        self._release = asyncio.Event()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()

        def protocol() -> SMTP:
            smtp = SMTP(self, hostname="mail.test", loop=loop)
            self._clients.append(smtp)
            return smtp

        self._server = await loop.create_server(protocol, "127.0.0.1", self.port)

    async def stop(self) -> None:
        """Stop listening and drop every client: connections are refused until start()."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
            for client in self._clients:
                if isinstance(client.transport, asyncio.Transport):
                    client.transport.abort()
            self._clients.clear()
            await server.wait_closed()

    def release(self) -> None:
        self.stall = False
        self._release.set()

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:  # noqa: N802
        if self.stall:
            self.stalled.set()
            await self._release.wait()
            return "451 try again later"
        assert isinstance(envelope.content, bytes)
        mail = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(mail, EmailMessage)
        async with self._arrived:
            self.received.append(mail)
            self._arrived.notify_all()
        return "250 OK"

    async def wait_for(self, count: int, within: float = 20.0) -> list[EmailMessage]:
        """Until at least `count` mails arrived in all; a bound, not a measurement."""
        async with asyncio.timeout(within), self._arrived:
            await self._arrived.wait_for(lambda: len(self.received) >= count)
        return list(self.received)

    def to(self, address: str) -> list[EmailMessage]:
        return [mail for mail in self.received if mail["To"] == address]

    async def wait_to(self, address: str, count: int, within: float = 20.0) -> list[EmailMessage]:
        """Until at least `count` mails to `address` arrived; they are returned in order."""
        async with asyncio.timeout(within), self._arrived:
            await self._arrived.wait_for(lambda: len(self.to(address)) >= count)
        return self.to(address)


@asynccontextmanager
async def running_mail_server() -> AsyncIterator[MailServer]:
    """A started `MailServer`; released (nothing held back) and stopped on exit."""
    server = MailServer()
    await server.start()
    try:
        yield server
    finally:
        server.release()
        await server.stop()


def text_of(mail: EmailMessage) -> str:
    part = mail.get_body(preferencelist=("plain",))
    assert part is not None, "no text/plain part"
    return str(part.get_content())


def html_of(mail: EmailMessage) -> str:
    part = mail.get_body(preferencelist=("html",))
    assert part is not None, "no text/html part"
    return str(part.get_content())


def link_in(mail: EmailMessage) -> str:
    links = _LINK.findall(text_of(mail))
    assert links, "no link in the mail"
    return str(links[0])


def token_in(mail: EmailMessage) -> str:
    """The token of the mail's link, as the web client reads it from the fragment
    (`/#/verify?token=...`)."""
    fragment = urlsplit(link_in(mail)).fragment
    query = fragment.partition("?")[2]
    return parse_qs(query)["token"][0]
