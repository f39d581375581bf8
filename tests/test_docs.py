"""The front door stays true: every setting is documented where users look for it."""

from __future__ import annotations

from pathlib import Path

import pytest

from townsquare.config import Settings

ROOT = Path(__file__).resolve().parent.parent
VARIABLES = sorted(name.upper() for name in Settings.model_fields)


@pytest.mark.parametrize("document", ["README.md", ".env.example"])
def test_every_setting_is_documented(document: str) -> None:
    text = (ROOT / document).read_text()
    missing = [name for name in VARIABLES if f"`{name}`" not in text and f"{name}=" not in text]
    assert not missing, f"{document} does not mention {missing}"


def test_readme_names_the_two_setup_commands() -> None:
    text = (ROOT / "README.md").read_text()
    assert "make run" in text
    assert "make test" in text
