"""`LingeringTransport` gathers what is written within one turn of the event loop into
one write on the real transport, and never holds it past that turn or a close."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from townsquare.platform.http_protocol import LingeringTransport


class FakeTransport:
    """Records what reaches the socket, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.calls.append(("write", bytes(data)))

    def write_eof(self) -> None:
        self.calls.append(("eof", None))

    def can_write_eof(self) -> bool:
        return True

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def is_reading(self) -> bool:
        return True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def get_write_buffer_size(self) -> int:
        return 0


def _wrap(fake: FakeTransport) -> LingeringTransport:
    protocol = asyncio.Protocol()
    return LingeringTransport(cast(asyncio.Transport, fake), protocol, linger=0.1)


async def _turn() -> None:
    await asyncio.sleep(0)


async def test_writes_of_one_turn_leave_in_one_write_at_its_end() -> None:
    fake = FakeTransport()
    transport = _wrap(fake)
    transport.write(b"HTTP/1.1 101\r\n\r\n")
    transport.write(bytearray(b"welcome"))
    transport.writelines([b"-", memoryview(b"joined")])
    assert fake.calls == []
    assert transport.get_write_buffer_size() == len(b"HTTP/1.1 101\r\n\r\nwelcome-joined")
    await _turn()
    assert fake.calls == [("write", b"HTTP/1.1 101\r\n\r\nwelcome-joined")]
    transport.write(b"next")
    await _turn()
    assert fake.calls[-1] == ("write", b"next"), "a later turn's write is not held back"


async def test_close_sends_what_is_pending_before_the_fin() -> None:
    fake = FakeTransport()
    transport = _wrap(fake)
    transport.write(b"bye")
    transport.close()
    assert fake.calls == [("write", b"bye"), ("eof", None)]
    transport.write(b"after close")
    await _turn()
    assert fake.calls == [("write", b"bye"), ("eof", None)]
