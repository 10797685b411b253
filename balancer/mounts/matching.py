"""Matching: the rules in priority order and the decision for a request path (mod_jk §4.1-4.4).

``UriMap.match(raw_path)`` answers ``Mapped``, ``Unmapped`` (the balancer answers 404) or
``Rejected`` (a bad path, from ``balancer.uri``). Pure. Kept from mod_jk: ``*``/``?`` wildchar
rules matched against the whole path and exact rules otherwise, the priority order (§4.3), and
exclusions that unmap instead of falling back to a lower rule (§4.4).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from functools import lru_cache

from balancer.config.model import Location, RuleExtensions
from balancer.uri import Rejected, normalize

# How many distinct raw paths UriMap.match remembers (a bounded LRU; see UriMap).
DEFAULT_CACHE_SIZE = 4096
# Longer raw paths are matched but not cached, so the cache's memory stays small.
_CACHEABLE_LENGTH = 256
# Larger than any rule's rank: "no hit to beat".
_NO_RANK = 1 << 62


class RuleSource(Enum):
    """Where a rule came from; ``value`` is its rank in the priority order (lower wins)."""

    URIWORKERMAP = 0
    WORKERS_MOUNT = 1  # worker.NAME.mount in workers.properties: lowest priority (§4.3)


@dataclass(frozen=True, slots=True)
class MountRule:
    """One rule. ``pattern`` is without the ``-``/``!`` prefixes and already split at ``|``."""

    pattern: str
    worker: str  # a worker name, or "*" in an exclusion
    enabled: bool = True
    exclusion: bool = False
    extensions: RuleExtensions = field(default_factory=RuleExtensions)
    source: RuleSource = RuleSource.URIWORKERMAP
    location: Location | None = None
    order: int = 0  # load order, the last tie-breaker

    @property
    def wildcard(self) -> bool:
        return "*" in self.pattern or "?" in self.pattern

    def priority(self) -> tuple[int, int, int, int]:
        """Sort key, smallest first: most ``/``, then longest, then source, then load order."""
        return (-self.pattern.count("/"), -len(self.pattern), self.source.value, self.order)

    def __str__(self) -> str:
        prefix = ("" if self.enabled else "-") + ("!" if self.exclusion else "")
        return f"{prefix}{self.pattern}={self.worker}"


@dataclass(frozen=True, slots=True)
class Mapped:
    """Send the request to ``worker``; ``rule.extensions`` carries the rule's overrides."""

    worker: str
    rule: MountRule
    path: str  # the normalized path that matched (forward the raw one, not this)


@dataclass(frozen=True, slots=True)
class Unmapped:
    """No rule maps the path (404), or ``excluded_by`` unmapped it (no fallback, §4.4)."""

    path: str
    excluded_by: MountRule | None = None


MapDecision = Mapped | Unmapped | Rejected


