from __future__ import annotations

import asyncio
import io
import json
import logging
import logging.config
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from tests.conftest import MakeAccount
from tests.platform.conftest import CapturedLogs
from townsquare.platform.context import set_user_id
from townsquare.platform.database import Database
from townsquare.platform.logging import (
    AccessLog,
    JsonFormatter,
    LoopTurnStreamHandler,
    RedactQueryStrings,
    logging_config,
)
from townsquare.platform.middleware.request_id import bind_request_id


async def test_login_and_bearer_requests_never_log_password_or_token(
    client: httpx.AsyncClient, make_account: MakeAccount, json_logs: CapturedLogs
) -> None:
    account = await make_account(password="hunter2-very-secret-pass")
    me = await client.get("/me", headers=account.headers)
    with_query = await client.get(
        f"/users/{account.id}?access_token={account.access_token}", headers=account.headers
    )
    refreshed = await client.post("/auth/refresh", json={"refresh_token": account.refresh_token})
    assert me.status_code == with_query.status_code == refreshed.status_code == 200

    text = json_logs.text
    assert "hunter2-very-secret-pass" not in text
    assert account.access_token not in text
    assert account.refresh_token not in text
    assert refreshed.json()["access_token"] not in text
    assert "Bearer" not in text
    assert "authorization" not in text.lower()
    assert "access_token=" not in text
    assert len(json_logs.access()) >= 5  # signup, login, me, user, refresh


async def test_access_log_has_route_template_status_duration_ids_and_user(
    client: httpx.AsyncClient, make_account: MakeAccount, json_logs: CapturedLogs
) -> None:
    account = await make_account()
    response = await client.get(
        f"/users/{account.id}", headers={**account.headers, "X-Request-ID": "trace-0123456789"}
    )
    assert response.headers["x-request-id"] == "trace-0123456789"

    line = json_logs.access()[-1]
    assert line["method"] == "GET"
    assert line["route"] == "/users/{user_id}"
    assert line["status"] == 200
    assert isinstance(line["duration_ms"], float)
    assert line["request_id"] == "trace-0123456789"
    assert line["user_id"] == account.id
    assert line["client_ip"] == "127.0.0.1"
    assert line["level"] == "INFO"


async def test_access_log_for_anonymous_request_after_signed_in_one_has_no_user(
    client: httpx.AsyncClient, make_account: MakeAccount, json_logs: CapturedLogs
) -> None:
    account = await make_account()
    await client.get("/me", headers=account.headers)
    await client.get("/health")
    lines = json_logs.access()
    assert lines[-2]["user_id"] == account.id
    assert lines[-1]["user_id"] is None


async def test_request_with_malformed_request_id_gets_a_fresh_one_in_logs(
    client: httpx.AsyncClient, json_logs: CapturedLogs
) -> None:
    response = await client.get("/health", headers={"X-Request-ID": "bad id\twith spaces"})
    request_id = response.headers["x-request-id"]
    assert request_id != "bad id\twith spaces"
    assert json_logs.access()[-1]["request_id"] == request_id


def test_json_formatter_outputs_one_object_with_extras_and_exception() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed %s", ("it",), None)
        import sys

        record.exc_info = sys.exc_info()
    record.route = "/things/{id}"
    line = JsonFormatter().format(record)
    assert "\n" not in line.split('"exception"')[0]
    data = json.loads(line)
    assert data["message"] == "failed it"
    assert data["route"] == "/things/{id}"
    assert "ValueError: boom" in data["exception"]


def test_logging_config_silences_server_access_logs_and_uses_json() -> None:
    config = logging_config("WARNING")
    assert config["root"]["level"] == "WARNING"
    assert config["loggers"]["uvicorn.access"]["handlers"] == []
    assert config["loggers"]["uvicorn.access"]["propagate"] is False
    assert config["handlers"]["default"]["formatter"] == "json"


async def test_failed_sql_statement_logs_no_parameters(
    app: FastAPI, json_logs: CapturedLogs
) -> None:
    database: Database = app.state.database
    with pytest.raises(DBAPIError) as failed:
        async with database.engine.connect() as connection:
            await connection.execute(
                text("SELECT no_such_function(:secret)"), {"secret": "sql-secret-parameter"}
            )
    logging.getLogger("townsquare.test").error("query failed", exc_info=failed.value)
    assert "no_such_function" in json_logs.text
    assert "sql-secret-parameter" not in json_logs.text
    assert "sql-secret-parameter" not in str(failed.value)


def test_redaction_cuts_query_strings_off_logged_request_targets() -> None:
    record = logging.LogRecord(
        "uvicorn.error",
        logging.INFO,
        __file__,
        1,
        '%s - "WebSocket %s" [accepted]',
        ("127.0.0.1:5000", "/ws?token=abc.def.ghi"),
        None,
    )
    assert RedactQueryStrings().filter(record)
    assert record.getMessage() == '127.0.0.1:5000 - "WebSocket /ws" [accepted]'


