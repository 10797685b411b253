"""Reloading the URI map file in the running balancer: a file that cannot be read is refused
like a file with errors, and the running map stays (balancer/server.py via balancer.mounts)."""

from __future__ import annotations

from pathlib import Path

import pytest

from balancer.config.errors import ConfigError
from balancer.mounts import Mapped
from balancer.server import Balancer

WORKERS = """\
worker.list=lb
worker.node1.type=http
worker.node1.host=127.0.0.1
worker.node1.port=8101
worker.lb.type=lb
worker.lb.balance_workers=node1
"""


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    workers = tmp_path / "workers.properties"
    workers.write_text(WORKERS, encoding="utf-8")
    mounts = tmp_path / "uriworkermap.properties"
    mounts.write_text("/app|/*=lb\n", encoding="utf-8")
    return workers, mounts


def test_a_reload_with_a_map_that_is_not_utf8_is_refused_and_the_running_map_stays(files):
    workers, mounts = files
    balancer = Balancer(workers, mounts, [("127.0.0.1", 0, False)])
    mounts.write_bytes(b"/caf\xe9/*=lb\n")  # Latin-1, as an old editor might save it
    assert balancer.reload("test") is False
    assert isinstance(balancer.runtime.uri_map.match("/app/x"), Mapped)


def test_a_map_that_is_not_utf8_at_start_is_a_config_error_naming_the_file(files):
    workers, mounts = files
    mounts.write_bytes(b"/caf\xe9/*=lb\n")
    with pytest.raises(ConfigError) as caught:
        Balancer(workers, mounts, [("127.0.0.1", 0, False)])
    (problem,) = caught.value.problems
    assert problem.file == str(mounts) and "not UTF-8" in problem.message


def test_a_reload_after_the_map_file_vanished_is_refused(files):
    workers, mounts = files
    balancer = Balancer(workers, mounts, [("127.0.0.1", 0, False)])
    mounts.unlink()
    assert balancer.reload("test") is False
    assert isinstance(balancer.runtime.uri_map.match("/app"), Mapped)
