"""A dynamic lb's engine is "static ∪ dynamic", rebuilt like a reload of that one lb
(balancer.dynamic): no sockets, the listener is built but never started."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from balancer.cluster_source import ClusterSource
from balancer.config import parse_workers
from balancer.config.model import Activation, WorkersConfig
from balancer.dynamic import DynamicLbs
from balancer.runtime import build_engines
from replication.codec import MemberInfo

N4 = MemberInfo("4" * 32, "node4", "127.0.0.1", 4004, 1000.0, "127.0.0.1", 8104, 3)


def workers(tmp_path: Path) -> WorkersConfig:
    (tmp_path / "cluster.toml").write_text('name = "c"\n[security]\ninsecure = true\n')
    text = (
        "worker.list=lb\nworker.lb.type=lb\nworker.lb.balance_workers=s1\n"
        "worker.lb.cluster=cluster.toml\nworker.lb.cluster_template=worker.t\n"
        "worker.s1.type=http\nworker.s1.port=8101\n"
        "worker.t.type=http\nworker.t.reply_timeout=5000\n"
    )
    config, _ = parse_workers(text, str(tmp_path / "workers.properties"), environ={})
    return config


def test_dynamic_members_follow_the_static_ones_and_a_rebuild_keeps_everyones_state(tmp_path):
    config = workers(tmp_path)
    changed: list[str] = []
    dynamic = DynamicLbs(changed.append)
    lb = config.lbs["lb"]
    source = ClusterSource(lb, config.members["t"], config.lb_members(lb), dynamic.on_change)
    dynamic.sources["lb"] = source
    engines = build_engines(config, {}, 0.0, dynamic.members(config))
    assert [m.name for m in engines["lb"].members] == ["s1"]  # 503 until someone joins

    source.pool.heard(N4, 0.0)
    source.pool.probes_due(0.0)
    source.pool.ready_result(N4.id, True, wall=1_700_000_000.0)
    engine = dynamic.rebuild(config, engines, "lb", 1.0)
    assert engine is not None
    assert [(m.name, m.lbfactor, m.reply_timeout) for m in engine.members] == [
        ("s1", 1, 0), ("node4", 3, 5000),
    ]  # fmt: skip
    engine.member("s1").elected = 7
    engine.member("node4").elected = 5

    source.pool.heard(replace(N4, leaving=True), 2.0)
    again = dynamic.rebuild(config, {"lb": engine}, "lb", 2.0)
    assert again is not None and again is not engine
    assert again.member("s1") is engine.member("s1") and again.member("s1").elected == 7
    assert again.member("node4").elected == 5  # the same member, disabled
    assert again.member("node4").activation is Activation.DISABLED
    assert again.member("s1").activation is Activation.ACTIVE

    source.pool.left(N4, "shutdown")
    last = dynamic.rebuild(config, {"lb": again}, "lb", 3.0)
    assert last is not None and [m.name for m in last.members] == ["s1"]
    assert dynamic.rebuild(config, {"lb": last}, "no-such-lb", 3.0) is None


def test_a_dynamic_lb_without_static_members_starts_empty(tmp_path):
    (tmp_path / "cluster.toml").write_text('name = "c"\n[security]\ninsecure = true\n')
    text = "worker.list=lb\nworker.lb.type=lb\nworker.lb.cluster=cluster.toml\n"
    config, _ = parse_workers(text, str(tmp_path / "w.properties"), environ={})
    engine = build_engines(config, {}, 0.0)["lb"]
    assert engine.members == ()
