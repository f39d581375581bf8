"""A response for hot read routes: the model the route built, as JSON, in one call."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from starlette.responses import Response


class ModelResponse(Response):
    """`ModelResponse(model)`: `model` written by its own pydantic serializer.

    FastAPI validates what a route returns against its `response_model` and then
    serializes it: for a model the route has just built from its own columns, the
    validation only checks what is already true, on every request (measured: about 8 us
    of a 230 us authenticated read). A route returning this keeps `response_model` in
    its decorator for the OpenAPI document; what it returns must be an instance of it.
    """

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        assert isinstance(content, BaseModel)
        return content.__pydantic_serializer__.to_json(content)
