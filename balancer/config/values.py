"""Value parsing for workers.properties (mod_jk reference §1.2), driven by the directive table.

Pure. ``parse_value`` turns the text of one line into the typed value, or raises ``BadValue``
with a message saying what was expected and what was found. Where mod_jk quietly falls back to a
default (a number that is not a number, an unknown boolean or enum letter), pyjk refuses: the
quiet fallback is how ``port=$(NOPE)`` became a silently stopped member (§9 item 11).
What mod_jk accepts on purpose stays accepted: ``60s`` reads as 60 and ``1k`` as 1024, with a
warning when text after the number is ignored (``socket_connect_timeout=5s`` is 5 ms).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from balancer.config.directives import Directive, Kind

MAX_INT = 2**31 - 1  # mod_jk's ints are C ints
MAX_NAME = 63  # mod_jk keeps names, routes and domains in 64-byte shared-memory strings
_INT = re.compile(r"([+-]?[0-9]+)([kKmM]?)(.*)", re.ASCII | re.DOTALL)
_LIST_SPLIT = re.compile(r"[ \t,]+")
_NAME = re.compile(r"[A-Za-z0-9_.-]+", re.ASCII)
_HOST = re.compile(r"[A-Za-z0-9_.-]+", re.ASCII)
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", re.ASCII)
_RATING = re.compile(r"[ads]|[oinbre]|[ads]\.[oinbre]", re.ASCII)
_MULTIPLIERS = {"": 1, "k": 1024, "K": 1024, "m": 1024 * 1024, "M": 1024 * 1024}
_BOUND_NOTES = {"port": " (mod_jk silently marks a member with port 0 Stopped)"}


class BadValue(ValueError):
    """A value that cannot be read; the message says what was expected and what was found."""


@dataclass(slots=True)
class Parsed:
    value: object
    warnings: list[str] = field(default_factory=list)


def _shown(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:57] + "...")


def parse_bool(text: str) -> bool:
    """on/off (any case), 1/0 exactly, or a first letter t/y (true) or f/n (false)."""
    lowered = text.lower()
    if lowered == "on" or text == "1":
        return True
    if lowered == "off" or text == "0":
        return False
    if lowered[:1] in ("t", "y"):
        return True
    if lowered[:1] in ("f", "n"):
        return False
    raise BadValue(
        f"expected a boolean (true/false, yes/no, on/off, 1/0), found {_shown(text)} "
        "(mod_jk would silently use the default)"
    )


def parse_int(text: str) -> tuple[int, str]:
    """A decimal number with an optional k/K or m/M multiplier; returns (value, ignored text)."""
    match = _INT.fullmatch(text)
    if match is None:
        raise BadValue(
            f"expected a whole number such as 8009 or 4k, found {_shown(text)} "
            "(mod_jk would silently use the default)"
        )
    digits, suffix, rest = match.groups()
    value = int(digits) * _MULTIPLIERS[suffix]
    if abs(value) > MAX_INT:
        raise BadValue(f"{_shown(text)} is too large (at most {MAX_INT})")
    return value, rest


def split_list(text: str) -> list[str]:
    """Split on any run of space, tab or comma (mod_jk's list separator)."""
    return [item for item in _LIST_SPLIT.split(text) if item]


def parse_enum(text: str, choices: Mapping[str, object]) -> object:
    """By first character, any case: method R/T/B/S/N or 0-4, lock O/P or 0/1, ..."""
    first = text[:1].upper()
    if first in choices:
        return choices[first]
    letters = [k for k in choices if not k.isdigit()]
    digits = sorted(k for k in choices if k.isdigit())
    listed = ", ".join(f"{k} ({_enum_word(choices[k])})" for k in letters)
    raise BadValue(
        f"expected one of {listed}, or {digits[0]}-{digits[-1]} (the first letter counts), "
        f"found {_shown(text)} (mod_jk would silently use the default)"
    )


def parse_word(text: str, choices: Mapping[str, object]) -> object:
    """One of the words in ``choices``, whole or as its first letter, any case.

    Unlike mod_jk's enums, other words starting with a right letter are refused: these are
    pyjk's own directives, and reading 'deny' as 'drop' would surprise."""
    lowered = text.lower()
    if lowered in choices:
        return choices[lowered]
    if len(lowered) == 1:
        for word, value in choices.items():
            if word.startswith(lowered):
                return value
    *head, last = choices
    raise BadValue(
        f"expected {', '.join(head)} or {last} (or its first letter), found {_shown(text)}"
    )


def _enum_word(value: object) -> str:
    return str(getattr(value, "name", value)).capitalize()


def parse_ping_mode(text: str) -> str:
    """Letters C, P, I and A (= all three), any case; returned as the canonical 'CPI' subset."""
    seen: set[str] = set()
    for char in text:
        if char in " \t,":
            continue
        upper = char.upper()
        if upper == "A":
            seen.update("CPI")
        elif upper in "CPI":
            seen.add(upper)
        else:
            raise BadValue(
                f"expected letters from C (after connect), P (before each request), I (idle) "
                f"and A (all), found {char!r} in {_shown(text)}"
            )
    return "".join(c for c in "CPI" if c in seen)


def parse_status_list(text: str) -> tuple[int, ...]:
    """fail_on_status: HTTP status codes, a leading '-' marks a soft failure."""
    codes: list[int] = []
    for item in split_list(text):
        if not re.fullmatch(r"-?[0-9]{3}", item, re.ASCII) or not 100 <= abs(int(item)) <= 599:
            raise BadValue(f"expected HTTP status codes such as 503 or -404, found {_shown(item)}")
        codes.append(int(item))
    return tuple(codes)


def parse_ratings(text: str) -> tuple[str, ...]:
    """good/bad rules: an activation letter, a state letter, or activation.state (lowercased)."""
    rules: list[str] = []
    for item in split_list(text):
        rule = item.lower()
        if not _RATING.fullmatch(rule):
            raise BadValue(
                "expected rating rules made of an activation letter (a, d, s), a state letter "
                f"(o, i, n, b, r, e) or both as in a.o, found {_shown(item)}"
            )
        rules.append(rule)
    return tuple(rules)


def parse_networks(text: str) -> tuple[str, ...]:
    """CIDR networks (host bits allowed), normalised, e.g. '10.1.2.3/8' -> '10.0.0.0/8'."""
    nets: list[str] = []
    for item in split_list(text):
        try:
            nets.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise BadValue(
                f"expected a network such as 10.0.0.0/8 or 192.0.2.7, found {_shown(item)}"
            ) from None
    return tuple(nets)


def parse_host(text: str) -> str:
    """A host name or IP address; '[v6]' loses its brackets; 'host:port' is refused."""
    host = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise BadValue(
                f"expected a host name or IP address, found {_shown(text)}: host:port is not "
                "supported (mod_jk reads ':' as IPv6), set the port directive instead"
            ) from None
        return host
    if len(host) > 253 or not _HOST.fullmatch(host):
        raise BadValue(f"expected a host name or IP address, found {_shown(text)}")
    return host


def parse_address(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise BadValue(f"expected an IP address, found {_shown(text)}") from None


def parse_name(text: str) -> str:
    """route, domain, redirect: the worker-name alphabet, at most 63 characters."""
    if not _NAME.fullmatch(text) or len(text) > MAX_NAME:
        raise BadValue(
            f"expected at most {MAX_NAME} characters from A-Z a-z 0-9 _ . -, found {_shown(text)}"
        )
    return text


def parse_path(text: str) -> str:
    if not text.startswith("/") or any(c.isspace() or ord(c) < 0x20 for c in text):
        raise BadValue(f"expected an absolute path such as /-/ready, found {_shown(text)}")
    return text


def parse_token(text: str) -> str:
    if not _TOKEN.fullmatch(text):
        raise BadValue(f"expected a cookie name (an HTTP token), found {_shown(text)}")
    return text


def worker_name_problems(name: str) -> tuple[list[str], list[str]]:
    """(errors, warnings) for a worker name. mod_jk documents [A-Za-z0-9_-] but enforces
    nothing; pyjk refuses other characters and names over 63 characters (mod_jk's shared-memory
    limit), and only warns about '.', which mod_jk's key parsing happens to allow."""
    errors: list[str] = []
    warnings: list[str] = []
    if not _NAME.fullmatch(name):
        errors.append(f"worker name {_shown(name)} may only use A-Z a-z 0-9 _ -")
    elif "." in name:
        warnings.append(
            f"worker name {_shown(name)} contains '.', which mod_jk documents as not allowed "
            "(its route's domain defaults to the part before the first '.')"
        )
    if len(name) > MAX_NAME:
        errors.append(f"worker name is {len(name)} characters long; at most {MAX_NAME}")
    return errors, warnings


def parse_names(text: str) -> tuple[str, ...]:
    """A list of worker names; each must be a valid name."""
    names = tuple(split_list(text))
    for name in names:
        errors, _ = worker_name_problems(name)
        if errors:
            raise BadValue(errors[0])
    return names


_SIMPLE: dict[Kind, Callable[[str], object]] = {
    Kind.BOOL: parse_bool,
    Kind.STR: lambda text: text,
    Kind.HOST: parse_host,
    Kind.ADDRESS: parse_address,
    Kind.NAME: parse_name,
    Kind.PATH: parse_path,
    Kind.TOKEN: parse_token,
    Kind.LETTERS: parse_ping_mode,
    Kind.LIST: lambda text: tuple(split_list(text)),
    Kind.NAMES: parse_names,
    Kind.INT_LIST: parse_status_list,
    Kind.RATINGS: parse_ratings,
    Kind.NETWORKS: parse_networks,
}


def parse_value(directive: Directive, text: str) -> Parsed:
    """The typed value of ``text`` for ``directive``, clamped as mod_jk clamps; or BadValue."""
    if directive.kind is Kind.ENUM:
        return Parsed(parse_enum(text, directive.choices))
    if directive.kind is Kind.WORD:
        return Parsed(parse_word(text, directive.choices))
    if directive.kind is not Kind.INT:
        return Parsed(_SIMPLE[directive.kind](text))
    value, rest = parse_int(text)
    parsed = Parsed(value)
    unit = f" {directive.unit}" if directive.unit in ("ms", "s", "bytes") else ""
    if rest:
        parsed.warnings.append(
            f"{_shown(text)} reads as {value}{unit}: the trailing {_shown(rest)} is ignored"
        )
    _clamp(directive, parsed)
    return parsed


def _clamp(d: Directive, parsed: Parsed) -> None:
    value = parsed.value
    assert isinstance(value, int)
    if d.minimum is not None and value < d.minimum:
        parsed.warnings.append(f"{value} is below the minimum; {d.minimum} is used (as mod_jk)")
        value = d.minimum
    elif value < 0:
        raise BadValue(f"must not be negative, found {value}")
    if d.multiple and value % d.multiple:
        value += d.multiple - value % d.multiple
        parsed.warnings.append(f"rounded up to {value}, a multiple of {d.multiple}")
    if d.maximum is not None and value > d.maximum:
        parsed.warnings.append(f"{value} is above the maximum; {d.maximum} is used")
        value = d.maximum
    if d.bounds is not None:
        low, high = d.bounds
        if high is None and value < low:
            raise BadValue(f"must be at least {low}, found {value}")
        if high is not None and not low <= value <= high:
            note = _BOUND_NOTES.get(d.name, "") if value == 0 else ""
            raise BadValue(f"must be between {low} and {high}, found {value}{note}")
    parsed.value = value
