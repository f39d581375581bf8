"""End to end: a real server process, a real WebSocket client library."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect as raw_connect

from tests.platform.test_metrics import sample
from tests.rooms.wsclient import Socket, connect, make_room, seqs, signup
from tests.support.brokers import eventually
from tests.support.server import ServerProcess
from townsquare.client import Api
from townsquare.rooms.protocol import MessageFrame, PongFrame, PresenceFrame, ServerFrame

pytestmark = pytest.mark.e2e


def server_rss_kib(server: ServerProcess) -> int:
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1])


async def test_two_clients_exchange_messages_in_seq_order(
    server: ServerProcess, http: httpx.AsyncClient
) -> None:
    ann, bob = await signup(http, "Ann"), await signup(http, "Bob")
    room = await make_room(http, ann)
    a, b = await connect(server, ann), await connect(server, bob)
    joined = await a.join(room)
    assert joined.seq == 0
    assert joined.online == [ann.public]
    await b.join(room)
    await a.expect(PresenceFrame, room=room, state="online", user=bob.public)
    for index in range(5):
        await a.say(room, f"from ann {index}")
        await b.say(room, f"from bob {index}", client_id=f"b{index}")
    got_a, got_b = await a.messages(room, 10), await b.messages(room, 10)
    assert seqs(got_a) == seqs(got_b) == list(range(1, 11))
    assert got_a == got_b
    assert {m.author.name for m in got_a if m.author} == {"Ann", "Bob"}
    assert sorted(m.client_id for m in got_a if m.client_id) == [f"b{i}" for i in range(5)]
    await b.close()
    await a.expect(PresenceFrame, room=room, state="offline", user=bob.public)
    await a.close()


async def test_messages_posted_over_rest_are_delivered_live(
    server: ServerProcess, http: httpx.AsyncClient
) -> None:
    ann = await signup(http)
    room = await make_room(http, ann)
    a = await connect(server, ann)
    await a.join(room)
    async with Api(server.base_url, token=ann.token) as api:
        posted = await api.post_message(room, "hi")
    [live] = await a.messages(room, 1)
    assert live.id == posted.id
    assert live.seq == 1
    await a.close()


async def test_join_with_since_replays_missed_then_live(
    server: ServerProcess, http: httpx.AsyncClient
) -> None:
    ann, cid = await signup(http, "Ann"), await signup(http, "Cid")
    room = await make_room(http, ann)
    a = await connect(server, ann)
    await a.join(room)
    for index in range(20):
        await a.say(room, f"m{index}")
    await a.messages(room, 20)
    c = await connect(server, cid)
    joined = await c.join(room, since=7)
    assert joined.seq == 20
    replayed = await c.messages(room, 13)
    assert seqs(replayed) == list(range(8, 21))
    for index in range(5):
        await a.say(room, f"live{index}")
    live = await c.messages(room, 5)
    assert seqs(live) == list(range(21, 26))
    assert await c.ping() == PongFrame()  # nothing extra (no duplicate) came before it
    await a.close()
    await c.close()


async def test_join_with_since_while_others_send_has_no_gap_or_duplicate(
    server: ServerProcess, http: httpx.AsyncClient
) -> None:
    ann, bob, cid = await signup(http), await signup(http), await signup(http)
    room = await make_room(http, ann)
    writers = [await connect(server, ann), await connect(server, bob)]
    for writer in writers:
        await writer.join(room)
    per_writer = 150
    total = per_writer * len(writers)

    # The joins happen while the writers are writing: each starts once the first writer
    # has sent a given number of messages, and that writer waits there until the join
    # is answered (so the room is never complete before a join; the second writer goes
    # on meanwhile).
    midway = {30: asyncio.Event(), 80: asyncio.Event(), 130: asyncio.Event()}
    joined = {after: asyncio.Event() for after in midway}

    async def write(client: Socket, tag: str) -> list[int]:
        # Each writer reads the room while it writes, as a client does: one that never
        # read would be a slow consumer, rightly closed (1013) once its buffers fill.
        reading = asyncio.create_task(client.messages_until(room, total, within=30))
        for index in range(per_writer):
            await client.say(room, f"{tag}{index}")
            if tag == "a" and index in midway:
                midway[index].set()
                await joined[index].wait()
        return seqs(await reading)

    async def join_midway(after: int) -> list[int]:
        await midway[after].wait()
        async with Api(server.base_url, token=cid.token) as api:
            since = (await api.room(room)).last_seq
        joiner = await connect(server, cid)
        await joiner.join(room, since=since)
        joined[after].set()
        frames = await joiner.messages_until(room, total, within=30)
        await joiner.close()
        assert seqs(frames) == list(range(since + 1, total + 1)), since
        return seqs(frames)

    results = await asyncio.gather(
        write(writers[0], "a"),
        write(writers[1], "b"),
        join_midway(30),
        join_midway(80),
        join_midway(130),
    )
    assert all(results[2:])
    assert list(results[:2]) == [list(range(1, total + 1))] * 2
    for writer in writers:
        await writer.close()


async def test_burst_into_a_room_never_closes_a_member_that_reads(
    tight_queue_server: ServerProcess,
) -> None:
    """Messages sent together are stored as one batch, and a batch reaches each member's
    send queue at once, before any writer runs: were a batch larger than the queue (8
    frames here), a member reading as fast as it can would be closed with 1013."""
    async with httpx.AsyncClient(base_url=tight_queue_server.base_url, timeout=10) as http:
        ann, bob = await signup(http), await signup(http)
        room = await make_room(http, ann)
    reader, writer = await connect(tight_queue_server, bob), await connect(tight_queue_server, ann)
    await reader.join(room)
    await writer.join(room)
    total = 200
    for index in range(total):  # sent without waiting: they pile up behind each commit
        await writer.say(room, f"m{index}")
    frames = await reader.messages_until(room, total, within=30)
    assert seqs(frames) == list(range(1, total + 1))
    await reader.close()
    await writer.close()


async def test_send_with_same_client_id_is_stored_once(
    server: ServerProcess, http: httpx.AsyncClient
) -> None:
    ann = await signup(http)
    room = await make_room(http, ann)
    a = await connect(server, ann)
    await a.join(room)
    for _ in range(3):
        await a.say(room, "once", client_id="same-1")
    await a.say(room, "after", client_id="other")
    frames = await a.messages(room, 2)
    assert [(m.seq, m.client_id) for m in frames] == [(1, "same-1"), (2, "other")]
    async with Api(server.base_url, token=ann.token) as api:
        assert len(await api.history(room)) == 2
    await a.close()


async def test_slow_consumer_is_closed_with_1013_while_others_keep_receiving(
    server: ServerProcess, http: httpx.AsyncClient
) -> None:
    owner, slow_user, watcher = await signup(http), await signup(http, "Slow"), await signup(http)
    room = await make_room(http, owner)
    sender = await connect(server, owner)
    await sender.join(room)
    observer = await connect(server, watcher)
    await observer.join(room)
    # A client that stops reading: a tiny socket buffer and a one-frame library queue.
    # Raw socket: the client library offers neither (it is built to keep reading).
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", int(server.base_url.rsplit(":", 1)[1])))
    slow = Socket(
        await raw_connect(
            f"{server.ws_url}/ws",
            additional_headers=slow_user.headers,
            sock=sock,
            max_queue=1,
            close_timeout=2,
        )
    )
    await slow.wait_welcome(10)
    await slow.join(room)
    await observer.expect(PresenceFrame, state="online", user=slow_user.public)

    # Everyone else keeps reading, in the background.
    received: dict[Socket, list[ServerFrame]] = {sender: [], observer: []}
    last_seq = dict.fromkeys(received, 0)
    progress = asyncio.Event()
    slow_gone = asyncio.Event()
    offline = PresenceFrame(room=room, user=slow_user.public, state="offline")

    async def read(client: Socket) -> None:
        while True:
            frame = await client.recv(within=60)
            received[client].append(frame)
            if isinstance(frame, MessageFrame):
                last_seq[client] = frame.seq
                progress.set()
            if frame == offline:
                slow_gone.set()
                progress.set()

    readers = [asyncio.create_task(read(client)) for client in received]
    rss_before = server_rss_kib(server)
    # The largest frames allowed (4000 four-byte characters), to fill buffers soon.
    body = "\U0001f600" * 4000
    sent = 0
    # Lockstep: the next message goes out once the readers have the previous one, so
    # only the client that does not read can fall behind, however loaded the machine.
    while not slow_gone.is_set() and sent < 3000:
        sent += 1
        await sender.say(room, body)
        async with asyncio.timeout(20):
            while min(last_seq.values()) < sent and not slow_gone.is_set():
                progress.clear()
                await progress.wait()
    code, frames = await slow.closed()
    assert slow_gone.is_set(), f"slow client still open after {sent} messages"
    assert code == 1013
    # What the slow client did not read stayed in the kernel's socket buffers, not in
    # the server: its memory hardly moved while megabytes went to that socket.
    unread_kib = (sent - len(frames)) * len(body.encode()) // 1024
    growth_kib = server_rss_kib(server) - rss_before
    assert growth_kib < 8 * 1024, (growth_kib, unread_kib)

    for reader in readers:
        reader.cancel()  # safe: websockets keeps a frame whose recv() was cancelled
    await asyncio.gather(*readers, return_exceptions=True)
    for client, frames in received.items():
        have = [f for f in frames if isinstance(f, MessageFrame)]
        if not have or have[-1].seq < sent:
            have += await client.messages_until(room, sent, within=30)
        assert seqs(have) == list(range(1, sent + 1))
        await client.close()


async def test_metrics_count_open_websockets_and_frames(
    server: ServerProcess, http: httpx.AsyncClient
) -> None:
    """Frames are counted by the engine and collected once a second, not per frame."""

    async def metrics() -> str:
        return (await http.get("/metrics")).text

    before = await metrics()
    received_before = sample(before, "townsquare_websocket_messages_received_total") or 0
    sent_before = sample(before, "townsquare_websocket_messages_sent_total") or 0
    ann = await signup(http)
    room = await make_room(http, ann)
    client = await connect(server, ann)  # welcome
    await client.join(room)  # join -> joined
    for _ in range(2):
        await client.ping()

    async def counted(open_: float, received: float, sent: float) -> bool:
        text = await metrics()
        return (
            sample(text, "townsquare_websockets_open") == open_
            and (sample(text, "townsquare_websocket_messages_received_total") or 0)
            - received_before
            >= received
            and (sample(text, "townsquare_websocket_messages_sent_total") or 0) - sent_before
            >= sent
        )

    assert await eventually(lambda: counted(1, 3, 4), 5)
    await client.close()
    assert await eventually(lambda: counted(0, 3, 4), 5)
