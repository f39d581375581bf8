from __future__ import annotations

from townsquare.platform.errors import Forbidden, Unauthorized


class InvalidToken(Unauthorized):
    detail = "Could not validate credentials"


class InvalidCredentials(Unauthorized):
    detail = "Incorrect email or password"


class InvalidRefreshToken(Unauthorized):
    detail = "Invalid or expired refresh token"


class RefreshTokenReused(Unauthorized):
    detail = "Refresh token already used; every session of this login has been revoked"


class SessionEnded(Unauthorized):
    detail = "This login has ended; sign in again"


class InactiveUser(Forbidden):
    detail = "This account is disabled"


class AdminRequired(Forbidden):
    detail = "Administrator rights required"
