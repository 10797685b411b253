"""The largest lbfactor (mod_jk has none), read by both rooms that check one: the balancer's
configuration and status page (balancer/config/model.py) and the workers' heartbeat codec
(replication/codec.py), which must not import the balancer. A weight ratio of 1:100000 is
finer than any real cluster needs, and the bound keeps the multipliers
(balancer.lb.member.lb_multipliers) small."""

from __future__ import annotations

MAX_LBFACTOR = 100_000
