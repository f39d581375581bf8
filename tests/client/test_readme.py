"""The README's client example runs as written, against a real server, with the
account and room its curl lines create (only the address is the test server's)."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import pytest

from tests.client.conftest import sign_up
from tests.client.servers import WAIT
from tests.support.server import ServerProcess
from townsquare.client import Api

pytestmark = pytest.mark.e2e

README = Path(__file__).parents[2] / "README.md"


def readme_example() -> str:
    section = README.read_text().split("## Python client", 1)[1]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found is not None, "no python example under '## Python client'"
    return found.group(1)


def test_readme_example_is_ten_lines_of_code() -> None:
    lines = [line for line in readme_example().splitlines() if line.strip()]
    assert len(lines) == 10, lines


async def test_readme_example_runs_as_written(server: ServerProcess, tmp_path: Path) -> None:
    code = readme_example().replace("http://127.0.0.1:8000", server.base_url)
    assert server.base_url in code
    async with Api(server.base_url) as api:
        # The README's curl lines (no other test uses Ann's address or `general`).
        await api.signup(name="Ann", email="ann@example.com", password="correct horse")
        await api.login("ann@example.com", "correct horse")
        await api.create_room("general")
    bob = await sign_up(server.base_url, "Bob")

    script = tmp_path / "example.py"
    script.write_text(code)
    example = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert example.stdout is not None
    try:
        async with asyncio.timeout(WAIT):
            assert (await example.stdout.readline()).decode() == "1: Hello from Python!\n"
            async with Api(server.base_url, token=bob.tokens.access_token) as bob_api:
                posted = await bob_api.post_message("general", "hi Ann")
            assert (await example.stdout.readline()).decode() == f"{posted.seq}: hi Ann\n"
    finally:
        example.kill()
        await example.wait()
