"""The auth tests run against a real SMTP server: signup and resets send real mail."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.conftest import make_settings
from tests.support.smtp import MailServer, running_mail_server
from townsquare.config import Settings


@pytest.fixture
async def mail_server() -> AsyncIterator[MailServer]:
    async with running_mail_server() as server:
        yield server


@pytest.fixture
def settings(database_url: str, mail_server: MailServer) -> Settings:
    return make_settings(
        database_url=database_url,
        smtp_url=mail_server.url,
        public_url="https://chat.example.org",
        job_retry_delay_seconds=0.05,
        job_retry_max_delay_seconds=0.2,
    )
