from __future__ import annotations

from townsquare.platform.errors import NotFound


class ApiKeyNotFound(NotFound):
    detail = "API key not found"


class RoomsNotFound(NotFound):
    detail = "Room not found"
