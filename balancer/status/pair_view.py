"""The balancer pair on the status page and in ``/metrics``: ``Balancer: active|standby``, the
peer balancer (its address, its role, when it was last heard), takeovers and two-actives
episodes, step-downs. Only a balancer started with ``--cluster FILE`` has one (balancer/standby.py).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from balancer.pair import ACTIVE, STANDBY, PairView, peers_text
from balancer.status.escape import h
from balancer.status.model import Field


def pair_fields(view: PairView | None) -> list[tuple[str, list[Field]]]:
    """One "Balancer" line, then one "Peer" line per balancer heard, as txt-style fields."""
    if view is None:
        return []
    out = [
        (
            "Balancer",
            [
                Field("role", view.role),
                Field("takeovers", view.takeovers),
                Field("two_actives", view.two_actives),
                Field("other_active", view.other_active),
            ],
        )
    ]
    for p in view.peers:
        out.append(
            (
                "Peer",
                [
                    Field("role", p.role),
                    Field("host", p.host),
                    Field("listen", ",".join(p.listen)),
                    Field("heard_ms", round(p.heard_ago * 1000)),
                    Field("id", p.id),
                ],
            )
        )
    return out


def pair_html(view: PairView | None) -> str:
    if view is None:
        return ""
    peers = "; ".join(peers_text(view)) or "none heard"
    warn = " <b>Another active balancer is heard: both serve.</b>" if view.other_active else ""
    return (
        f'<p id="pair">Balancer: <b>{h(view.role)}</b> &middot; peer: {h(peers)} &middot; '
        f"takeovers: {view.takeovers}{warn}</p>"
    )


def pair_metrics(view: PairView | None) -> Iterator[Metric]:
    if view is None:
        return
    role = GaugeMetricFamily(
        "pyjk_balancer_active", "1 when this balancer serves (active), 0 standby", labels=[]
    )
    role.add_metric([], 1.0 if view.role == ACTIVE else 0.0)
    yield role
    yield CounterMetricFamily(
        "pyjk_balancer_takeovers", "times this standby took over and served", view.takeovers
    )
    yield CounterMetricFamily(
        "pyjk_balancer_two_actives",
        "episodes of another active balancer heard while this one was active",
        view.two_actives,
    )
    yield CounterMetricFamily(
        "pyjk_balancer_step_downs",
        "times this balancer, the later started of two actives, stopped serving as a standby",
        view.step_downs,
    )
    yield GaugeMetricFamily(
        "pyjk_balancer_other_active", "1 while another active balancer is heard", view.other_active
    )
    peers = GaugeMetricFamily(
        "pyjk_balancer_peer_heard_seconds",
        "seconds since the peer balancer's last heartbeat",
        labels=["role", "host"],
    )
    for p in view.peers:
        peers.add_metric([p.role, p.host], p.heard_ago)
    yield peers
    # both roles always: "no standby" is a 0 sample an alert can see, and it stays 0 after
    # the long-gone peer's heard_seconds series went away (10 x drop_time)
    present = GaugeMetricFamily(
        "pyjk_balancer_peers",
        "peer balancers of this role heard within drop_time",
        labels=["role"],
    )
    for peer_role in (ACTIVE, STANDBY):
        present.add_metric([peer_role], view.present(peer_role))
    yield present
