"""The example systemd units of docs/operations.md pass ``systemd-analyze verify`` cleanly
(the venv path swapped for this checkout's, so the commands it checks exist)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "operations.md"
UNIT = re.compile(r"```ini\n# /etc/systemd/system/(\S+)[^\n]*\n(.*?)```", re.S)


def units() -> list[tuple[str, str]]:
    return UNIT.findall(DOC.read_text())


def test_the_guide_has_a_balancer_and_a_worker_unit():
    names = [name for name, _ in units()]
    assert names == ["pyjk-balancer.service", "pyjk-worker@.service"]
    for _, body in units():
        assert "/opt/pyjk/venv/bin/pyjk-" in body  # the installed commands, not python -m


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_analyze_verify_accepts_the_units(tmp_path):
    paths = []
    for name, body in units():
        body = body.replace("/opt/pyjk/venv/bin", str(Path(sys.executable).parent))
        path = tmp_path / name.replace("@.service", "@node1.service")
        path.write_text(body)
        paths.append(str(path))
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *paths],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "", done.stderr  # unknown keys are only warned about
