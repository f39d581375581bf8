"""Checks on received frames, error frames, and the errors that end a connection."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from pydantic import ValidationError

from townsquare.rooms.protocol import CloseCode, ErrorCode, ErrorFrame


class CloseConnection(Exception):
    """End the connection with `code`; `error` (if any) is sent before `bye`."""

    def __init__(self, code: int, reason: str, error: ErrorCode | None = None) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason
        self.error = error


class ClientGone(Exception):
    """The client closed the socket."""


def error_text(code: ErrorCode, detail: str, ref: str | None = None) -> str:
    return ErrorFrame(code=code, detail=detail, ref=ref).model_dump_json()


def frame_error(exc: ValidationError) -> tuple[ErrorCode, str]:
    """Name what is wrong with a frame that did not parse, without echoing its input."""
    errors = exc.errors(include_input=False, include_url=False)
    kinds = {error["type"] for error in errors}
    if "json_invalid" in kinds:
        return ErrorCode.INVALID_JSON, "The frame is not valid JSON"
    if "union_tag_invalid" in kinds:
        return ErrorCode.UNKNOWN_TYPE, "Unknown frame type"
    # loc is (frame type, field, ...): name the field, or the frame for a frame error.
    parts = [
        f"{'.'.join(str(p) for p in error['loc'][1:]) or 'frame'}: {error['msg']}"
        for error in errors[:5]
    ]
    return ErrorCode.INVALID_FRAME, "; ".join(parts)


def check_frame(message: MutableMapping[str, Any], max_bytes: int) -> str:
    """The text of a received frame, or the close its kind or size calls for."""
    text = message.get("text")
    if text is None:
        raise CloseConnection(CloseCode.UNSUPPORTED_DATA, "binary frames are not supported")
    if len(text) > max_bytes or len(text.encode()) > max_bytes:
        raise CloseConnection(CloseCode.TOO_BIG, f"frame larger than {max_bytes} bytes")
    return str(text)
