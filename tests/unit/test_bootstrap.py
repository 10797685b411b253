"""scripts/bootstrap.sh, run in a scratch copy with apt-get, dpkg and pip replaced by recorders.

Nothing is installed: the fakes log what they were asked and whether policy-rc.d was in place.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _fake(path: Path, body: str) -> None:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


@pytest.fixture
def scratch(tmp_path: Path) -> dict[str, Path]:
    root = tmp_path / "repo"
    (root / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "bootstrap.sh", root / "scripts" / "bootstrap.sh")
    (root / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "log"
    policy = tmp_path / "policy-rc.d"
    _fake(bin_dir / "dpkg", "exit 1\n")  # every asked-for package is missing
    _fake(
        bin_dir / "apt-get",
        f'if [ -e "{policy}" ]; then p=policy; else p=nopolicy; fi\n'
        f'echo "apt-get $p $*" >> "{log}"\n'
        'case "$*" in *fail-me*) exit 100;; esac\n',
    )
    venv_bin = root / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    _fake(venv_bin / "python", f'echo "python $*" >> "{log}"\n')
    return {"root": root, "bin": bin_dir, "log": log, "policy": policy}


def _run(s: dict[str, Path], *packages: str, extras: str | None = None) -> int:
    env = {**os.environ, "PATH": f"{s['bin']}:{os.environ['PATH']}"}
    env["PYJK_POLICY_RC_D"] = str(s["policy"])
    env.pop("PYJK_EXTRAS", None)
    if extras is not None:
        env["PYJK_EXTRAS"] = extras
    if os.geteuid() != 0:
        _fake(s["bin"] / "sudo", 'exec "$@"\n')
    done = subprocess.run(
        ["bash", str(s["root"] / "scripts" / "bootstrap.sh"), *packages],
        env=env,
        capture_output=True,
        timeout=60,
    )
    return done.returncode


def test_policy_rc_d_is_in_place_while_installing_and_removed_after(scratch):
    assert _run(scratch, "nginx") == 0
    lines = scratch["log"].read_text().splitlines()
    assert any(line.startswith("apt-get policy install") for line in lines)
    assert not scratch["policy"].exists()  # packaged services can start again


def test_policy_rc_d_is_removed_when_the_install_fails(scratch):
    assert _run(scratch, "fail-me") != 0
    assert not scratch["policy"].exists()


def test_a_policy_rc_d_the_machine_already_had_is_left_alone(scratch):
    scratch["policy"].write_text("#!/bin/sh\nexit 0\n")
    assert _run(scratch, "nginx") == 0
    assert scratch["policy"].read_text() == "#!/bin/sh\nexit 0\n"


def test_the_demo_installs_pyjk_without_the_test_and_bench_extras(scratch):
    assert _run(scratch) == 0
    installs = [x for x in scratch["log"].read_text().splitlines() if " install -q -e " in x]
    assert installs == ["python -m pip install -q -e ."]


def test_the_test_command_installs_the_test_and_bench_extras(scratch):
    assert _run(scratch, extras="test,bench") == 0
    installs = [x for x in scratch["log"].read_text().splitlines() if " install -q -e " in x]
    assert installs == ["python -m pip install -q -e .[test,bench]"]
    assert "PYJK_EXTRAS=test,bench scripts/bootstrap.sh" in (REPO / "scripts/test.sh").read_text()
