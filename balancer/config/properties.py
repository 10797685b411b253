"""The line format shared by workers.properties and uriworkermap.properties (mod_jk §1.1, §1.3).

Pure: takes text, returns entries. mod_jk's rules, kept:
- everything from the first ``#`` is a comment (there is no escape);
- the line is trimmed and split at the first ``=``; key and value are trimmed again;
- a line whose key or value is empty after trimming changes nothing;
- ``$(name)`` in a value is replaced while the line is read, from keys read so far, then from
  the environment; the result is not scanned again.

pyjk does better than mod_jk where mod_jk is silent: a non-blank line without ``=`` and a
``$(name)`` that resolves to nothing are errors naming file and line (mod_jk ignores the first
and keeps the second as literal text, which turned ``port=$(NOPE)`` into a silently Stopped
member).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from balancer.config.errors import Problem

_VAR = re.compile(r"\$\(([^)]*)\)")
# mod_jk substitutes at most about 20 variables in one value.
MAX_SUBSTITUTIONS = 20


@dataclass(frozen=True, slots=True)
class Entry:
    """One ``key=value`` line after comment stripping and substitution."""

    key: str
    value: str
    file: str
    line: int


@dataclass(slots=True)
class Properties:
    """What a file read produced: entries in file order plus the merged key view."""

    entries: list[Entry] = field(default_factory=list)
    merged: dict[str, str] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)


def read_properties(
    text: str,
    file: str,
    *,
    environ: Mapping[str, str],
    is_list_key: Callable[[str], bool] = lambda key: False,
    into: Properties | None = None,
) -> Properties:
    """Read ``text`` (the contents of ``file``) into ``into`` or a new Properties.

    ``is_list_key(key)`` says whether a repeated key appends (joined with ``,``, mod_jk's list
    directives) or overwrites (with a warning naming both lines).
    """
    props = into if into is not None else Properties()
    first_seen: dict[str, int] = {}
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if "=" not in line:
            props.problems.append(
                Problem(file, lineno, line[:60], "expected key=value (no '=' on this line)")
            )
            continue
        key, value = (part.strip() for part in line.split("=", 1))
        if not key or not value:
            continue
        value, unresolved = _substitute(value, props.merged, environ)
        for name in unresolved:
            props.problems.append(
                Problem(
                    file,
                    lineno,
                    key,
                    f"$({name}) is not defined: define it on an earlier line or in the environment",
                )
            )
        props.entries.append(Entry(key, value, file, lineno))
        if key in props.merged and is_list_key(key):
            props.merged[key] = f"{props.merged[key]},{value}"
        else:
            if key in props.merged and key in first_seen:
                props.warnings.append(
                    Problem(
                        file,
                        lineno,
                        key,
                        f"repeated; this value overrides the one on line {first_seen[key]}",
                    )
                )
            props.merged[key] = value
        first_seen.setdefault(key, lineno)
    return props


def _substitute(
    value: str, known: Mapping[str, str], environ: Mapping[str, str]
) -> tuple[str, list[str]]:
    unresolved: list[str] = []
    count = 0

    def replace(match: re.Match[str]) -> str:
        nonlocal count
        name = match.group(1)
        count += 1
        if count > MAX_SUBSTITUTIONS:
            return match.group(0)
        if name in known:
            return known[name]
        if name in environ:
            return environ[name]
        unresolved.append(name)
        return match.group(0)

    # re.sub scans left to right over the original text only: substituted text is not
    # scanned again, as in mod_jk.
    return _VAR.sub(replace, value), unresolved
