"""What the balancer's and the workers' ``/metrics`` share: prometheus-client's own families.

Both render per answer from a private registry (so tests and several apps in one process never
collide in the global one); a private registry has no ``process_*``/``python_*`` families
unless they are added, which ``standard_collectors`` does.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.registry import Collector, CollectorRegistry

__all__ = ["CONTENT_TYPE", "render", "standard_collectors"]

CONTENT_TYPE = CONTENT_TYPE_LATEST


def standard_collectors() -> tuple[Collector, ...]:
    """process_*, python_info and python_gc_*, kept out of the global registry (GCCollector
    insists on registering somewhere, so it gets a registry of its own)."""
    return (
        ProcessCollector(registry=None),
        PlatformCollector(registry=None),
        GCCollector(registry=CollectorRegistry(auto_describe=False)),
    )


def render(collectors: Iterable[Collector]) -> bytes:
    """The text exposition of ``collectors``, in order."""
    registry = CollectorRegistry(auto_describe=False)
    for collector in collectors:
        registry.register(collector)
    return generate_latest(registry)
