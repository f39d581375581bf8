"""What a connection knows of its user: enough to act without a database read."""

from __future__ import annotations

from dataclasses import dataclass

from townsquare.users.schemas import UserPublic


@dataclass(frozen=True, slots=True)
class Account:
    id: int
    name: str
    is_admin: bool

    @property
    def public(self) -> UserPublic:
        return UserPublic(id=self.id, name=self.name)
