"""Failover mode (`pyjk-worker --failover GROUP`): of the nodes in GROUP only the master serves.

Interlok's dormant instances, on pyjk's singleton election: the group is one sticky singleton,
`failover.GROUP`. Its owner is the master; starting it releases the "dormant" readiness hold,
stopping it (the master lost its quorum, or stops) takes the hold again. The other members of
the group are dormant: they listen, so `/-/ready` can say `503 {"waiting_for": ["dormant"]}`
and the balancer's health probe keeps them out, and they answer every application request 503
with `Retry-After: 1` (the session middleware's Hold, worker/peers.py) — but they are full
cluster members, so they hold a replica of every session. When the master dies (or stops), one
of them is promoted after the drop time (at once on a graceful stop) and serves the master's
sessions, taking them over as any node does after a failover. Sticky: a node joining the group
later does not take the master role from a live master.
"""

from __future__ import annotations

import logging

from .names import NAME_RE
from .readiness import Readiness
from .singletons import SingletonContext, SingletonSpec

log = logging.getLogger("pyjk.worker")

DORMANT = "dormant"
PREFIX = "failover."


def check_group(group: str) -> str:
    if not NAME_RE.fullmatch(PREFIX + group):
        raise ValueError(f"failover group {group!r}: expected letters, digits, '_', '.', '-'")
    return group


def failover_spec(group: str, readiness: Readiness) -> SingletonSpec:
    """The singleton whose owner is GROUP's master; the node starts dormant."""
    readiness.hold(DORMANT)

    async def promote(ctx: SingletonContext) -> None:
        readiness.release(DORMANT)
        log.info("failover group=%s master=%s epoch=%d state=ACTIVE", group, ctx.route, ctx.epoch)

    async def demote(ctx: SingletonContext) -> None:
        readiness.hold(DORMANT)
        log.info("failover group=%s master=%s epoch=%d state=DORMANT", group, ctx.route, ctx.epoch)

    return SingletonSpec(PREFIX + check_group(group), promote, demote, sticky=True)
