"""The log scan that guards the whole suite finds what it is meant to find."""

from __future__ import annotations

import json

from tests.support.logscan import LogScan

TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlLW9mLXRoZS10b2tlbg"


def test_a_password_sent_in_a_form_and_found_in_a_log_is_a_leak() -> None:
    scan = LogScan()
    scan.observe_payload(
        b"username=a%40b.c&password=hunter2%20secret", "application/x-www-form-urlencoded"
    )
    assert scan.leaks(['{"message": "login failed for hunter2 secret"}'])
    assert not scan.leaks(['{"message": "login failed"}'])


def test_a_message_body_and_a_refresh_token_are_learned_from_json() -> None:
    scan = LogScan()
    scan.observe_payload(json.dumps({"type": "send", "room": "a", "body": "a private note"}), "")
    scan.observe_payload(json.dumps({"refresh_token": "r3fr3sh-t0k3n-value"}), "application/json")
    assert len(scan.leaks(["x a private note y", "refresh r3fr3sh-t0k3n-value"])) == 2


def test_any_jwt_in_a_log_is_a_leak_even_one_never_seen() -> None:
    assert LogScan().leaks([f"GET /ws?token={TOKEN} 101"])


def test_short_values_are_not_secrets() -> None:
    scan = LogScan()
    scan.observe_json({"body": "hi"})
    assert not scan.leaks(["hi there"])
