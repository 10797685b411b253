"""The running balancer wires its engines to the data plane, at start and after a reload."""

from __future__ import annotations

from pathlib import Path

from balancer.server import Balancer

WORKERS = """worker.list={lbs},jkstatus
worker.{lb}.type=lb
worker.{lb}.balance_workers=n1
worker.n1.type=http
worker.n1.host=127.0.0.1
worker.n1.port=18081
worker.jkstatus.type=status
"""


def test_every_engine_sees_the_pools_at_start_and_after_a_reload(tmp_path: Path) -> None:
    workers = tmp_path / "workers.properties"
    mounts = tmp_path / "uriworkermap.properties"
    workers.write_text(WORKERS.format(lbs="lb", lb="lb"))
    mounts.write_text("/app|/*=lb\n")
    balancer = Balancer(workers, mounts, [("127.0.0.1", 0, False)])
    has_room = balancer.proxy.pool_has_room
    assert [e.pool_has_room for e in balancer.runtime.engines.values()] == [has_room]
    # a reload that adds an lb: the new engine, and the carried-over one, see the pools
    workers.write_text(
        WORKERS.format(lbs="lb,lb2", lb="lb")
        + "worker.lb2.type=lb\nworker.lb2.balance_workers=n1\n"
    )
    assert balancer.reload("test")
    engines = balancer.runtime.engines
    assert {"lb", "lb2"} <= set(engines)
    assert all(e.pool_has_room == has_room for e in engines.values())


def test_a_departed_member_s_traffic_stats_fold_into_its_lb(tmp_path: Path) -> None:
    # dynamic members come and go for as long as the balancer runs: their per-member
    # histograms must not pile up, and the lb's totals must not go back
    workers = tmp_path / "workers.properties"
    mounts = tmp_path / "uriworkermap.properties"
    two = WORKERS.format(lbs="lb", lb="lb").replace("balance_workers=n1", "balance_workers=n1,n2")
    workers.write_text(two + "worker.n2.type=http\nworker.n2.host=127.0.0.1\nworker.n2.port=2\n")
    mounts.write_text("/app|/*=lb\n")
    balancer = Balancer(workers, mounts, [("127.0.0.1", 0, False)])
    stats = balancer.proxy.stats
    stats.answered("lb", "n1", 200, 0.001, 0.002)
    stats.answered("lb", "n2", 503, 0.001, 0.002)
    workers.write_text(WORKERS.format(lbs="lb", lb="lb"))
    assert balancer.reload("n2 removed")
    assert set(stats.members()) == {("lb", "n1")}
    assert stats.lbs()["lb"].classes == [0, 1, 0, 0, 1] and stats.frontend()[4] == 1