class _Writes(io.StringIO):
    """A stream that keeps each write apart."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


def _turn_logger(stream: _Writes) -> logging.Logger:
    handler = LoopTurnStreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.Logger("turn-test", logging.INFO)  # not registered: no other handler
    logger.addHandler(handler)
    return logger


async def test_lines_of_one_loop_turn_leave_in_one_write_in_order() -> None:
    stream = _Writes()
    logger = _turn_logger(stream)
    for n in range(3):
        logger.info("line %d", n)
    assert stream.writes == []  # still this turn
    turn_ended = asyncio.Event()
    asyncio.get_running_loop().call_soon(turn_ended.set)  # queued after the flush
    await turn_ended.wait()
    assert stream.writes == ["line 0\nline 1\nline 2\n"]
    logger.info("next turn")
    assert stream.writes[1:] == []
    await asyncio.sleep(0)
    assert stream.writes[1:] == ["next turn\n"]


async def test_warning_or_thread_line_is_written_at_once_after_what_waits() -> None:
    stream = _Writes()
    logger = _turn_logger(stream)
    logger.info("waiting")
    logger.warning("at once")
    assert stream.writes == ["waiting\nat once\n"]
    logger.info("waiting again")
    # Run and joined within this turn of the loop, so the turn's line still waits.
    thread = threading.Thread(target=logger.info, args=("from a thread",))
    thread.start()
    thread.join()
    assert stream.writes[1:] == ["waiting again\nfrom a thread\n"]


def test_outside_a_loop_a_line_is_written_at_once() -> None:
    stream = _Writes()
    _turn_logger(stream).info("no loop")
    assert stream.writes == ["no loop\n"]


async def test_flush_writes_what_waits_in_the_turn() -> None:
    stream = _Writes()
    logger = _turn_logger(stream)
    logger.info("waiting")
    logger.handlers[0].flush()  # as logging.shutdown does at exit
    assert stream.writes == ["waiting\n"]
    await asyncio.sleep(0)
    assert stream.writes == ["waiting\n"]  # nothing written twice


def test_a_line_left_by_a_loop_that_closed_does_not_hold_back_the_next_loops_lines() -> None:
    stream = _Writes()
    logger = _turn_logger(stream)

    async def log(text: str) -> None:
        logger.info(text)

    first = asyncio.new_event_loop()
    first.call_soon(first.stop)  # stops before the turn that would write the line
    first.run_until_complete(log("left behind"))
    first.close()
    second = asyncio.new_event_loop()
    try:
        second.run_until_complete(log("next loop"))
        second.run_until_complete(asyncio.sleep(0))
    finally:
        second.close()
    assert "".join(stream.writes) == "left behind\nnext loop\n"


@pytest.fixture
def configured_logging() -> Iterator[_Writes]:
    """Logging as `configure_logging` sets it up, into a stream of the test's; the root
    logger's set-up is put back afterwards."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.filters[:], root.level)
    stream = _Writes()
    logging.config.dictConfig(logging_config("INFO"))
    handler = root.handlers[0]
    assert isinstance(handler, LoopTurnStreamHandler)
    handler.setStream(stream)
    yield stream
    root.handlers[:], root.filters[:] = saved[0], saved[1]
    root.setLevel(saved[2])


def test_access_line_built_directly_is_the_line_logging_would_write(
    configured_logging: _Writes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(time, "time", lambda: 1_700_000_000.25)
    request_id = bind_request_id({"type": "http", "headers": []})
    set_user_id(7)
    access = AccessLog("townsquare.access")

    def log(user_id: int | None) -> None:
        access.log(
            method="GET",
            route="/users/{user_id}",
            status=200,
            seconds=0.0012345,
            client_ip="10.0.0.1",
            user_id=user_id,
        )

    # pytest's own capture handler on the root logger would take the record path.
    root = logging.getLogger()
    root.handlers = [h for h in root.handlers if isinstance(h, LoopTurnStreamHandler)]
    # As configured, the line skips `logging`'s record, filters and formatter.
    assert access._direct_handler() is logging.getLogger().handlers[0]
    log(None)  # the user from the request's context
    log(9)
    # Anything else on the way (here a filter on a parent logger) takes the record path.
    parent = logging.getLogger("townsquare")
    passing = logging.Filter()
    parent.addFilter(passing)
    try:
        assert access._direct_handler() is None
        log(None)
        log(9)
    finally:
        parent.removeFilter(passing)
    logging.getLogger().handlers[0].flush()
    lines = configured_logging.getvalue().splitlines()
    assert len(lines) == 4
    assert lines[:2] == lines[2:]
    assert json.loads(lines[0]) == {
        "time": "2023-11-14T22:13:20.250+00:00",
        "level": "INFO",
        "logger": "townsquare.access",
        "message": "GET /users/{user_id} 200",
        "request_id": request_id,
        "user_id": 7,
        "method": "GET",
        "route": "/users/{user_id}",
        "status": 200,
        "duration_ms": 1.23,
        "client_ip": "10.0.0.1",
    }
    assert json.loads(lines[1])["user_id"] == 9


def test_access_line_goes_through_logging_when_a_test_or_an_app_adds_a_handler(
    configured_logging: _Writes,
) -> None:
    caught: list[logging.LogRecord] = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            caught.append(record)

    extra = Catch()
    logging.getLogger().addHandler(extra)
    try:
        AccessLog("townsquare.access").log(
            method="GET", route="/health", status=200, seconds=0.001, client_ip=None, user_id=None
        )
    finally:
        logging.getLogger().removeHandler(extra)
    assert [record.getMessage() for record in caught] == ["GET /health 200"]
