"""Access tokens: short-lived HS256 JWTs whose algorithm, audience and issuer are pinned."""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta

import jwt

from townsquare.auth.exceptions import InvalidToken
from townsquare.config import Settings

ALGORITHM = "HS256"
REQUIRED_CLAIMS = ["exp", "iat", "sub", "aud", "iss", "ver"]
LEEWAY_SECONDS = 5
# Verified tokens remembered per process: a request's token is read by the rate
# limiter and then by the auth dependency, and a client sends the same token for
# minutes, so the signature is checked once rather than on every read.
VERIFIED_CACHE_SIZE = 4096
# A refresh-token family id is 32 hex characters (the column holds no more).
MAX_SESSION_ID_LENGTH = 32


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: int
    token_version: int
    expires_at: int
    # The login the token belongs to (`sid`, its refresh-token family id). None only on
    # tokens issued before the claim existed; they cannot be ended one login at a time
    # and simply run out.
    session_id: str | None = None


class TokenCodec:
    def __init__(self, settings: Settings) -> None:
        self._key = settings.secret_key.get_secret_value()
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self.access_ttl = timedelta(seconds=settings.access_token_ttl_seconds)
        self.refresh_ttl = timedelta(seconds=settings.refresh_token_ttl_seconds)
        self._verified: OrderedDict[str, AccessClaims] = OrderedDict()

    def encode_access(
        self, *, user_id: int, token_version: int, session_id: str, now: datetime
    ) -> str:
        payload = {
            "sub": str(user_id),
            "ver": token_version,
            "sid": session_id,
            "iat": int(now.timestamp()),
            "exp": int((now + self.access_ttl).timestamp()),
            "iss": self._issuer,
            "aud": self._audience,
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(payload, self._key, algorithm=ALGORITHM)

    def decode_access(self, token: str) -> AccessClaims:
        claims = self._verified.get(token)
        if claims is None:
            claims = self._verify(token)
            self._verified[token] = claims
            if len(self._verified) > VERIFIED_CACHE_SIZE:
                self._verified.popitem(last=False)
        # Expiry is checked on every use, a remembered token included.
        if claims.expires_at + LEEWAY_SECONDS <= time.time():
            raise InvalidToken()
        return claims

    def _verify(self, token: str) -> AccessClaims:
        try:
            # The algorithm list is pinned: a token that names `none` or any other
            # algorithm is refused before its signature is even looked at.
            payload = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                options={"require": REQUIRED_CLAIMS},
                leeway=LEEWAY_SECONDS,
            )
            user_id = int(payload["sub"])
            version = payload["ver"]
            session_id = payload.get("sid")
            if not isinstance(version, int) or user_id < 1:
                raise InvalidToken()
            if session_id is not None and not (
                isinstance(session_id, str) and 0 < len(session_id) <= MAX_SESSION_ID_LENGTH
            ):
                raise InvalidToken()
            return AccessClaims(
                user_id=user_id,
                token_version=version,
                expires_at=payload["exp"],
                session_id=session_id,
            )
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise InvalidToken() from exc


def new_refresh_token() -> str:
    return secrets.token_urlsafe(32)


def hash_refresh_token(token: str) -> str:
    # Refresh tokens are random 256-bit strings, so a fast hash is enough: the database
    # never holds a usable token, and lookups stay an index hit.
    return hashlib.sha256(token.encode()).hexdigest()
