"""The shipped conf/uriworkermap.properties loads and maps what its comments promise."""

from __future__ import annotations

from pathlib import Path

import pytest

from balancer.config.model import Activation, LbConfig, MemberConfig, StatusConfig, WorkersConfig
from balancer.mounts import Mapped, Unmapped, UriMap, load_mounts

CONF = Path(__file__).resolve().parents[2] / "conf"


def shipped_names() -> WorkersConfig:
    """The worker names of conf/workers.properties, built directly."""
    nodes = ("node1", "node2", "node3")
    return WorkersConfig(
        worker_list=("lb", "jkstatus"),
        maintain=60,
        lbs={"lb": LbConfig("lb", balance_workers=nodes)},
        members={n: MemberConfig(n, type="http") for n in nodes},
        statuses={"jkstatus": StatusConfig("jkstatus")},
    )


@pytest.fixture(scope="module")
def shipped() -> UriMap:
    m, warnings = load_mounts(CONF / "uriworkermap.properties", shipped_names(), environ={})
    assert warnings == []
    return m


@pytest.mark.parametrize(
    ("raw", "worker"),
    [
        ("/app", "lb"),
        ("/app/", "lb"),
        ("/app/index.html", "lb"),
        ("/app/x;jsessionid=ABC.node2", "lb"),
        ("/app/static/logo.png", "lb"),  # the .png exclusion ships disabled
        ("/app/api/items", "lb"),
        ("/jkmanager", "jkstatus"),
        ("/jkmanager/", "jkstatus"),
        ("/jkmanager/?cmd=list", "jkstatus"),
        ("/metrics", "jkstatus"),
    ],
)
def test_shipped_map_sends_paths_to_the_documented_workers(shipped, raw, worker):
    decision = shipped.match(raw)
    assert isinstance(decision, Mapped), decision
    assert decision.worker == worker


@pytest.mark.parametrize("raw", ["/", "/favicon.ico", "/apps", "/metrics/x", "/-/ready"])
def test_shipped_map_leaves_everything_else_unmapped(shipped, raw):
    assert isinstance(shipped.match(raw), Unmapped)


def test_shipped_examples_are_valid_rules_kept_disabled(shipped):
    disabled = {r.pattern: r for r in shipped.rules if not r.enabled}
    assert set(disabled) == {"/app/static/*.png", "/app/api/*", "/app/reports/*"}
    assert disabled["/app/static/*.png"].exclusion
    assert disabled["/app/api/*"].extensions.stateless
    assert disabled["/app/reports/*"].extensions.reply_timeout == 120000
    assert disabled["/app/reports/*"].extensions.activation == {"node3": Activation.STOPPED}


def test_shipped_map_loads_against_the_shipped_workers_properties():
    # Both shipped files together, read by the real workers.properties reader.
    from balancer.config.reader import load_workers

    workers, _ = load_workers(CONF / "workers.properties", environ={})
    m, warnings = load_mounts(CONF / "uriworkermap.properties", workers, environ={})
    assert warnings == []
    decision = m.match("/app/x")
    assert isinstance(decision, Mapped) and decision.worker in workers.lbs
    decision = m.match("/jkmanager")
    assert isinstance(decision, Mapped) and decision.worker in workers.statuses
