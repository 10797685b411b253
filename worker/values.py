"""Session attribute values: the JSON-safe check and the one canonical encoding.

Attributes travel between nodes, so a value is limited to what JSON carries without loss:
str, int, float (finite), bool, None, list, and dict with str keys, nested. Exact types only: a
tuple, a str subclass or an OrderedDict would come back as something else on another node, so
they are refused at the point where the app stores them, with the attribute name and the path
to the offending part (pickle is never an option: tomcat-cluster.md §6.2).

The store keeps every value as its canonical JSON text. Encoding is deterministic for equal
values (key order is kept, not sorted, so apps see their dicts in the order they built them),
which makes "did this value change during the request?" a plain string comparison.
"""

from __future__ import annotations

import json
import math
from typing import Any, cast

# Deeper nesting is almost always a cycle or an accident; it would also strain decoders.
MAX_DEPTH = 64

ALLOWED = "str, int, float (finite), bool, None, list, or dict with str keys"

_ENCODER = json.JSONEncoder(
    ensure_ascii=True,  # text length == byte length, so size limits count bytes
    allow_nan=False,
    check_circular=False,  # check_value already refused cycles, with a better message
    separators=(",", ":"),
)


class AttributeValueError(TypeError):
    """A value that cannot be stored in a session; says which attribute and where in it."""

    def __init__(self, name: str, path: str, problem: str) -> None:
        self.name = name
        self.path = path
        self.problem = problem
        super().__init__(f"session attribute {name!r}: {path}: {problem}")


def check_name(name: object) -> str:
    """Return `name` if it can name an attribute (a non-empty str), else raise TypeError."""
    if type(name) is not str:
        raise TypeError(f"session attribute names must be str, found {type(name).__name__}")
    if not name:
        raise TypeError("session attribute names must not be empty")
    return name


def check_value(name: str, value: object) -> None:
    """Raise AttributeValueError unless `value` is JSON-safe all the way down."""
    _check(name, value, name, 0, set())


def _check(name: str, value: object, path: str, depth: int, open_ids: set[int]) -> None:
    kind = type(value)
    if value is None or kind is str or kind is bool or kind is int:
        return
    if kind is float:
        if not math.isfinite(value):  # type: ignore[arg-type]
            raise AttributeValueError(name, path, f"{value!r} is not a finite float")
        return
    if kind is not list and kind is not dict:
        hint = " (use a list)" if isinstance(value, tuple) else ""
        raise AttributeValueError(
            name, path, f"{kind.__module__}.{kind.__qualname__} is not allowed{hint}; {ALLOWED}"
        )
    if depth >= MAX_DEPTH:
        raise AttributeValueError(name, path, f"nested deeper than {MAX_DEPTH} levels")
    if id(value) in open_ids:
        raise AttributeValueError(name, path, "contains itself (a cycle)")
    open_ids.add(id(value))
    if kind is list:
        for index, item in enumerate(cast("list[object]", value)):
            _check(name, item, f"{path}[{index}]", depth + 1, open_ids)
    else:
        for key, item in cast("dict[object, object]", value).items():
            if type(key) is not str:
                raise AttributeValueError(
                    name, path, f"dict key {key!r} is a {type(key).__name__}, not a str"
                )
            _check(name, item, f"{path}[{key!r}]", depth + 1, open_ids)
    open_ids.discard(id(value))


def encode(name: str, value: object) -> str:
    """Check `value` and return its canonical JSON text (ASCII only)."""
    check_value(name, value)
    try:
        return _ENCODER.encode(value)
    except ValueError as exc:  # e.g. an int beyond the interpreter's int-to-str digit limit
        raise AttributeValueError(name, name, str(exc)) from exc


def _refuse_constant(token: str) -> Any:
    raise ValueError(f"{token} is not valid JSON here")


def decode(text: str) -> Any:
    """Turn canonical text back into a fresh value (no sharing with any earlier decode)."""
    return json.loads(text, parse_constant=_refuse_constant)
