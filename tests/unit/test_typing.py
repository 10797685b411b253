"""What a type checker tells an app developer about pyjk's API (mypy, as scripts/test.sh does)."""

from __future__ import annotations

from pathlib import Path

import pytest

mypy_api = pytest.importorskip("mypy.api")

REPO = Path(__file__).resolve().parents[2]

APP = """
from aiohttp import web
from worker import get_session, rotate_session_id

async def created(request: web.Request) -> None:
    session = await get_session(request)
    session["n"] = 1  # a session, not Optional: no check needed
    again = await get_session(request, create=True)
    again["n"] = 2
    rotated = await rotate_session_id(request)
    rotated["user"] = "alice"

async def maybe(request: web.Request) -> None:
    session = await get_session(request, create=False)
    session["n"] = 1  # an error: it may be None
"""


def test_get_session_is_a_session_unless_create_is_false(tmp_path):
    app = tmp_path / "app.py"
    app.write_text(APP)
    out, _, status = mypy_api.run(
        ["--no-incremental", "--strict", "--follow-imports=silent", str(app)]
    )
    errors = [line for line in out.splitlines() if ": error:" in line]
    assert status == 1, out
    assert len(errors) == 1, out
    assert f"{app}:15:" in errors[0] and "None" in errors[0]


def test_the_packages_ship_a_py_typed_marker():
    for package in ("balancer", "worker", "replication", "pyjk"):
        assert (REPO / package / "py.typed").is_file()
