"""The route template a request matched, for labels and log lines (never the raw path)."""

from __future__ import annotations

from starlette.types import Scope

UNMATCHED = "<unmatched>"


def route_template(scope: Scope) -> str:
    """`/users/{user_id}` for `/users/42`; one shared label for paths no route matched."""
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    if not isinstance(template, str):
        return UNMATCHED
    return template
