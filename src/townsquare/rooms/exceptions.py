from __future__ import annotations

from townsquare.platform.errors import AppError, Conflict, Forbidden, NotFound


class RoomNotFound(NotFound):
    # Also the answer for a private room the caller is not a member of: a 403 would
    # tell them it exists.
    detail = "Room not found"


class RoomNameTaken(Conflict):
    detail = "A room with this name already exists"


class MemberNotFound(NotFound):
    detail = "Member not found"


class NotRoomManager(Forbidden):
    detail = "Only the room's owner or an admin can do this"


class OwnerCannotBeRemoved(Conflict):
    detail = "The room's owner cannot be removed"


class IdempotencyKeyReused(AppError):
    status_code = 422
    detail = "This Idempotency-Key was already used with a different body"
