"""The per-account sign-in throttle, beside the per-address limit of the middleware.

The per-address limit (RATE_LIMIT_LOGIN) stops one client guessing many passwords; it
does not stop a botnet guessing one account's password from thousands of addresses.
This throttle counts sign-in attempts per account (the submitted email, so an unknown
email behaves exactly like a known one) across all addresses, and once over
RATE_LIMIT_LOGIN_ACCOUNT answers 429 before the password is checked.

A throttle keyed on the account alone would let anyone lock its owner out by failing
on purpose. So addresses that signed in to the account successfully within
RATE_LIMIT_LOGIN_TRUST_DAYS are exempt from it (they stay under the per-address
limit): the owner signs in from their usual addresses during an attack, while the
attacker, who never signed in, is throttled. The owner on a new address during an
attack waits for the window to end, or resets the password. Attempts from exempt
addresses are not counted, and nothing about the account (whether it exists) shows.
"""

from __future__ import annotations

import hashlib

from townsquare.platform.errors import TooManyRequests
from townsquare.platform.ratelimit import RateLimiter


class TooManyLoginAttempts(TooManyRequests):
    detail = "Too many sign-in attempts for this account, retry later"


def _account(email: str) -> str:
    # Emails are compared case-insensitively and kept out of Redis key names.
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]


class LoginThrottle:
    def __init__(
        self, limiter: RateLimiter, *, limit: str, trust_seconds: int, enabled: bool = True
    ) -> None:
        self.limiter = limiter
        self.limit = limiter.parse(limit)
        self.trust_seconds = trust_seconds
        self.enabled = enabled

    async def attempt(self, email: str, client_ip: str) -> None:
        """Count a sign-in attempt; raise `TooManyLoginAttempts` when over the limit."""
        if not self.enabled:
            return
        account = _account(email)
        if self.trust_seconds and await self.limiter.remembers("trusted", account, client_ip):
            return
        decision = await self.limiter.hit(self.limit, "login-account", account)
        if not decision.allowed:
            raise TooManyLoginAttempts(decision.retry_after)

    async def succeeded(self, email: str, client_ip: str) -> None:
        """Exempt this address from the account's throttle for the trust period."""
        if self.enabled and self.trust_seconds:
            await self.limiter.remember(self.trust_seconds, "trusted", _account(email), client_ip)
