"""One loaded configuration (``Runtime``) and how the text becomes one (``RuntimeLoader``).

A ``Runtime`` is what the router reads on every request: the WorkersConfig, the URI map and an
lb engine per balancing worker (a plain member in worker.list gets a one-member engine, so
every forward goes through the same attempt loop). ``RuntimeLoader`` parses the text of
workers.properties and the URI map — from the files, or with ``--processes N`` the text the
supervisor published — and builds the engines, carrying over from the previous Runtime every
member whose configuration did not change (``LbEngine.from_previous``). The running balancer
(server.py) swaps Runtimes; this module decides nothing about when.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from balancer.config.model import LbConfig, MemberConfig, WorkersConfig
from balancer.config.reader import parse_workers, read_config_file
from balancer.dataplane import Limits
from balancer.lb.engine import LbEngine
from balancer.lb.state import LOCAL, LbState
from balancer.mounts import UriMap, parse_mounts

log = logging.getLogger("pyjk.balancer")


class StartupError(Exception):
    """The configuration loads but cannot be served (http and ajp13 members both can)."""


@dataclass(frozen=True, slots=True)
class Runtime:
    """One loaded configuration: what the router reads on every request."""

    workers: WorkersConfig
    uri_map: UriMap
    engines: Mapping[str, LbEngine]  # lb name, or listed member name → engine
    mounts_mtime: float | None


def single_member_lb(member: MemberConfig) -> LbConfig:
    """A one-member lb for a member mapped directly: its own retries, no stickiness, one round.

    mod_jk services a directly mapped ajp13 worker with the member's own retries only; one lb
    round over one member does the same, and keeps one code path for every forward.
    """
    return LbConfig(
        name=member.name, balance_workers=(member.name,), sticky_session=False, retries=1
    )


def build_engines(
    workers: WorkersConfig,
    previous: Mapping[str, LbEngine],
    now: float,
    dynamic: Mapping[str, Sequence[MemberConfig]] | None = None,
    state: LbState = LOCAL,
) -> dict[str, LbEngine]:
    """An engine per listed lb or member; an lb's members are its static ones followed by the
    ``dynamic`` ones its cluster brought (balancer.cluster_members)."""
    engines: dict[str, LbEngine] = {}
    for name in workers.worker_list:
        if name in workers.lbs:
            lb = workers.lbs[name]
            members = workers.lb_members(lb) + tuple((dynamic or {}).get(name, ()))
        elif name in workers.members:
            lb = single_member_lb(workers.members[name])
            members = (workers.members[name],)
        else:
            continue  # a status worker
        old = previous.get(name)
        if old is None:
            engines[name] = LbEngine(lb, members, workers.maintain, now, state)
        else:
            engines[name] = LbEngine.from_previous(old, lb, members, workers.maintain, now, state)
    return engines


def limits_for(workers: WorkersConfig) -> Limits:
    b = workers.balancer
    return Limits(
        max_head_size=b.max_head_size,
        max_headers=b.max_headers,
        header_timeout=float(b.header_timeout),
        keepalive_timeout=float(b.keepalive_timeout),
        body_timeout=float(b.body_timeout),
        max_body_size=b.max_body_size,
        max_connections=b.max_connections,
        max_connections_per_ip=b.max_connections_per_ip,
        underscores_in_headers=b.underscores_in_headers,
    )


def file_mtime(path: Path | None) -> float | None:
    if path is None:
        return None
    try:
        return path.stat().st_mtime
    except OSError:
        return None


class RuntimeLoader:
    """Text → Runtime. ``dynamic_members``: each dynamic lb's members now; ``texts``: where
    the text comes from (None: the files)."""

    def __init__(
        self,
        workers_path: Path,
        mounts_path: Path | None,
        dynamic_members: Callable[[WorkersConfig], Mapping[str, Sequence[MemberConfig]]],
        state: LbState = LOCAL,
        texts: Callable[[], tuple[str, str]] | None = None,
    ) -> None:
        self.workers_path, self.mounts_path = workers_path, mounts_path
        self.dynamic_members = dynamic_members
        self.state = state  # where the engines keep their numbers (shared with --processes)
        self.texts = texts or self.read_files
        self.loaded_texts = ("", "")  # of the last load that succeeded (a supervisor publishes it)

    def read_files(self) -> tuple[str, str]:
        """The text of workers.properties and of the URI map ("" without one)."""
        workers = read_config_file(self.workers_path, "the worker definitions")
        if self.mounts_path is None:
            return workers, ""
        return workers, read_config_file(self.mounts_path, "the URI map")

    def load(self, previous: Runtime | None) -> Runtime:
        """A new Runtime; raises ConfigError or StartupError."""
        mtime = file_mtime(self.mounts_path)
        texts = self.texts()
        workers, warnings = parse_workers(texts[0], str(self.workers_path), os.environ)
        for w in warnings:
            log.warning("config warning: %s", w)
        if self.mounts_path is not None:
            uri_map, mount_warnings = parse_mounts(
                texts[1], str(self.mounts_path), workers, environ=os.environ
            )
        else:  # the worker.NAME.mount rules alone
            uri_map, mount_warnings = parse_mounts("", "<no uriworkermap>", workers)
        for w in mount_warnings:
            log.warning("config warning: %s", w)
        dynamic = self.dynamic_members(workers)
        engines = build_engines(
            workers, previous.engines if previous else {}, time.monotonic(), dynamic, self.state
        )
        self.loaded_texts = texts
        return Runtime(workers, uri_map, engines, mtime)
