"""The balancer pair on the status page (balancer/status/pair_view.py) and the view's trip
from a supervisor to its data-plane processes (balancer/standby.py)."""

from __future__ import annotations

import json
import mmap

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.registry import Collector

from balancer.lb.shm import Table, table_size
from balancer.pair import PairView, Peer
from balancer.standby import read_view, view_part
from balancer.status.pair_view import pair_fields, pair_html, pair_metrics
from balancer.status.text import _line
from balancer.supervisor import SUPERVISOR_SLOT, publish_part

PEER = Peer("b" * 32, "standby", "10.0.0.2", ("0.0.0.0:80",), 0.25)
VIEW = PairView("active", (PEER,), 1, 0, False)


def test_txt_has_the_balancer_line_and_one_peer_line_each():
    text = "".join(_line(kind, fields) for kind, fields in pair_fields(VIEW))
    assert text == (
        "Balancer: role=active takeovers=1 two_actives=0 other_active=False\n"
        f"Peer: role=standby host=10.0.0.2 listen=0.0.0.0:80 heard_ms=250 id={'b' * 32}\n"
    )


def test_no_pair_shows_nothing():
    assert pair_fields(None) == [] and pair_html(None) == ""
    assert list(pair_metrics(None)) == []


def test_the_page_says_which_balancer_serves_and_warns_of_two_actives():
    html = pair_html(VIEW)
    assert "Balancer: <b>active</b>" in html and "standby at 10.0.0.2" in html
    assert "both serve" not in html
    assert "both serve" in pair_html(PairView("active", (), 0, 1, True))


def test_metrics_say_active_takeovers_and_the_peers_age():
    class Pair(Collector):
        def collect(self):
            yield from pair_metrics(VIEW)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Pair())
    text = generate_latest(registry).decode()
    assert "pyjk_balancer_active 1.0" in text
    assert "pyjk_balancer_takeovers_total 1.0" in text
    assert "pyjk_balancer_two_actives_total 0.0" in text
    assert 'pyjk_balancer_peer_heard_seconds{host="10.0.0.2",role="standby"} 0.25' in text
    # VIEW's drop_time is 0: its standby, heard 0.25 s ago, is not present
    assert 'pyjk_balancer_peers{role="standby"} 0.0' in text
    assert 'pyjk_balancer_peers{role="active"} 0.0' in text


def test_the_peers_gauge_counts_each_role_present():
    view = PairView("active", (PEER,), 0, 0, False, drop_time=3.0)
    [present] = [m for m in pair_metrics(view) if m.name == "pyjk_balancer_peers"]
    assert {s.labels["role"]: s.value for s in present.samples} == {"active": 0, "standby": 1}


def test_the_view_crosses_the_shared_table_whole_or_not_at_all():
    doc = json.dumps({"live": None, "limits": {}, **view_part(VIEW)}).encode()
    assert read_view(doc) == VIEW
    assert read_view(b"") is None and read_view(b'{"live": null, "limits": {}}') is None
    assert read_view(b'{"pair": {"role": "active"}}') is None


def test_the_supervisors_document_keeps_each_writers_keys():
    table = Table(mmap.mmap(-1, table_size()))
    table.format(b"s" * 32)
    publish_part(table, view_part(VIEW))
    publish_part(table, {"live": {"n1": 3}, "limits": {}})  # the cluster view's round
    assert read_view(table.blob(SUPERVISOR_SLOT)) == VIEW
    publish_part(table, view_part(PairView("standby", (), 0, 0, False)))
    assert json.loads(table.blob(SUPERVISOR_SLOT))["live"] == {"n1": 3}
