"""Reading and checking: uriworkermap text (plus ``worker.NAME.mount``) → ``UriMap`` (mod_jk §4.1).

Kept from mod_jk: the line format ``pattern=worker[;ext=val...]``, the ``-`` (disabled) and
``!`` (exclusion) prefixes in that order, ``X|Y`` as the two rules ``X`` and ``XY``, and "the
last of a repeated key wins". Better than mod_jk, each an error naming file:line instead of a
log line and a skipped rule or a 500 at request time: a pattern not starting with ``/``, a rule
naming an unknown worker, an unknown extension (with the nearest known name), a bad extension
value, and an activation extension naming a member the lb does not have or used on a worker
that is not an lb. Pure apart from ``load_mounts``, which reads the file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from balancer.config.directives import suggest
from balancer.config.errors import Problem
from balancer.config.findings import Findings, in_file_order
from balancer.config.model import Location, RuleExtensions, WorkersConfig
from balancer.config.properties import read_properties
from balancer.config.reader import read_config_file
from balancer.mounts.extensions import EXTENSIONS, Scope, parse_extensions
from balancer.mounts.matching import DEFAULT_CACHE_SIZE, MountRule, RuleSource, UriMap

_NO_EXTENSIONS = RuleExtensions()


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
    report = Findings(file)
    props = read_properties(text, file, environ=environ or {})
    report.take(props)  # a line with a problem (e.g. an undefined $(name)) makes no rule
    last = {entry.key: entry for entry in props.entries}  # a repeated key: the last one wins
    rules: list[MountRule] = []
    for entry in props.entries:
        if last[entry.key] is entry and (entry.file, entry.line) not in report.muted:
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
    report.raise_if_errors()
    return UriMap(rules, cache_size=cache_size), in_file_order(report.warnings)


def load_mounts(
    path: str | os.PathLike[str],
    workers: WorkersConfig,
    *,
    environ: Mapping[str, str] | None = None,
) -> tuple[UriMap, list[Problem]]:
    """Read the uriworkermap file at ``path`` and parse it; ``environ`` defaults to os.environ."""
    text = read_config_file(path, "the URI map")
    env = os.environ if environ is None else environ
    return parse_mounts(text, str(path), workers, environ=env)


def _parse_rule(
    key: str,
    value: str,
    loc: Location,
    source: RuleSource,
    order: int,
    workers: WorkersConfig,
    report: Findings,
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
    if extensions != _NO_EXTENSIONS:
        _check_extensions(extensions, worker, exclusion, workers, loc, key, report)
    return [
        MountRule(p, worker, enabled, exclusion, extensions, source, loc, order + i)
        for i, p in enumerate(patterns)
    ]


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
    report: Findings,
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
        near = suggest(worker, known)
        hint = f"; did you mean {near!r}?" if near else f" (known: {', '.join(known)})"
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
    report: Findings,
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
    # What the table says has no effect on this target: a warning (the rule still loads).
    for spec in EXTENSIONS.values():
        given = getattr(ext, spec.field) != getattr(_NO_EXTENSIONS, spec.field)
        if not given or spec.field == "activation":  # activation: an error above
            continue
        if spec.scope is Scope.LB and lb is None:
            report.warn(loc, key, f"{spec.name} has no effect: {worker!r} is not an lb")
        elif spec.scope is Scope.NOT_STATUS and worker in workers.statuses:
            report.warn(loc, key, f"{spec.name} has no effect on status worker {worker!r}")


def _drop_shadowed(rules: list[MountRule], report: Findings) -> list[MountRule]:
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


def _warn_idle_exclusions(rules: list[MountRule], report: Findings) -> None:
    mapped = {r.worker for r in rules if r.enabled and not r.exclusion}
    for rule in rules:
        if rule.enabled and rule.exclusion and rule.worker != "*" and rule.worker not in mapped:
            report.warn(
                rule.location,
                rule.pattern,
                f"exclusion for {rule.worker!r} has no effect: no rule maps to that worker",
            )
