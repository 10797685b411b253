"""The data-plane processes on the status page (balancer/status/processes_view.py)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.registry import Collector

from balancer.lb.shm import ProcessRow
from balancer.status.processes_view import process_fields, processes_html, processes_metrics
from balancer.status.text import _line

ROWS = [ProcessRow(0, 101, 0.0, 2, 40, 3), ProcessRow(1, 102, 60.0, 1, 25, 3)]


def test_txt_has_the_totals_and_one_process_line_each():
    text = "".join(_line(kind, fields) for kind, fields in process_fields(ROWS))
    assert text == (
        "Processes: count=2 connections=3 requests=65\n"
        "Process: slot=0 pid=101 started_at=1970-01-01T00:00:00Z connections=2 requests=40 "
        "generation=3\n"
        "Process: slot=1 pid=102 started_at=1970-01-01T00:01:00Z connections=1 requests=25 "
        "generation=3\n"
    )


def test_one_process_shows_no_section():
    assert process_fields([]) == [] and processes_html([]) == ""
    assert list(processes_metrics([])) == []


def test_the_html_table_scrolls_in_its_own_wrapper():
    html = processes_html(ROWS)
    assert html.count("<tr>") == 4 and '<div class="scroll">' in html
    assert "<td>65</td>" in html


def test_metrics_have_a_series_per_process_and_the_totals():
    class Rows(Collector):
        def collect(self):
            yield from processes_metrics(ROWS)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Rows())
    text = generate_latest(registry).decode()
    assert 'pyjk_process_requests_total{pid="101",slot="0"} 40.0' in text
    assert 'pyjk_process_config_generation{pid="102",slot="1"} 3.0' in text
    assert "pyjk_processes 2.0" in text and "pyjk_requests_total 65.0" in text


def test_a_result_message_signed_by_one_process_is_shown_by_another_and_not_forged():
    from balancer.status.worker import _signed, _verified

    key = _signed("shared-token", "lb/n2 activation: DIS -> STP")
    assert _verified("shared-token", key) == "lb/n2 activation: DIS -> STP"
    assert _verified("other-token", key) is None
    _text, _, mac = key.partition(".")
    assert _verified("shared-token", "bGllcw." + mac) is None