class UriMap:
    """The rules in priority order, indexed for matching.

    Exact rules are a dict. Wildchar rules are grouped by the first path segment of their
    literal prefix (``/app/*`` under ``/app/``; ``/*.jsp`` and ``/app*`` in the group every path
    tries), so a path only tries the rules that could match it. Each group has one joined regex
    that says whether any of its rules matches (a single C call, and the usual answer for
    unmapped paths); only then are its rules tried in rank order. The exact hit and the first
    wildchar hit are compared by rank, so the two kinds keep their relative priority.
    Exclusions are checked the same way, one group per mapped worker. Decisions for short
    paths are kept in two bounded LRUs, by raw and by normalized path: the same few paths make
    up most traffic, and raw paths that differ only in ``;jsessionid=...`` share a decision.
    """

    def __init__(self, rules: Iterable[MountRule], *, cache_size: int = DEFAULT_CACHE_SIZE):
        self.rules: tuple[MountRule, ...] = tuple(sorted(rules, key=MountRule.priority))
        active = [r for r in self.rules if r.enabled and not r.exclusion]
        self._exact: dict[str, tuple[int, MountRule]] = {}
        everywhere: list[tuple[int, MountRule]] = []
        grouped: dict[str, list[tuple[int, MountRule]]] = {}
        for rank, rule in enumerate(active):
            if not rule.wildcard:
                self._exact.setdefault(rule.pattern, (rank, rule))
                continue
            key = _first_segment(re.split(r"[*?]", rule.pattern, maxsplit=1)[0])
            (everywhere if key is None else grouped.setdefault(key, [])).append((rank, rule))
        compiled: dict[str, re.Pattern[str]] = {}
        self._wild_any = _RuleGroup(everywhere, compiled) if everywhere else None
        self._wild: dict[str, _RuleGroup] = {
            key: _RuleGroup(sorted(group + everywhere, key=lambda x: x[0]), compiled)
            for key, group in grouped.items()
        }
        exclusions = [r for r in self.rules if r.enabled and r.exclusion]
        self._exclusions: dict[str, _RuleGroup] = {}
        for worker in {r.worker for r in active}:
            mine = list(enumerate(r for r in exclusions if r.worker in (worker, "*")))
            if mine:
                self._exclusions[worker] = _RuleGroup(mine, compiled)
        # Two caches: by raw path (the common case: the same URLs again and again), then by
        # normalized path (raw paths that differ only in ";jsessionid=..." or escapes).
        self._by_raw = lru_cache(maxsize=cache_size)(self._decide) if cache_size else self._decide
        self._by_path = lru_cache(maxsize=cache_size)(self._match) if cache_size else self._match

    def match(self, raw_path: str) -> MapDecision:
        """Decide for the raw request path (no query; ``;params`` and escapes still in)."""
        if len(raw_path) <= _CACHEABLE_LENGTH:
            return self._by_raw(raw_path)
        return self._decide(raw_path)

    def match_path(self, path: str) -> Mapped | Unmapped:
        """Decide for an already normalized path (``balancer.uri.normalize_path``)."""
        if len(path) <= _CACHEABLE_LENGTH:
            return self._by_path(path)
        return self._match(path)

    def rules_for(self, worker: str) -> tuple[MountRule, ...]:
        """The rules that concern ``worker``, in priority order: those naming it and the
        exclusions for every worker (``*``), as mod_jk's status page lists a worker's maps."""
        return tuple(r for r in self.rules if r.worker in (worker, "*"))

    def _decide(self, raw_path: str) -> MapDecision:
        path = normalize(raw_path)
        return self.match_path(path) if type(path) is str else path  # type: ignore[return-value]

    def _match(self, path: str) -> Mapped | Unmapped:
        best = self._exact.get(path)
        end = path.find("/", 1)
        group = self._wild_any if end < 0 else self._wild.get(path[: end + 1], self._wild_any)
        if group is not None:
            hit = group.first(path, _NO_RANK if best is None else best[0])
            if hit is not None:
                best = hit
        if best is None:
            return Unmapped(path)
        rule = best[1]
        exclusions = self._exclusions.get(rule.worker)
        if exclusions is not None:
            excluded = exclusions.first(path, _NO_RANK)
            if excluded is not None:
                return Unmapped(path, excluded_by=excluded[1])
        return Mapped(rule.worker, rule, path)


class _RuleGroup:
    """Rules tried in rank order behind one joined regex that says whether any can match.

    The joined regex has no capturing groups on purpose: with one group per alternative,
    ``re`` loses its literal-prefix shortcuts and a 2000-rule miss goes from ~0.2 µs to ~3 ms.
    """

    __slots__ = ("any", "ranked")

    def __init__(
        self, ranked: list[tuple[int, MountRule]], compiled: dict[str, re.Pattern[str]]
    ) -> None:
        for _, rule in ranked:
            if rule.pattern not in compiled:
                compiled[rule.pattern] = re.compile(_wildchar_regex(rule.pattern), re.DOTALL)
        self.ranked = tuple((rank, compiled[r.pattern], r) for rank, r in ranked)
        joined = "|".join(f"(?:{_wildchar_regex(r.pattern)})" for _, r in ranked)
        self.any = re.compile(joined, re.DOTALL)

    def first(self, path: str, below: int) -> tuple[int, MountRule] | None:
        """The best-ranked rule matching ``path`` whose rank is under ``below``, if any."""
        if len(self.ranked) > 1 and self.any.fullmatch(path) is None:
            return None  # (with one rule, the rule's own regex is the same test)
        for rank, regex, rule in self.ranked:
            if rank >= below:
                return None
            if regex.fullmatch(path) is not None:
                return rank, rule
        return None


def _first_segment(path: str) -> str | None:
    """``/app/x`` → ``/app/``; None when there is no complete first segment (``/app``)."""
    end = path.find("/", 1)
    return path[: end + 1] if end > 0 else None


def _wildchar_regex(pattern: str) -> str:
    # fnmatch-like, but "*" crosses "/" (mod_jk's wildchar match) and nothing else is special.
    # Exact patterns go through here too (exclusions): they simply have no wildchar.
    return "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
