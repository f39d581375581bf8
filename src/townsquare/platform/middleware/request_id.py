"""Give every request an id: the caller's `X-Request-ID` when well-formed, else a new one."""

from __future__ import annotations

import itertools
import re
import uuid
from contextvars import ContextVar

from starlette.types import Scope

from townsquare.platform.context import set_user_id

HEADER = "x-request-id"
# Accept only ids a log line can carry safely: no spaces, quotes or control characters.
_WELL_FORMED = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")

_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)


def get_request_id() -> str | None:
    return _request_id.get()


# Generated ids: a random prefix per process and a counter. Unique across processes
# and restarts like a uuid4, without a call into the OS's random source per request;
# a request id only has to be unique, not secret.
_prefix = uuid.uuid4().hex[:16]
_counter = itertools.count(1)


def choose_request_id(incoming: str | None) -> str:
    if incoming is not None and _WELL_FORMED.match(incoming):
        return incoming
    return f"{_prefix}{next(_counter):016x}"


def bind_request_id(scope: Scope) -> str:
    """Choose the request's id, and make it the id of every log record of the request
    (a context variable) and of `request.state.request_id`."""
    incoming = None
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            incoming = value.decode("latin-1")
            break
    request_id = choose_request_id(incoming)
    _request_id.set(request_id)
    set_user_id(None)
    scope.setdefault("state", {})["request_id"] = request_id
    return request_id
