"""The front door stays true: every setting, route and frame is documented where
users look for it."""

from __future__ import annotations

import re
import typing
from pathlib import Path

import pytest

from tests.conftest import make_settings
from townsquare.config import Settings
from townsquare.main import create_app
from townsquare.rooms import protocol

ROOT = Path(__file__).resolve().parent.parent
VARIABLES = sorted(name.upper() for name in Settings.model_fields)
METHODS = ("get", "post", "put", "patch", "delete")


def test_every_setting_is_a_row_of_the_readme_configuration_table() -> None:
    rows = set(re.findall(r"^\| `([A-Z0-9_]+)` \|", (ROOT / "README.md").read_text(), re.M))
    missing = [name for name in VARIABLES if name not in rows]
    assert not missing, f"README.md's configuration table lacks {missing}"


def test_every_setting_is_in_env_example() -> None:
    # Set, or commented out (a setting without a default, like REDIS_URL).
    lines = (ROOT / ".env.example").read_text().splitlines()
    named = {line.lstrip("# ").partition("=")[0] for line in lines if "=" in line}
    missing = [name for name in VARIABLES if name not in named]
    assert not missing, f".env.example lacks {missing}"


def _readme_routes() -> dict[str, set[str]]:
    """Each path the README names in backticks, with the methods named on its line."""
    found: dict[str, set[str]] = {}
    for line in (ROOT / "README.md").read_text().splitlines():
        methods = {m.lower() for m in re.findall(r"\b(GET|POST|PUT|PATCH|DELETE)\b", line)}
        for path in re.findall(r"(/[a-z0-9_{}/-]*)(?=[`?\s])", line):
            found.setdefault(path.rstrip("/") or "/", set()).update(methods)
    return found


def test_every_route_of_the_openapi_document_is_in_the_readme() -> None:
    schema = create_app(make_settings()).openapi()
    documented = _readme_routes()
    missing = [
        f"{method.upper()} {path}"
        for path, operations in schema["paths"].items()
        for method in operations
        if method in METHODS and method not in documented.get(path, set())
    ]
    assert not missing, f"README.md does not name {missing}"


def _frame_types(union: object) -> set[str]:
    types: set[str] = set()
    for model in typing.get_args(typing.get_args(union)[0]):
        literal = model.model_fields["type"].annotation
        types.update(typing.get_args(literal))
    return types


@pytest.mark.parametrize("direction", ["ClientFrame", "ServerFrame"])
def test_every_frame_type_is_in_the_rooms_doc(direction: str) -> None:
    text = (ROOT / "docs" / "rooms.md").read_text()
    types = _frame_types(getattr(protocol, direction))
    assert types, f"no frame types found in protocol.{direction}"
    missing = [kind for kind in sorted(types) if not re.search(rf"\| `{kind}[ `]", text)]
    assert not missing, f"docs/rooms.md's frame tables lack {missing}"


def test_readme_names_the_two_setup_commands() -> None:
    text = (ROOT / "README.md").read_text()
    assert "make run" in text
    assert "make test" in text
