from __future__ import annotations

from townsquare.platform.errors import AppError, Conflict, Forbidden, NotFound, Unauthorized


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


class InvalidAccountToken(NotFound):
    # 404: the token names a pending verification or reset, and there is none (never
    # mailed, expired, or already used); a made-up token is not a malformed request.
    detail = "This link is invalid, expired or already used; ask for a new one"


class EmailNotVerified(Forbidden):
    detail = "Verify your email address first: follow the link in the verification mail"


class EmailAlreadyVerified(Conflict):
    detail = "This email address is already verified"


class TooManyMails(AppError):
    status_code = 429
    detail = "Too many mails asked for; try again later"

    def __init__(self, retry_after: int) -> None:
        super().__init__()
        self.headers = {"Retry-After": str(retry_after)}  # type: ignore[misc]


class ApiKeyNotAccepted(InvalidToken):
    detail = "API keys are accepted only by POST /rooms/{name}/messages"


class SessionNotFound(NotFound):
    detail = "Session not found"
