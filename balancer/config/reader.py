"""workers.properties → ``WorkersConfig`` (mod_jk reference §1–2).

The steps, in order: read lines and substitute ``$(var)`` (``properties``); sort keys into
globals, variables and ``worker.NAME.DIRECTIVE`` (the name is everything between ``worker.`` and
the last ``.``); rename deprecated aliases; resolve ``reference`` (``references``); build the
typed workers (``build``); collect ``mount`` rules. Every problem found on the way is kept, and
the errors are raised together as one ``ConfigError``; warnings are returned.

The pyjk-only globals (``worker.max_body_size``, ...) fill ``WorkersConfig.balancer``. In the
effective map (the status worker's dump) they appear only when the file sets them, in canonical
form (``16k`` as ``16384``): a dump of a mod_jk file then shows nothing mod_jk would not.
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
    Directive,
    directive_for,
    directives_for_type,
    is_list_key,
    suggest,
)
from balancer.config.errors import ConfigError, Problem
from balancer.config.findings import Findings, in_file_order
from balancer.config.model import BalancerSettings, Location, WorkersConfig
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
    return parse_workers(read_config_file(path, "the worker definitions"), str(path), environ)


def read_config_file(path: str | os.PathLike[str], what: str) -> str:
    """The UTF-8 text of the file at ``path``, or ConfigError naming it and saying why not."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = (exc.strerror or str(exc)) if isinstance(exc, OSError) else "not UTF-8 text"
        problem = Problem(str(path), None, None, f"cannot read {what}: {why}")
        raise ConfigError([problem]) from exc


def parse_workers(
    text: str, file: str = "<text>", environ: Mapping[str, str] | None = None
) -> tuple[WorkersConfig, list[Problem]]:
    """Like ``load_workers`` for text already read; ``file`` is used in messages."""
    findings = Findings(file)
    props = read_properties(
        text, file, environ=os.environ if environ is None else environ, is_list_key=is_list_key
    )
    findings.take(props)
    globals_, raw, origins = _sort_keys(props, findings)
    _rename_aliases(raw, findings)
    resolved, targets = resolve(raw, findings)
    listed = _worker_list(globals_.get("list", []), findings)
    maintain = _maintain(globals_.get("maintain", []), findings)
    balancer = _balancer(globals_, findings)
    built = build_workers(resolved, listed, origins, findings)
    for path, entry in built.cluster_files:
        _check_cluster_file(path, entry, findings)
    names = [name for name, _ in listed]
    mounts = _mounts(resolved, set(names), targets, findings)
    templates = {lb.cluster_template for lb in built.lbs.values() if lb.cluster_template}
    used = set(names) | built.lb_members | targets | templates
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
        properties=_effective(props, resolved, names, maintain, balancer),
        file=file,
        balancer=balancer,
    )
    return config, in_file_order(findings.warnings)


def _check_cluster_file(path: str, entry: Entry, findings: Findings) -> None:
    """Read the cluster.toml a ``worker.<lb>.cluster`` names; its problems are this line's."""
    from replication.config import load_cluster_config  # replication builds on balancer.config

    try:
        load_cluster_config(path)
    except ConfigError as exc:
        for p in exc.problems:
            where = f"{p.file}:{p.line}" if p.line else p.file
            key = f" {p.directive}" if p.directive else ""
            findings.error(entry, None, f"cluster file {where}{key}: {p.message}")


def _sort_keys(
    props: Properties, findings: Findings
) -> tuple[dict[str, list[Entry]], dict[str, Keys], dict[str, Entry]]:
    """Globals (list, maintain, pyjk's edge limits), per-worker keys, and each worker's first
    line; errors for unknown directives."""
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
    value = _global_value(directive, entries, findings)
    return value if isinstance(value, int) else directive.default


def _balancer(globals_: Mapping[str, list[Entry]], findings: Findings) -> BalancerSettings:
    """The pyjk-only globals, one ``BalancerSettings`` field each; unset ones keep defaults."""
    values: dict[str, object] = {}
    for directive in directives_for_type(GLOBAL):
        entries = globals_.get(directive.name)
        if directive.pyjk_only and entries:
            value = _global_value(directive, entries, findings)
            if value is not None:
                values[directive.name] = value
    return BalancerSettings(**values)  # type: ignore[arg-type]


def _global_value(directive: Directive, entries: list[Entry], findings: Findings) -> object:
    """The parsed value of a global set on ``entries`` (a list appends them all, else the last
    counts), or None when it cannot be read (reported)."""
    items: list[object] = []
    value: object = None
    for entry in entries if directive.is_list else entries[-1:]:
        try:
            parsed = parse_value(directive, entry.value)
        except BadValue as exc:
            findings.value_error(entry, str(exc))
            return None
        for warning in parsed.warnings:
            findings.warn(entry, None, warning)
        if isinstance(parsed.value, tuple):
            items.extend(parsed.value)
        else:
            value = parsed.value
    return tuple(items) if directive.is_list else value


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
    props: Properties,
    resolved: Mapping[str, Keys],
    names: list[str],
    maintain: int,
    balancer: BalancerSettings,
) -> dict[str, str]:
    """The key=value map after references, with canonical directive names (for status dump).

    pyjk's edge limits only when set in the file (see the module docstring)."""
    out = {k: v for k, v in props.merged.items() if not k.startswith("worker.")}
    out["worker.list"] = ",".join(dict.fromkeys(names))
    out["worker.maintain"] = str(maintain)
    for directive in directives_for_type(GLOBAL):
        key = f"worker.{directive.name}"
        if directive.pyjk_only and key in props.merged:
            value = getattr(balancer, directive.name)
            out[key] = ",".join(value) if isinstance(value, tuple) else str(value)
    for name, keys in resolved.items():
        for directive_name, entries in keys.items():
            key = f"worker.{name}.{directive_name}"
            if is_list_key(key):
                out[key] = ",".join(e.value for e in entries)
            else:
                out[key] = entries[-1].value
    return out
