"""Every table of every feature, so `Base.metadata` is complete for migrations and tests."""

from townsquare.auth.models import RefreshToken
from townsquare.platform.database import Base
from townsquare.rooms.models import Message, Room, RoomMember
from townsquare.users.models import User

__all__ = ["Base", "Message", "RefreshToken", "Room", "RoomMember", "User"]
