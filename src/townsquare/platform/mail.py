"""Outgoing mail: over SMTP (aiosmtplib) when SMTP_URL is set, else into the log.

A `Mail` is plain data (it travels through the job queue as JSON); a `Mailer` turns
it into a multipart message (plain text and HTML) and hands it over. Sending is one
attempt: retries belong to the job that sends it.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Mail:
    to: str
    subject: str
    text: str
    html: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Mail:
        return cls(
            to=str(data["to"]),
            subject=str(data["subject"]),
            text=str(data["text"]),
            html=str(data["html"]),
        )


class Mailer(Protocol):
    async def send(self, mail: Mail) -> None:
        """Hand `mail` over, or raise (the job retries)."""


class MailDeliveryError(Exception):
    """The SMTP server could not be reached or refused the mail."""


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    hostname: str
    port: int
    username: str | None
    password: str | None
    use_tls: bool
    # True: STARTTLS required; False: never; None: upgrade when the server offers it.
    start_tls: bool | None

    @classmethod
    def from_url(cls, url: str) -> SmtpConfig:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("SMTP_URL must look like smtp://user:pass@host:port")
        implicit_tls = parts.scheme == "smtps"
        query = {key: values[-1].lower() for key, values in parse_qs(parts.query).items()}
        starttls = query.get("starttls")
        start_tls = None if starttls is None else starttls in ("1", "true", "yes", "on")
        if implicit_tls:
            start_tls = False
        return cls(
            hostname=parts.hostname,
            port=parts.port or (465 if implicit_tls else 587 if start_tls else 25),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            use_tls=implicit_tls,
            start_tls=start_tls,
        )


def build_message(mail: Mail, sender: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = mail.to
    message["Subject"] = mail.subject
    message["Date"] = formatdate(localtime=False)
    _, address = parseaddr(sender)
    domain = Address(addr_spec=address).domain if "@" in address else None
    message["Message-ID"] = make_msgid(domain=domain or None)
    message.set_content(mail.text)
    message.add_alternative(mail.html, subtype="html")
    return message


class SmtpMailer:
    def __init__(self, config: SmtpConfig, *, sender: str, timeout: float) -> None:
        self.config = config
        self.sender = sender
        self.timeout = timeout

    async def send(self, mail: Mail) -> None:
        config = self.config
        try:
            await aiosmtplib.send(
                build_message(mail, self.sender),
                hostname=config.hostname,
                port=config.port,
                username=config.username,
                password=config.password,
                use_tls=config.use_tls,
                start_tls=config.start_tls,
                timeout=self.timeout,
            )
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            # The reason, never the message: it holds a link that works once.
            raise MailDeliveryError(
                f"SMTP {config.hostname}:{config.port}: {exc.__class__.__name__}: {exc}"
            ) from exc
        logger.info("mail sent", extra={"mail_subject": mail.subject})


class LogMailer:
    """No SMTP server. In development the mail, links included, goes to the log, so
    `make run` needs nothing; anywhere else only its recipient and subject do, since its
    single-use links are secrets that logs must not hold."""

    def __init__(self, *, with_body: bool) -> None:
        self.with_body = with_body

    async def send(self, mail: Mail) -> None:
        if not self.with_body:
            logger.warning(
                "SMTP_URL is not set; a mail to %s was not sent (%s)", mail.to, mail.subject
            )
            return
        logger.warning(
            "SMTP_URL is not set; this mail was not sent:\nTo: %s\nSubject: %s\n\n%s",
            mail.to,
            mail.subject,
            mail.text,
        )


def create_mailer(
    smtp_url: str | None, *, sender: str, timeout: float, log_bodies: bool = False
) -> Mailer:
    """SMTP when `smtp_url` is set; else the log (`log_bodies`: the whole mail)."""
    if not smtp_url:
        return LogMailer(with_body=log_bodies)
    return SmtpMailer(SmtpConfig.from_url(smtp_url), sender=sender, timeout=timeout)
