"""pyjk-cluster scale: a start that fails part-way leaves no process of its own running."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from worker.cluster import ScaleError, Workers, main


def test_a_failed_start_stops_the_workers_it_could_not_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    toml = tmp_path / "cluster.toml"
    toml.write_text("")
    launched: list[subprocess.Popen[bytes]] = []

    def start(self: Workers, app: str, host: str, extra: list[str]):
        proc = subprocess.Popen(["sleep", "60"])
        launched.append(proc)
        return proc, tmp_path / f"w{len(launched)}.log"

    def wait_listening(self: Workers, proc: object, log_path: Path, deadline: float):
        raise ScaleError("a worker exited with 1 at start")

    monkeypatch.setattr(Workers, "start", start)
    monkeypatch.setattr(Workers, "wait_listening", wait_listening)
    try:
        assert main(["scale", "3", "--cluster", str(toml)]) == 1
        assert len(launched) == 3
        assert [p.poll() is not None for p in launched] == [True, True, True]
        capsys.readouterr()
        assert main(["status", "--cluster", str(toml)]) == 0
        assert "0 worker(s) running" in capsys.readouterr().out  # none was recorded
    finally:
        for p in launched:
            if p.poll() is None:
                p.kill()
                p.wait()
