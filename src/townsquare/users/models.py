from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from townsquare.platform.database import Base, UTCDateTime, utcnow

PERSON = "person"
SERVICE = "service"


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Bumped when every session of the user must end (password change, logout from
    # everywhere, an admin disabling the account); access tokens carry the value they
    # were issued under and stop working once it moves.
    token_version: Mapped[int] = mapped_column(Integer, default=0)
    # When the owner followed a verification link sent to `email`; None until then, and
    # again after the email changes.
    email_verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    # PERSON for people; SERVICE for the account an API key posts as (no usable
    # password, never listed, cannot log in).
    kind: Mapped[str] = mapped_column(String(16), default=PERSON, server_default=PERSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    @property
    def email_verified(self) -> bool:
        return self.email_verified_at is not None
