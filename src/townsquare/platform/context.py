"""Per-request values that log records and middleware read: the authenticated user.

The request id lives in `middleware/request_id.py`; the user id is
set by the auth dependency once it knows who is calling, and reset for each request.
"""

from __future__ import annotations

from contextvars import ContextVar

_user_id: ContextVar[int | None] = ContextVar("user_id", default=None)


def get_user_id() -> int | None:
    return _user_id.get()


def set_user_id(user_id: int | None) -> None:
    _user_id.set(user_id)
