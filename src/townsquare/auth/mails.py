"""The account mails (verification, password reset), from Jinja templates in
auth/templates: a plain-text part and an HTML part (autoescaped) for each."""

from __future__ import annotations

from datetime import timedelta
from functools import cache
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from townsquare.platform.mail import Mail

# Where the web client serves the two flows; the token rides in the fragment, so it
# never reaches a server log or a Referer header.
VERIFY_PATH = "/#/verify?token="
RESET_PATH = "/#/reset?token="


@cache
def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("townsquare.auth", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )


def _render(template: str, subject: str, to: str, **context: str) -> Mail:
    env = _environment()
    values = {"subject": subject, **context}
    return Mail(
        to=to,
        subject=subject,
        text=env.get_template(f"{template}.txt").render(values),
        html=env.get_template(f"{template}.html").render(values),
    )


def describe(ttl: timedelta) -> str:
    minutes = int(ttl.total_seconds() // 60)
    if minutes >= 120 and minutes % 60 == 0:
        return f"{minutes // 60} hours"
    return f"{minutes} minutes"


def verification_mail(
    *, name: str, email: str, token: str, public_url: str, ttl: timedelta
) -> Mail:
    return _render(
        "verify_email",
        "Verify your email address",
        email,
        name=name,
        email=email,
        link=public_url + VERIFY_PATH + quote(token),
        public_url=public_url,
        valid_for=describe(ttl),
    )


def password_reset_mail(
    *, name: str, email: str, token: str, public_url: str, ttl: timedelta
) -> Mail:
    return _render(
        "password_reset",
        "Reset your password",
        email,
        name=name,
        email=email,
        link=public_url + RESET_PATH + quote(token),
        public_url=public_url,
        valid_for=describe(ttl),
    )
