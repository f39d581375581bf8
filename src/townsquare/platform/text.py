"""What text the service stores: no control characters, no lone surrogates.

A NUL cannot be stored in PostgreSQL text at all (the insert fails, a 500 if nothing
catches it), a lone surrogate cannot be encoded as UTF-8 by either database, and
other control characters hide or rewrite what people see. Every text field refuses
them at validation, with a message saying so (422), the same on both databases.

Each rule is one regular expression, used twice: to validate (Python's `re`) and as
the field's `pattern` in the OpenAPI document, so what the schema allows is what the
API accepts. The patterns use only escapes that Python, ECMAScript and Rust's regex
(which schema validators use) read alike. Lone surrogates are refused besides, by the
validator alone: no regex engine but Python's can name them, and they are not valid
Unicode, so no well-formed client sends one.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import AfterValidator, Field

_CONTROL = r"\x00-\x1f\x7f-\x9f"
_CONTROL_BUT_LINE_BREAKS = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"  # tab, LF, CR allowed
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _pattern(forbidden: str, *, visible: bool) -> str:
    allowed = f"[^{forbidden}]"
    if not visible:
        return f"^{allowed}*$"
    # At least one character that is not white space.
    return f"^{allowed}*[^\\s{forbidden}]{allowed}*$"


SINGLE_LINE = _pattern(_CONTROL, visible=False)
SINGLE_LINE_VISIBLE = _pattern(_CONTROL, visible=True)
MULTI_LINE_VISIBLE = _pattern(_CONTROL_BUT_LINE_BREAKS, visible=True)


def text_rule(pattern: str, message: str) -> tuple[Any, AfterValidator]:
    """The schema `pattern` and the validator of one rule, to put in an `Annotated`."""
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.match(value) or _LONE_SURROGATE.search(value):
            raise ValueError(message)
        return value

    return Field(json_schema_extra={"pattern": pattern}), AfterValidator(check)


def has_forbidden_characters(value: str) -> bool:
    """For inputs outside any schema (the login form): anything SINGLE_LINE refuses."""
    return re.match(SINGLE_LINE, value) is None or _LONE_SURROGATE.search(value) is not None
