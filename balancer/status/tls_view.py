"""The TLS section of the status page and of ``/metrics``: listeners, handshakes, failures by
reason, protocol and cipher counts, each certificate's expiry.

Kept apart from the per-worker rendering (page.py, prometheus.py call one function each) so
the TLS figures can change without touching the mod_jk-shaped tables. ``TlsView`` is a plain
copy taken when a page is rendered; the renderers below read nothing else.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from balancer.status.escape import h

if TYPE_CHECKING:
    from balancer.dataplane.tls import TlsStats
    from balancer.dataplane.tls_listener import Terminator


@dataclass(frozen=True, slots=True)
class CertRow:
    file: str
    names: tuple[str, ...]
    not_after: datetime
    default: bool


@dataclass(frozen=True, slots=True)
class TlsView:
    listeners: tuple[str, ...]  # "https://host:port"
    handshakes: int
    failures: tuple[tuple[str, int], ...]
    protocols: tuple[tuple[str, int], ...]
    ciphers: tuple[tuple[str, int], ...]
    sni_default: int
    reloads: int
    reload_failures: int
    certificates: tuple[CertRow, ...]
    unknown_sni: str
    client_verify: str | None  # None: no client certificates asked for


def tls_view(
    terminator: Terminator,
    listens: Sequence[tuple[str, int, bool]],
    stats: TlsStats | None = None,
) -> TlsView:
    """``stats``: the counters to show (all processes' with --processes N), else the
    terminator's own."""
    stats = stats or terminator.stats
    settings = terminator.settings
    return TlsView(
        listeners=tuple(f"https://{host}:{port}" for host, port, tls in listens if tls),
        handshakes=stats.handshakes,
        failures=tuple(sorted(stats.failures.items())),
        protocols=tuple(sorted(stats.protocols.items())),
        ciphers=tuple(sorted(stats.ciphers.items())),
        sni_default=stats.sni_default,
        reloads=stats.reloads,
        reload_failures=stats.reload_failures,
        certificates=tuple(
            CertRow(i.cert_file, i.names, i.not_after, i.default) for i in terminator.certs.infos
        ),
        unknown_sni=settings.unknown_sni,
        client_verify=settings.client_verify if settings.client_ca is not None else None,
    )


# --- /metrics ---------------------------------------------------------------------------------


def tls_metrics(view: TlsView | None) -> Iterator[Metric]:
    if view is None:
        return
    listeners = GaugeMetricFamily("pyjk_tls_listener_info", "HTTPS listeners", labels=["address"])
    for address in view.listeners:
        listeners.add_metric([address], 1.0)
    yield listeners
    yield CounterMetricFamily("pyjk_tls_handshakes", "finished TLS handshakes", view.handshakes)
    failures = CounterMetricFamily(
        "pyjk_tls_handshake_failures",
        "TLS connections closed before a handshake",
        labels=["reason"],
    )
    for reason, n in view.failures:
        failures.add_metric([reason], float(n))
    yield failures
    protocols = CounterMetricFamily(
        "pyjk_tls_handshakes_by_protocol", "handshakes per protocol", labels=["protocol"]
    )
    for name, n in view.protocols:
        protocols.add_metric([name], float(n))
    yield protocols
    ciphers = CounterMetricFamily(
        "pyjk_tls_handshakes_by_cipher", "handshakes per cipher", labels=["cipher"]
    )
    for name, n in view.ciphers:
        ciphers.add_metric([name], float(n))
    yield ciphers
    yield CounterMetricFamily(
        "pyjk_tls_sni_default",
        "server names without a certificate served the default one",
        view.sni_default,
    )
    expiry = GaugeMetricFamily(
        "pyjk_tls_certificate_expiry_timestamp_seconds",
        "when each certificate expires (Unix time)",
        labels=["file", "names", "default"],
    )
    for c in view.certificates:
        expiry.add_metric(
            [c.file, ",".join(c.names), "true" if c.default else "false"], c.not_after.timestamp()
        )
    yield expiry


# --- the status page --------------------------------------------------------------------------


def _counts(pairs: tuple[tuple[str, int], ...]) -> str:
    return ", ".join(f"{h(k)}: {n}" for k, n in pairs) or "-"


def tls_html(view: TlsView | None, now: datetime | None = None) -> str:
    if view is None:
        return ""
    now = now or datetime.now(UTC)
    rows = "".join(
        f"<tr><td>{h(c.file)}{' (default)' if c.default else ''}</td>"
        f"<td>{h(', '.join(c.names))}</td><td>{c.not_after:%Y-%m-%d %H:%M} UTC</td>"
        f"<td>{(c.not_after - now).days}</td></tr>"
        for c in view.certificates
    )
    client = view.client_verify or "off"
    return (
        '<h2 id="tls">TLS</h2>'
        f"<p>Listeners: {h(', '.join(view.listeners))}; unknown server names: "
        f"{h(view.unknown_sni)}; client certificates: {h(client)}</p>"
        '<table class="tls"><tr><th>Handshakes</th><th>Failures by reason</th>'
        "<th>Protocols</th><th>Ciphers</th><th>Default for unknown names</th>"
        "<th>Reloads (rejected)</th></tr>"
        f"<tr><td>{view.handshakes}</td><td>{_counts(view.failures)}</td>"
        f"<td>{_counts(view.protocols)}</td><td>{_counts(view.ciphers)}</td>"
        f"<td>{view.sni_default}</td><td>{view.reloads} ({view.reload_failures})</td></tr>"
        "</table>"
        '<table class="tls-certs"><tr><th>Certificate</th><th>Names</th><th>Expires</th>'
        f"<th>Days left</th></tr>{rows}</table>"
    )
