"""The data-plane processes on the status page and in ``/metrics`` (HAProxy's ``show proc``):
one row per process (slot, pid, start, connections, requests, configuration generation) and
their totals. Only a balancer started with ``--processes N`` has rows; with one process the
section is left out, as mod_jk's page has none.

The rows are a copy of the shared table's process rows (balancer/lb/shm.py) taken when a page
is rendered; the renderers below read nothing else.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from balancer.lb.shm import ProcessRow
from balancer.status.model import Field


def _started(row: ProcessRow) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(row.started))


def process_fields(rows: Sequence[ProcessRow]) -> list[tuple[str, list[Field]]]:
    """("Processes" totals, then one "Process" per row) as txt-style fields."""
    if not rows:
        return []
    out = [
        (
            "Processes",
            [
                Field("count", len(rows)),
                Field("connections", sum(r.connections for r in rows)),
                Field("requests", sum(r.requests for r in rows)),
            ],
        )
    ]
    for r in rows:
        out.append(
            (
                "Process",
                [
                    Field("slot", r.slot),
                    Field("pid", r.pid),
                    Field("started_at", _started(r)),
                    Field("connections", r.connections),
                    Field("requests", r.requests),
                    Field("generation", r.generation),
                ],
            )
        )
    return out


def processes_html(rows: Sequence[ProcessRow]) -> str:
    if not rows:
        return ""
    body = "".join(
        f"<tr><td>{r.slot}</td><td>{r.pid}</td><td>{_started(r)}</td>"
        f"<td>{r.connections}</td><td>{r.requests}</td><td>{r.generation}</td></tr>"
        for r in rows
    )
    total = (
        f"<tr><th>total</th><td>{len(rows)} processes</td><td></td>"
        f"<td>{sum(r.connections for r in rows)}</td><td>{sum(r.requests for r in rows)}</td>"
        "<td></td></tr>"
    )
    return (
        '<h2 id="processes">Data-plane processes</h2>'
        # in a scroll wrapper, as every wide table: the page itself never scrolls sideways
        '<div class="scroll"><table class="processes"><tr><th>Slot</th><th>PID</th>'
        "<th>Started</th><th>Connections</th><th>Requests</th><th>Generation</th></tr>"
        f"{body}{total}</table></div>"
    )


def processes_metrics(rows: Sequence[ProcessRow]) -> Iterator[Metric]:
    if not rows:
        return
    labels = ["slot", "pid"]
    started = GaugeMetricFamily(
        "pyjk_process_start_time_seconds", "when the data-plane process started", labels=labels
    )
    connections = GaugeMetricFamily(
        "pyjk_process_connections", "open client connections", labels=labels
    )
    requests = CounterMetricFamily(
        "pyjk_process_requests", "requests routed by the data-plane process", labels=labels
    )
    generation = GaugeMetricFamily(
        "pyjk_process_config_generation", "configuration generation served", labels=labels
    )
    for r in rows:
        key = [str(r.slot), str(r.pid)]
        started.add_metric(key, r.started)
        connections.add_metric(key, float(r.connections))
        requests.add_metric(key, float(r.requests))
        generation.add_metric(key, float(r.generation))
    yield started
    yield connections
    yield requests
    yield generation
    yield GaugeMetricFamily("pyjk_processes", "data-plane processes running", len(rows))
    yield GaugeMetricFamily(
        "pyjk_connections",
        "open client connections, all processes",
        float(sum(r.connections for r in rows)),
    )
    yield CounterMetricFamily(
        "pyjk_requests", "requests routed, all processes", float(sum(r.requests for r in rows))
    )
