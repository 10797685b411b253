"""workers.properties → ``WorkersConfig`` (mod_jk reference §1–2).

The steps, in order: read lines and substitute ``$(var)`` (``properties``); sort keys into
globals, variables and ``worker.NAME.DIRECTIVE`` (the name is everything between ``worker.`` and
the last ``.``); rename deprecated aliases; resolve ``reference`` (``references``); build the
typed workers (``build``); collect ``mount`` rules. Every problem found on the way is kept, and
the errors are raised together as one ``ConfigError``; warnings are returned.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from balancer.config.build import build_workers
from balancer.config.directives import (
    ALIAS_BY_NAME,
    GLOBAL,
    GLOBAL_NAMES,
    IGNORED,
    WORKER_DIRECTIVE_NAMES,
    directive_for,
    is_list_key,
    suggest,
)
from balancer.config.errors import ConfigError, Problem
from balancer.config.findings import Findings, in_file_order
from balancer.config.model import Location, WorkersConfig
from balancer.config.properties import Entry, Properties, read_properties
from balancer.config.references import Keys, resolve
from balancer.config.values import (
    BadValue,
    parse_bool,
    parse_value,
    split_list,
    worker_name_problems,
)

DEFAULT_LIST = "ajp13"  # mod_jk's worker.list when the file has none


def load_workers(
    path: str | Path, environ: Mapping[str, str] | None = None
) -> tuple[WorkersConfig, list[Problem]]:
    """Read the workers.properties at ``path``: the config and its warnings, or ConfigError.

    ``environ`` (default ``os.environ``) resolves ``$(name)`` not defined earlier in the file.
    """
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem(file, None, None, f"cannot read: {exc}")]) from exc
    return parse_workers(text, file, environ)


def parse_workers(
    text: str, file: str = "<text>", environ: Mapping[str, str] | None = None
) -> tuple[WorkersConfig, list[Problem]]:
    """Like ``load_workers`` for text already read; ``file`` is used in messages."""
    findings = Findings(file)
    props = read_properties(
        text, file, environ=os.environ if environ is None else environ, is_list_key=is_list_key
    )
    findings.errors.extend(props.problems)
    findings.muted.update((p.file, p.line) for p in props.problems if p.line is not None)
    findings.warnings.extend(props.warnings)
    globals_, raw, origins = _sort_keys(props, findings)
    _rename_aliases(raw, findings)
    resolved, targets = resolve(raw, findings)
    listed = _worker_list(globals_.get("list", []), findings)
    maintain = _maintain(globals_.get("maintain", []), findings)
    built = build_workers(resolved, listed, origins, findings)
    names = [name for name, _ in listed]
    mounts = _mounts(resolved, set(names), targets, findings)
    used = set(names) | built.lb_members | targets
    for name in raw:
        if name not in used:
            findings.warn(
                origins[name],
                None,
                f"worker {name!r} is not in worker.list, not an lb member and not referenced: "
                "it is not used",
            )
    findings.raise_if_errors()
    config = WorkersConfig(
        worker_list=tuple(dict.fromkeys(names)),
        maintain=maintain,
        lbs=built.lbs,
        members=built.members,
        statuses=built.statuses,
        mounts=tuple(mounts),
        properties=_effective(props, resolved, names, maintain),
        file=file,
    )
    return config, in_file_order(findings.warnings)


def _sort_keys(
    props: Properties, findings: Findings
) -> tuple[dict[str, list[Entry]], dict[str, Keys], dict[str, Entry]]:
    """Globals (list, maintain), per-worker keys, and each worker's first line; errors for
    unknown directives."""
    globals_: dict[str, list[Entry]] = {}
    raw: dict[str, Keys] = {}
    origins: dict[str, Entry] = {}
    checked: dict[str, bool] = {}  # worker name -> valid
    for entry in props.entries:
        key = entry.key
        if not key.startswith("worker."):
            if key.lower().startswith(("worker.", "workers.")):
                findings.warn(
                    entry,
                    None,
                    "read as a variable: keys are case-sensitive and only 'worker.' "
                    "keys configure workers",
                )
            continue
        rest = key[len("worker.") :]
        if "." not in rest:
            if rest in GLOBAL_NAMES:
                globals_.setdefault(rest, []).append(entry)
            elif rest in WORKER_DIRECTIVE_NAMES:
                findings.error(entry, None, f"needs a worker name: worker.NAME.{rest}")
            else:
                hint = _hint(rest, GLOBAL_NAMES, "worker.")
                findings.error(entry, None, f"unknown global directive {rest!r}{hint}")
            continue
        name, directive = rest.rsplit(".", 1)
        if name not in checked:
            checked[name] = _check_name(name, entry, findings)
        if not checked[name]:
            continue  # reported once; its keys would only add noise
        if directive in IGNORED:
            findings.warn(entry, None, "ignored: a JNI-era directive that pyjk has no use for")
            continue
        if directive not in WORKER_DIRECTIVE_NAMES and directive not in ALIAS_BY_NAME:
            if directive in GLOBAL_NAMES:
                message = f"{directive!r} is global: write worker.{directive}"
            else:
                hint = _hint(directive, WORKER_DIRECTIVE_NAMES, f"worker.{name}.")
                message = f"unknown directive {directive!r}{hint}"
            findings.error(entry, None, message)
            continue
        raw.setdefault(name, {}).setdefault(directive, []).append(entry)
        origins.setdefault(name, entry)
    return globals_, raw, origins


def _check_name(name: str, entry: Entry, findings: Findings) -> bool:
    errors, warnings = worker_name_problems(name) if name else (["empty worker name"], [])
    for message in errors:
        findings.error(entry, None, message)
    for message in warnings:
        findings.warn(entry, None, message)
    return not errors


def _hint(word: str, candidates: frozenset[str], prefix: str) -> str:
    close = suggest(word, candidates)
    return f"; did you mean {prefix}{close}?" if close else ""


def _rename_aliases(raw: dict[str, Keys], findings: Findings) -> None:
    """Deprecated names (reference §2.6) become their directive unless it is set too.

    Done before references, so that an alias set on a worker beats the template's directive.
    """
    for keys in raw.values():
        for name, alias in sorted(ALIAS_BY_NAME.items(), key=lambda kv: kv[1].activation != "S"):
            entries = keys.pop(name, None)
            if not entries:
                continue
            entry = entries[-1]
            findings.warn(entry, None, f"deprecated; use {alias.target}")
            if alias.target in keys:
                findings.warn(entry, None, f"ignored: {alias.target} is also set")
                continue
            if not alias.activation:
                keys[alias.target] = entries
                continue
            try:
                on = parse_bool(entry.value)
            except BadValue as exc:
                findings.value_error(entry, str(exc))
                continue
            if on:  # stopped wins over disabled: it is renamed first
                keys[alias.target] = [Entry(entry.key, alias.activation, entry.file, entry.line)]


def _worker_list(entries: list[Entry], findings: Findings) -> list[tuple[str, Entry | None]]:
    if not entries:
        findings.warn(None, "worker.list", f"missing; mod_jk's default {DEFAULT_LIST!r} is used")
        return [(DEFAULT_LIST, None)]
    directive = directive_for("list", GLOBAL)
    assert directive is not None
    listed: list[tuple[str, Entry | None]] = []
    seen: set[str] = set()
    for entry in entries:
        try:
            names = parse_value(directive, entry.value).value
        except BadValue as exc:
            findings.value_error(entry, str(exc))
            continue
        assert isinstance(names, tuple)
        for name in names:
            if name in seen:
                findings.warn(entry, None, f"worker {name!r} is listed more than once")
                continue
            seen.add(name)
            listed.append((name, entry))
    return listed


def _maintain(entries: list[Entry], findings: Findings) -> int:
    directive = directive_for("maintain", GLOBAL)
    assert directive is not None and isinstance(directive.default, int)
    if not entries:
        return directive.default
    try:
        parsed = parse_value(directive, entries[-1].value)
    except BadValue as exc:
        findings.value_error(entries[-1], str(exc))
        return directive.default
    for warning in parsed.warnings:
        findings.warn(entries[-1], None, warning)
    assert isinstance(parsed.value, int)
    return parsed.value


def _mounts(
    resolved: Mapping[str, Keys], listed: set[str], targets: set[str], findings: Findings
) -> list[tuple[str, str, Location]]:
    """worker.NAME.mount rules; they count only for workers in worker.list (mod_jk §1.6)."""
    mounts: list[tuple[str, str, Location]] = []
    for name, keys in resolved.items():
        entries = keys.get("mount", [])
        if entries and name not in listed:
            if name not in targets:
                findings.warn(entries[0], None, f"ignored: {name!r} is not in worker.list")
            continue
        for entry in entries:
            for pattern in split_list(entry.value):
                mounts.append((pattern, name, Location(entry.file, entry.line)))
    return mounts


def _effective(
    props: Properties, resolved: Mapping[str, Keys], names: list[str], maintain: int
) -> dict[str, str]:
    """The key=value map after references, with canonical directive names (for status dump)."""
    out = {k: v for k, v in props.merged.items() if not k.startswith("worker.")}
    out["worker.list"] = ",".join(dict.fromkeys(names))
    out["worker.maintain"] = str(maintain)
    for name, keys in resolved.items():
        for directive, entries in keys.items():
            key = f"worker.{name}.{directive}"
            if is_list_key(key):
                out[key] = ",".join(e.value for e in entries)
            else:
                out[key] = entries[-1].value
    return out
