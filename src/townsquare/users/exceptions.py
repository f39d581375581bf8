from __future__ import annotations

from townsquare.platform.errors import Conflict, Forbidden, NotFound


class UserNotFound(NotFound):
    detail = "User not found"


class EmailAlreadyRegistered(Conflict):
    detail = "A user with this email already exists"


class WrongCurrentPassword(Forbidden):
    detail = "The current password is incorrect"


class CannotDemoteSelf(Forbidden):
    detail = "Admins cannot disable or demote their own account"


class LastAdmin(Conflict):
    detail = "This would leave no active admin: make another account an admin first"
