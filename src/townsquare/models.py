"""Every table of every feature, so `Base.metadata` is complete for migrations and tests."""

from townsquare.api_keys.models import ApiKey, ApiKeyRoom
from townsquare.auth.models import AccountToken, RefreshToken, UserSession
from townsquare.platform.database import Base
from townsquare.rooms.models import Message, Room, RoomMember
from townsquare.users.models import User

__all__ = [
    "AccountToken",
    "ApiKey",
    "ApiKeyRoom",
    "Base",
    "Message",
    "RefreshToken",
    "Room",
    "RoomMember",
    "User",
    "UserSession",
]
