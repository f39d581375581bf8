"""Every background job of every feature, registered on the job engine by name.

The web app (to enqueue them, or to run them in process) and `townsquare worker`
(to run them) both call `register_jobs`, so both know the same names and options.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from townsquare.auth import accounts
from townsquare.auth.purge import purge_spent_tokens
from townsquare.config import Settings
from townsquare.platform.database import Database
from townsquare.platform.jobs import Jobs
from townsquare.platform.mail import Mail, Mailer
from townsquare.rooms import retention

logger = logging.getLogger(__name__)

PURGE_JOB = "maintenance.purge"


@dataclass(frozen=True, slots=True)
class JobContext:
    settings: Settings
    database: Database
    mailer: Mailer
    jobs: Jobs


async def purge(context: JobContext) -> dict[str, int]:
    settings = context.settings
    async with context.database.sessions() as session:
        counts = await purge_spent_tokens(session)
        counts["idempotency_keys"] = await retention.forget_idempotency_keys(
            session, older_than=timedelta(seconds=settings.idempotency_key_ttl_seconds)
        )
        if settings.message_retention_days is not None:
            counts["messages"] = await retention.delete_old_messages(
                session, older_than=timedelta(days=settings.message_retention_days)
            )
    logger.info("purge done", extra={"purged": counts})
    return counts


def register_jobs(jobs: Jobs, context: JobContext) -> None:
    async def send_mail(mail: dict[str, Any]) -> None:
        await context.mailer.send(Mail.from_dict(mail))

    async def password_reset(email: str) -> None:
        async with context.database.sessions() as session:
            await accounts.request_password_reset(
                session, context.jobs, context.settings, email=email
            )

    async def periodic_purge() -> None:
        await purge(context)

    jobs.register(accounts.SEND_MAIL_JOB, send_mail, retry=True)
    jobs.register(accounts.PASSWORD_RESET_JOB, password_reset, retry=True)
    jobs.register(PURGE_JOB, periodic_purge, every_seconds=context.settings.purge_interval_seconds)
