"""``worker.A.reference=worker.T``: inheritance between workers (mod_jk reference §1.6).

Every directive of T that A does not set itself is copied to A; what A sets always wins,
wherever it appears in the file. T's own reference is resolved first, so chains work, up to
20 levels. A loop, a chain deeper than that, or a target with no keys is an error, as in mod_jk.
Copied entries keep the target's file, line and key, so an error in a template's value points
at the template's line.
"""

from __future__ import annotations

from collections.abc import Mapping

from balancer.config.directives import suggest
from balancer.config.findings import Findings
from balancer.config.properties import Entry

MAX_DEPTH = 20
PREFIX = "worker."

# directive name -> the entries that set it (several for list directives, last one wins else)
Keys = dict[str, list[Entry]]


def target_of(entry: Entry) -> str | None:
    """The worker named by a reference value ``worker.T`` (a trailing '.' is tolerated)."""
    value = entry.value
    if not value.startswith(PREFIX):
        return None
    name = value[len(PREFIX) :]
    return name[:-1] if name.endswith(".") else name


def resolve(raw: Mapping[str, Keys], findings: Findings) -> tuple[dict[str, Keys], set[str]]:
    """Each worker's keys after references, and the names of the workers used as targets."""
    resolved: dict[str, Keys] = {}
    targets: set[str] = set()
    broken: set[str] = set()  # workers whose own reference line is wrong (reported once)
    loops: set[frozenset[str]] = set()
    for name in raw:
        chain = _chain(name, raw, findings, broken, loops)
        if chain is None:
            resolved[name] = dict(raw[name])
            continue
        targets.update(chain[1:])
        merged: Keys = dict(raw[chain[-1]])
        for link in reversed(chain[:-1]):
            own = raw[link]  # own keys first (and winning), then the inherited ones
            merged = {**own, **{k: v for k, v in merged.items() if k not in own}}
        resolved[name] = merged
    return resolved, targets


def _chain(
    name: str,
    raw: Mapping[str, Keys],
    findings: Findings,
    broken: set[str],
    loops: set[frozenset[str]],
) -> list[str] | None:
    """[name, target, target's target, ...], or None (after reporting) when it cannot resolve."""
    chain = [name]
    while True:
        current = chain[-1]
        entries = raw[current].get("reference")
        if not entries:
            return chain
        entry = entries[-1]
        target = target_of(entry)
        if target is None or target not in raw:
            if current not in broken:
                broken.add(current)
                _report_bad_target(entry, target, raw, findings)
            return None
        if target in chain:
            loop = chain[chain.index(target) :]
            if frozenset(loop) not in loops:
                loops.add(frozenset(loop))
                path = " -> ".join([*loop, target])
                findings.error(entry, None, f"reference loop: {path}")
            return None
        if len(chain) > MAX_DEPTH:
            findings.error(
                raw[name]["reference"][-1],
                None,
                f"reference chain of worker {name!r} is deeper than {MAX_DEPTH} levels "
                f"({' -> '.join(chain[:4])} -> ...)",
            )
            return None
        chain.append(target)


def _report_bad_target(
    entry: Entry, target: str | None, raw: Mapping[str, Keys], findings: Findings
) -> None:
    if target is None:
        hint = f"; did you mean {PREFIX}{entry.value}?" if entry.value in raw else ""
        findings.error(
            entry,
            None,
            f"expected the full prefix of a worker such as worker.template, found "
            f"{entry.value!r}{hint}",
        )
        return
    close = suggest(target, raw)
    hint = f"; did you mean {PREFIX}{close}?" if close else ""
    findings.error(
        entry, None, f"reference target {entry.value!r} has no keys (no {PREFIX}{target}.*){hint}"
    )
