"""The request path as the URI map sees it (mod_jk §4.2, §9 item 9).

mod_jk matches httpd's already-cleaned path: httpd percent-decodes it and resolves ``.``/``..``
before mod_jk strips ``;params``. pyjk has no httpd in front, so this module does the whole job.
Pure: a string in, a ``NormalizedPath`` or a ``Rejected`` out, never an exception.

The steps, per ``/``-separated segment of the raw path (the query must already be cut off; a
``?`` and what follows is dropped defensively):

1. ``;params`` are cut at the first *raw* ``;`` of the segment (``/app;foo=1/x`` → ``/app/x``).
   Cutting before decoding is what Tomcat does, so a ``..;x`` segment counts as ``..`` here
   exactly as it does on the backend (the classic ``/..;/`` traversal).
2. The segment is percent-decoded once, as UTF-8 (``%73`` → ``s``, ``%2e%2e`` → ``..``).
3. Empty segments (``//``) and ``.`` vanish; ``..`` removes the previous segment. A trailing
   empty, ``.`` or ``..`` segment leaves a trailing ``/`` (RFC 3986 §5.2.4), so ``/app/`` stays
   distinct from ``/app`` as it is for mod_jk's exact rules.

Refusals, and why they differ from mod_jk where they do:

* ``..`` above the root → 400 (httpd answers 400 too).
* ``%`` not followed by two hex digits → 400 (httpd: 400).
* ``%2F`` (encoded ``/``) → 400. httpd's default ``AllowEncodedSlashes Off`` refuses these
  (with a 404); Tomcat refuses them by default too. Decoding them into ``/`` would let
  ``/app%2F..%2Fadmin`` mean one thing here and another on the backend.
* ``%3B`` (encoded ``;``) → 400. mod_jk strips params from the *decoded* path, so for it
  ``/x%3B.png`` is ``/x``; the backend reads a segment named ``x;.png``. Refusing it keeps the
  map and the backend agreeing on what a path names, and a matched path never contains ``;``.
* A NUL or other control character (C0, DEL, C1), raw or decoded → 400 (httpd refuses ``%00``).
* Percent-encoded bytes that are not UTF-8 → 400: the map's patterns are text.
* Longer than ``MAX_URI_LENGTH`` (4095, mod_jk's limit) → 414. mod_jk leaves such URIs unmapped
  and httpd answers 404; "URI Too Long" says what actually happened.
* Anything that does not start with ``/`` (``*`` of ``OPTIONS *``, absolute-form targets the
  caller did not reduce to their path) → 400.

A backslash is an ordinary character, as for httpd on Unix and for aiohttp workers (it is not
a separator, so ``/app\\..\\x`` is one segment named that).

The *forwarded* URI is the raw one, untouched: the session-id search (lb engine) looks for
``;jsessionid=`` there, so callers keep the raw path for ``RequestFacts.uri``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

MAX_URI_LENGTH = 4095

_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_PARAMS = re.compile(r";[^/]*")


@dataclass(frozen=True, slots=True)
class NormalizedPath:
    """The path rules are matched against: decoded, no params, no dot segments, no ``//``."""

    path: str


@dataclass(frozen=True, slots=True)
class Rejected:
    """The request must be answered with ``status``; ``reason`` is for the log."""

    status: int
    reason: str


def normalize_path(raw: str, *, max_length: int = MAX_URI_LENGTH) -> NormalizedPath | Rejected:
    """Normalize the raw request path ``raw`` for matching (see the module docstring)."""
    result = normalize(raw, max_length)
    return NormalizedPath(result) if type(result) is str else result  # type: ignore[return-value]


def normalize(raw: str, max_length: int = MAX_URI_LENGTH) -> str | Rejected:
    """``normalize_path`` without the wrapper object, for the URI map's hot path."""
    query = raw.find("?")
    if query >= 0:
        raw = raw[:query]
    if len(raw) > max_length:
        return Rejected(414, f"request path is {len(raw)} characters; the limit is {max_length}")
    if not raw.startswith("/"):
        return Rejected(400, "request path does not start with '/'")
    if ";" in raw:
        # Cutting every ";..." up to the next raw "/" is cutting each segment at its first ";".
        raw = _PARAMS.sub("", raw)
    # Hot path: nothing to decode or resolve. Every dot segment starts with "/." since the path
    # starts with "/", so this test is exact, not a heuristic.
    if "%" not in raw and "//" not in raw and "/." not in raw and raw.isprintable():
        return raw
    return _normalize_segments(raw)


def _normalize_segments(raw: str) -> str | Rejected:
    out: list[str] = []
    trailing_slash = False
    for segment in raw.split("/")[1:]:
        if "%" in segment:
            decoded = _decode(segment)
            if type(decoded) is Rejected:
                return decoded
            segment = decoded  # type: ignore[assignment]
        if _CONTROL.search(segment):
            return Rejected(400, "control character in request path")
        if segment in ("", "."):
            trailing_slash = True
        elif segment == "..":
            if not out:
                return Rejected(400, "request path climbs above the root ('..')")
            out.pop()
            trailing_slash = True
        else:
            out.append(segment)
            trailing_slash = False
    path = "/" + "/".join(out)
    if trailing_slash and out:
        path += "/"
    return path


def _decode(segment: str) -> str | Rejected:
    if _BAD_PERCENT.search(segment):
        return Rejected(400, "invalid percent-encoding in request path")
    try:
        decoded = unquote(segment, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        return Rejected(400, "percent-encoded bytes in request path are not UTF-8")
    if "/" in decoded:
        return Rejected(400, "encoded slash (%2F) in request path")
    if ";" in decoded:
        return Rejected(400, "encoded ';' (%3B) in request path")
    return decoded
