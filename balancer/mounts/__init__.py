"""The URI map: which worker a request path goes to (mod_jk §4, uriworkermap.properties).

``parse_mounts`` turns the file's text plus the ``worker.NAME.mount`` rules of workers.properties
into a ``UriMap``; ``UriMap.match(raw_path)`` answers ``Mapped``, ``Unmapped`` (the balancer
answers 404) or ``Rejected`` (a bad path, from ``balancer.uri``).

Rooms: ``matching`` (rules, priority, exclusions, the decision; pure), ``reading`` (text →
checked rules, every problem at once; ``load_mounts`` reads the file) and ``extensions`` (the
rule-extension table: parsing, checks and the reference page follow from it).
"""

from balancer.mounts.extensions import EXTENSIONS, parse_extensions
from balancer.mounts.matching import (
    DEFAULT_CACHE_SIZE,
    MapDecision,
    Mapped,
    MountRule,
    RuleSource,
    Unmapped,
    UriMap,
)
from balancer.mounts.reading import load_mounts, parse_mounts
from balancer.uri import Rejected

__all__ = [
    "DEFAULT_CACHE_SIZE",
    "EXTENSIONS",
    "MapDecision",
    "Mapped",
    "MountRule",
    "Rejected",
    "RuleSource",
    "Unmapped",
    "UriMap",
    "load_mounts",
    "parse_extensions",
    "parse_mounts",
]
