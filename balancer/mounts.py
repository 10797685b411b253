"""The URI map: which worker a request path goes to (mod_jk §4, uriworkermap.properties).

``parse_mounts`` turns the file's text plus the ``worker.NAME.mount`` rules of workers.properties
into a ``UriMap``; ``UriMap.match(raw_path)`` answers ``Mapped``, ``Unmapped`` (the balancer
answers 404) or ``Rejected`` (a bad path, from ``balancer.uri``). Pure apart from ``load_mounts``.

Kept from mod_jk: the line format ``pattern=worker[;ext=val...]``, the ``-`` (disabled) and
``!`` (exclusion) prefixes in that order, ``X|Y`` as the two rules ``X`` and ``XY``, ``*``/``?``
wildchar rules matched against the whole path and exact rules otherwise, the priority order
(§4.3), and exclusions that unmap instead of falling back to a lower rule (§4.4).

Better than mod_jk, each an error naming file:line instead of a log line and a skipped rule or
a 500 at request time: a pattern not starting with ``/``, a rule naming an unknown worker, an
unknown extension (with the nearest known name), a bad extension value, and an activation
extension naming a member the lb does not have or used on a worker that is not an lb.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from functools import lru_cache
from pathlib import Path

from balancer.config.errors import ConfigError, Problem
from balancer.config.model import Activation, Location, RuleExtensions, WorkersConfig
from balancer.config.properties import read_properties
from balancer.config.values import parse_bool, split_list
from balancer.uri import Rejected, normalize

__all__ = [
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
        """The rules naming ``worker`` (the status page's map list), in priority order."""
        return tuple(r for r in self.rules if r.worker == worker)

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


# ---------------------------------------------------------------------------------------------
# Reading rules


class _Report:
    def __init__(self) -> None:
        self.errors: list[Problem] = []
        self.warnings: list[Problem] = []

    def error(self, loc: Location | None, directive: str | None, message: str) -> None:
        self.errors.append(_problem(loc, directive, message))

    def warn(self, loc: Location | None, directive: str | None, message: str) -> None:
        self.warnings.append(_problem(loc, directive, message))


def _problem(loc: Location | None, directive: str | None, message: str) -> Problem:
    return Problem(loc.file if loc else "", loc.line if loc else None, directive, message)


def parse_mounts(
    text: str,
    file: str,
    workers: WorkersConfig,
    *,
    environ: Mapping[str, str] | None = None,
    cache_size: int = DEFAULT_CACHE_SIZE,
) -> tuple[UriMap, list[Problem]]:
    """Build the URI map from uriworkermap text plus ``workers.mounts``.

    ``environ`` feeds ``$(name)`` substitution (nothing is read from the process here). Returns
    the map and the warnings; raises ``ConfigError`` with every error found. Pass ``text=""``
    when there is no uriworkermap file: the ``mount`` rules alone make the map.
    """
    report = _Report()
    props = read_properties(text, file, environ=environ or {})
    report.errors.extend(props.problems)
    report.warnings.extend(props.warnings)
    last = {entry.key: entry for entry in props.entries}  # a repeated key: the last one wins
    broken = {p.line for p in props.problems}  # already reported (e.g. an undefined $(name))
    rules: list[MountRule] = []
    for entry in props.entries:
        if last[entry.key] is entry and entry.line not in broken:
            loc = Location(entry.file, entry.line)
            rules += _parse_rule(
                entry.key, entry.value, loc, RuleSource.URIWORKERMAP, len(rules), workers, report
            )
    for pattern, worker, loc in workers.mounts:
        rules += _parse_rule(
            pattern, worker, loc, RuleSource.WORKERS_MOUNT, len(rules), workers, report
        )
    rules = _drop_shadowed(rules, report)
    _warn_idle_exclusions(rules, report)
    if report.errors:
        raise ConfigError(report.errors)
    return UriMap(rules, cache_size=cache_size), report.warnings


def load_mounts(
    path: str | os.PathLike[str],
    workers: WorkersConfig,
    *,
    environ: Mapping[str, str] | None = None,
) -> tuple[UriMap, list[Problem]]:
    """Read the uriworkermap file at ``path`` and parse it; ``environ`` defaults to os.environ."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError([Problem(file, None, None, f"cannot read the URI map: {why}")]) from exc
    return parse_mounts(text, file, workers, environ=os.environ if environ is None else environ)


def _parse_rule(
    key: str,
    value: str,
    loc: Location,
    source: RuleSource,
    order: int,
    workers: WorkersConfig,
    report: _Report,
) -> list[MountRule]:
    enabled, exclusion, patterns, why = _split_key(key)
    if why:
        report.error(loc, key, why)
        return []
    worker, _, ext_text = value.partition(";")
    worker = worker.strip()
    if not worker:
        report.error(loc, key, "no worker named before ';' (expected pattern=worker[;ext=val])")
        return []
    target_ok = _check_worker(worker, enabled, exclusion, workers, loc, key, report)
    extensions = parse_extensions(ext_text, loc, key, report.error)
    if not target_ok or extensions is None:
        return []
    if extensions != RuleExtensions():
        _check_extensions(extensions, worker, exclusion, workers, loc, key, report)
    return [
        MountRule(p, worker, enabled, exclusion, extensions, source, loc, order + i)
        for i, p in enumerate(patterns)
    ]


# ---------------------------------------------------------------------------------------------
# Rule extensions (§4.5): one table, from which parsing, errors and the docs follow.

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_INT = re.compile(r"-?[0-9]+")


def _int(value: str) -> int:
    if not _INT.fullmatch(value):
        raise ValueError(f"expected a whole number, found {value!r}")
    return int(value)


def _reply_timeout(value: str) -> int | None:
    number = _int(value)
    if number == -1:
        return None  # mod_jk: -1 means "use the worker's reply_timeout"
    if number < 0:
        raise ValueError(f"expected milliseconds >= 0 (or -1 for the worker's), found {number}")
    return number


def _flag(value: str) -> bool:
    return _int(value) != 0  # mod_jk reads these as integers: non-zero is on


def _members(value: str) -> tuple[str, ...]:
    names = tuple(split_list(value))
    if not names:
        raise ValueError("expected a list of lb member names")
    return names


def _statuses(value: str) -> tuple[int, ...]:
    codes = tuple(_int(c) for c in split_list(value))
    for code in codes:
        if not 100 <= abs(code) <= 599:
            raise ValueError(f"expected HTTP status codes (100-599, '-' for soft), found {code}")
    if not codes:
        raise ValueError("expected a list of HTTP status codes")
    return codes


def _use_server_errors(value: str) -> int | None:
    number = _int(value)
    if number == 0:
        return None
    if not 100 <= number <= 599:
        raise ValueError(f"expected a status code 100-599 (0 = off), found {number}")
    return number


def _cookie_name(value: str) -> str:
    if not _TOKEN.fullmatch(value):
        raise ValueError(f"expected a cookie name (an HTTP token), found {value!r}")
    return value


def _session_path(value: str) -> str:
    # Stored with its leading ";" like the lb's session_path, so the session search looks for
    # ";name=" exactly; mod_jk would also accept "name=" anywhere in the URI.
    return ";" + _cookie_name(value.removeprefix(";"))


def _cookie_path(value: str) -> str:
    if value and not value.startswith("/"):
        raise ValueError(f"expected a path starting with '/' (or empty for none), found {value!r}")
    if any(ord(c) < 0x20 or c in ",\x7f" for c in value):
        raise ValueError("a cookie path cannot hold control characters or ','")
    return value


# name -> (RuleExtensions field, value parser). active/disabled/stopped fill one mapping.
EXTENSIONS: dict[str, tuple[str, Callable[[str], object]]] = {
    "reply_timeout": ("reply_timeout", _reply_timeout),
    "sticky_ignore": ("sticky_ignore", _flag),
    "stateless": ("stateless", _flag),
    "active": ("activation", _members),
    "disabled": ("activation", _members),
    "stopped": ("activation", _members),
    "fail_on_status": ("fail_on_status", _statuses),
    "use_server_errors": ("use_server_errors", _use_server_errors),
    "session_cookie": ("session_cookie", _cookie_name),
    "session_path": ("session_path", _session_path),
    "set_session_cookie": ("set_session_cookie", parse_bool),
    "session_cookie_path": ("session_cookie_path", _cookie_path),
}
_ACTIVATIONS = {
    "active": Activation.ACTIVE,
    "disabled": Activation.DISABLED,
    "stopped": Activation.STOPPED,
}
_MAY_BE_EMPTY = frozenset({"session_cookie_path"})


def parse_extensions(
    text: str, loc: Location, key: str, error: Callable[[Location, str, str], None]
) -> RuleExtensions | None:
    """``ext=val;ext=val`` (the part of a rule after the worker) → RuleExtensions.

    Calls ``error(loc, key, message)`` for each problem and then returns None.
    """
    tokens = text.split(";")
    values: dict[str, object] = {}
    activation: dict[str, Activation] = {}
    seen: set[str] = set()
    failed = False
    i = 0
    while i < len(tokens):
        token = tokens[i].strip()
        i += 1
        if not token:
            continue
        name, eq, value = (part.strip() for part in token.partition("="))
        if name == "session_path" and eq and not value and i < len(tokens):
            # mod_jk quirk kept: "session_path=;jsessionid" takes the next token as the value.
            value = tokens[i].strip()
            i += 1
        problem = ""
        if name not in EXTENSIONS:
            near = difflib.get_close_matches(name, EXTENSIONS, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else f" (known: {', '.join(EXTENSIONS)})"
            problem = f"unknown rule extension {name!r}{hint}"
        elif not eq or (not value and name not in _MAY_BE_EMPTY):
            problem = f"rule extension {name} needs a value ({name}=...)"
        elif name in seen:
            problem = f"rule extension {name} is given twice"
        if problem:
            error(loc, key, problem)
            failed = True
            continue
        seen.add(name)
        field_name, parse = EXTENSIONS[name]
        try:
            parsed = parse(value)
        except ValueError as exc:
            error(loc, key, f"{name}: {exc}")
            failed = True
            continue
        if field_name != "activation":
            values[field_name] = parsed
            continue
        for member in parsed:  # type: ignore[attr-defined]
            if member in activation and activation[member] is not _ACTIVATIONS[name]:
                error(loc, key, f"member {member!r} is given two activations")
                failed = True
            activation[member] = _ACTIVATIONS[name]
    if failed:
        return None
    return RuleExtensions(activation=activation, **values)  # type: ignore[arg-type]


def _split_key(key: str) -> tuple[bool, bool, list[str], str]:
    """Prefixes and ``|`` of a rule's key: (enabled, exclusion, patterns, error or "")."""
    rest = key
    enabled = not rest.startswith("-")
    rest = rest if enabled else rest[1:]
    exclusion = rest.startswith("!")
    rest = rest[1:] if exclusion else rest
    if not rest.startswith("/"):
        hint = ""
        if exclusion and rest.startswith("-"):
            hint = " (write '-!' to disable an exclusion; '!-' is not a prefix)"
        elif rest[:1] in ("*", "?"):
            hint = f" (write '/{rest}' to match under the root)"
        return enabled, exclusion, [], f"a pattern must start with '/' after '-' and '!'{hint}"
    if "|" not in rest:
        return enabled, exclusion, [rest], ""
    head, _, tail = rest.partition("|")
    if not tail or "|" in tail:
        return enabled, exclusion, [], "'X|Y' needs one '|' and a non-empty Y (rules X and XY)"
    return enabled, exclusion, [head, head + tail], ""


def _check_worker(
    worker: str,
    enabled: bool,
    exclusion: bool,
    workers: WorkersConfig,
    loc: Location,
    key: str,
    report: _Report,
) -> bool:
    """Whether ``worker`` can be the rule's target; a disabled rule only warns."""
    where = workers.file or "workers.properties"
    if worker == "*":
        if exclusion:
            return True
        report.error(loc, key, "'*' (every worker) is only allowed in an exclusion ('!') rule")
        return False
    if workers.worker(worker) is None:
        known = [*workers.lbs, *workers.members, *workers.statuses]
        near = difflib.get_close_matches(worker, known, n=1)
        hint = f"; did you mean {near[0]!r}?" if near else f" (known: {', '.join(known)})"
        message = f"no worker named {worker!r} in {where}{hint}"
        if enabled:
            report.error(loc, key, message)
            return False
        report.warn(loc, key, message + " (the rule is disabled)")
        return True
    if not exclusion and worker in workers.members and worker not in workers.worker_list:
        report.warn(loc, key, f"{worker!r} is not in worker.list; mod_jk could not map to it")
    return True


def _check_extensions(
    ext: RuleExtensions,
    worker: str,
    exclusion: bool,
    workers: WorkersConfig,
    loc: Location,
    key: str,
    report: _Report,
) -> None:
    if exclusion:
        report.warn(loc, key, "extensions on an exclusion ('!') rule have no effect")
        return
    lb = workers.lbs.get(worker)
    if ext.activation:
        if lb is None:
            report.error(
                loc,
                key,
                f"active/disabled/stopped need an lb worker; {worker!r} is not an lb",
            )
        else:
            for member in ext.activation:
                if member not in lb.balance_workers:
                    report.error(
                        loc,
                        key,
                        f"{member!r} is not a member of lb {worker!r} "
                        f"(members: {', '.join(lb.balance_workers)})",
                    )
    lb_only = {
        "sticky_ignore": ext.sticky_ignore,
        "stateless": ext.stateless,
        "session_cookie": ext.session_cookie is not None,
        "session_path": ext.session_path is not None,
        "set_session_cookie": ext.set_session_cookie is not None,
        "session_cookie_path": ext.session_cookie_path is not None,
    }
    if lb is None:
        for name, given in lb_only.items():
            if given:
                report.warn(loc, key, f"{name} has no effect: {worker!r} is not an lb")
    if worker in workers.statuses:
        for name in ("reply_timeout", "fail_on_status"):
            if getattr(ext, name) is not None:
                report.warn(loc, key, f"{name} has no effect on status worker {worker!r}")


def _drop_shadowed(rules: list[MountRule], report: _Report) -> list[MountRule]:
    """Two enabled mappings of one pattern from one source: the later line wins, with a warning.

    mod_jk leaves their order undefined; "last wins" matches its rule for repeated keys.
    """
    seen: dict[tuple[str, RuleSource], MountRule] = {}
    dropped: set[int] = set()
    for rule in rules:
        if not rule.enabled or rule.exclusion:
            continue
        earlier = seen.get((rule.pattern, rule.source))
        if earlier is not None:
            report.warn(
                rule.location,
                rule.pattern,
                f"{rule.pattern} is also mapped at {earlier.location} (to {earlier.worker!r}); "
                "this later rule wins",
            )
            dropped.add(id(earlier))
        seen[(rule.pattern, rule.source)] = rule
    return [r for r in rules if id(r) not in dropped]


def _warn_idle_exclusions(rules: list[MountRule], report: _Report) -> None:
    mapped = {r.worker for r in rules if r.enabled and not r.exclusion}
    for rule in rules:
        if rule.enabled and rule.exclusion and rule.worker != "*" and rule.worker not in mapped:
            report.warn(
                rule.location,
                rule.pattern,
                f"exclusion for {rule.worker!r} has no effect: no rule maps to that worker",
            )
