"""The access-token codec on its own: verification is remembered, expiry is not."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from types import SimpleNamespace

import jwt
import pytest

from tests.conftest import make_settings
from townsquare.auth import tokens
from townsquare.auth.exceptions import InvalidToken
from townsquare.auth.tokens import VERIFIED_CACHE_SIZE, TokenCodec


@pytest.fixture
def codec() -> TokenCodec:
    return TokenCodec(make_settings(access_token_ttl_seconds=60))


def test_decoding_a_token_twice_verifies_its_signature_once(
    codec: TokenCodec, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = codec.encode_access(user_id=3, token_version=1, session_id="s1", now=datetime.now(UTC))
    calls = []
    real_decode = jwt.decode

    def counting_decode(*args: object, **kwargs: object) -> object:
        calls.append(1)
        return real_decode(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(jwt, "decode", counting_decode)
    first = codec.decode_access(token)
    second = codec.decode_access(token)
    assert first == second
    assert (first.user_id, first.token_version) == (3, 1)
    assert len(calls) == 1


def test_remembered_token_past_its_expiry_is_refused(
    codec: TokenCodec, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = codec.encode_access(user_id=3, token_version=0, session_id="s1", now=datetime.now(UTC))
    claims = codec.decode_access(token)
    later = claims.expires_at + tokens.LEEWAY_SECONDS + 1
    monkeypatch.setattr(tokens, "time", SimpleNamespace(time=lambda: later))
    with pytest.raises(InvalidToken):
        codec.decode_access(token)


def test_invalid_token_is_refused_every_time(codec: TokenCodec) -> None:
    forged = jwt.encode({"sub": "1"}, "another key that is long enough" * 2, algorithm="HS256")
    for _ in range(2):
        with pytest.raises(InvalidToken):
            codec.decode_access(forged)


def test_remembered_tokens_are_bounded(codec: TokenCodec) -> None:
    now = datetime.now(UTC)
    first = codec.encode_access(user_id=1, token_version=0, session_id="s1", now=now)
    codec.decode_access(first)
    for user_id in range(2, VERIFIED_CACHE_SIZE + 3):
        codec.decode_access(
            codec.encode_access(user_id=user_id, token_version=0, session_id="s1", now=now)
        )
    assert len(codec._verified) == VERIFIED_CACHE_SIZE
    assert first not in codec._verified
    assert codec.decode_access(first).user_id == 1  # still valid: verified again
    assert time.time() < codec.decode_access(first).expires_at
