"""Reading the session id of a request and the routes it names (reference modjk.md §3.5).

Pure string work, kept apart from member choice so every quirk can be tested on its own:

- ``JK_ROUTE`` (``RequestFacts.route_override``) wins and stands for the id ``.<route>``;
- then the path parameter: the first ``<session_path>=`` anywhere in the forwarded URI, the
  value running to the first ``?``, ``;`` or ``/``;
- then cookies: every ``<session_cookie>=value`` in every Cookie header, in order, joined by
  ``;`` (multiple JSESSIONID cookies, mod_jk bug 44116);
- the route of one id is what follows its *first* ``.`` (the docs say "after a dot"; the code
  takes the first, reference §8).

The Cookie header values and the path arrive as the request's bytes (``RequestFacts.cookies``
and ``.uri``) and are scanned as bytes: only the id found is decoded (latin-1, so every byte
compares as the character it stood for when the request was decoded whole). Compiled
(sticky.pxd), the scans are C loops over a C pointer into the bytes, a name found with libc's
``memchr`` and ``memcmp`` (issue 12, session 6: ~2k instructions less per sticky request than
decoding every header and scanning the text).

The common case — one value of the session cookie, no ``JK_ROUTE``, no path parameter — is
answered as offsets (``session_span``): the plan keeps the id as a place in its Cookie header
and finds the route's member by comparing bytes (``route_start``, ``same_bytes``), making the
``str`` id and the routes list only when something asks for them (issue 12, session 8).

The route is untrusted client input. It is only ever compared with configured routes and
domains; it never names a host.
"""

from __future__ import annotations

from collections.abc import Sequence

from balancer.lb.decisions import RequestFacts
from balancer.lb.settings import LbSettings

_SEMICOLON = 59
_COMMA = 44
_EQUALS = 61
_QUOTE = 34
_SP = 32
_DOT = 46
# Run from this .py (PYJK_PURE=1, or not built), ``_find`` uses ``bytes.find``; compiled,
# ``__file__`` is the extension's and ``_find`` is libc's ``memchr`` (as head_bytes.py does).
_PURE = __file__.endswith(".py")
_QUESTION = 63
_SLASH = 47
# The last name each scan was asked for and its bytes (``_keyed``): nearly every request
# asks for its lb's names, the same str objects, so an identity check spares encoding them
# per request (a dict lookup cost ~160 instructions; issue 12, session 6).
_path_key: tuple[str, bytes] = ("", b"")
_cookie_key: tuple[str, bytes] = ("", b"")


# What ``session_span``'s first number says when it is not the Cookie header the one id is in
# (>= 0): no session, or where ``session_text`` reads the id as text
NO_SESSION = -1
JK_ROUTE = -2  # JK_ROUTE wins: the id is ".<route>"
IN_PATH = -3  # the path parameter: the id is facts.uri[at:stop]
SEVERAL = -4  # several cookie values, the first found in cookies[at]
_NO_SESSION = NO_SESSION  # compiled: C constants (sticky.pxd)
_JK_ROUTE = JK_ROUTE
_IN_PATH = IN_PATH
_SEVERAL = SEVERAL


def session_span(facts: RequestFacts, settings: LbSettings) -> tuple[int, int, int]:
    """Where the request's session id is, found by one scan: ``(k, at, stop)``. In the common
    case — one value of the session cookie, no ``JK_ROUTE``, no path parameter — ``k >= 0``
    and the id is ``facts.cookies[k][at:stop]`` (quotes removed), so the plan routes by its
    bytes without making a str (issue 12, session 8). ``(NO_SESSION, 0, 0)`` when the request
    has no session (or an empty one); else ``k`` is ``JK_ROUTE``, ``IN_PATH`` or ``SEVERAL``
    and ``session_text`` reads the id from where the scan left it, without scanning again.
    """
    rule = facts.rule
    # compiled: the settings' reads are C calls (settings.pxd; shared settings read their record)
    if rule.sticky_ignore or not settings.read_sticky_session():
        return _NO_SESSION, 0, 0
    if facts.route_override:
        return _JK_ROUTE, 0, 0
    at, stop = path_span(facts.uri, rule.session_path or settings.read_session_path())
    if at >= 0:
        # mod_jk consults cookies only when no path parameter was found at all: an empty
        # ";jsessionid=" value hides the cookie, and the request then has no session.
        if at == stop:
            return _NO_SESSION, 0, 0
        return _IN_PATH, at, stop
    cookies = facts.cookies
    if not cookies:
        return _NO_SESSION, 0, 0
    return cookie_span(cookies, rule.session_cookie or settings.read_session_cookie())


def session_text(
    facts: RequestFacts, settings: LbSettings, k: int, at: int, stop: int
) -> str | None:
    """The session id that ``session_span`` answered ``(k, at, stop)`` for, as text (None for
    ``NO_SESSION``): the plan asks for it when ``k`` is ``JK_ROUTE``, ``IN_PATH`` or
    ``SEVERAL``, so the span it already has is not scanned for again."""
    if k >= 0:
        return facts.cookies[k][at:stop].decode("latin-1")
    if k == _NO_SESSION:
        return None
    if k == _JK_ROUTE:
        return "." + (facts.route_override or "")  # JK_ROUTE only when it is set
    if k == _IN_PATH:
        return facts.uri[at:stop].decode("latin-1")
    # SEVERAL: joined from the first value on (mod_jk bug 44116)
    key = _cookie_bytes(facts.rule.session_cookie or settings.read_session_cookie())
    return _joined(facts.cookies, key, at) or None


def session_id(facts: RequestFacts, settings: LbSettings) -> str | None:
    """The request's session id, or None when the request has none (or must not be sticky).

    An empty value counts as none. The rule's ``session_cookie``/``session_path`` replace the
    lb's; ``sticky_session=false`` and the rule's ``sticky_ignore`` skip the lookup entirely.
    """
    k, at, stop = session_span(facts, settings)
    return session_text(facts, settings, k, at, stop)


def path_parameter(uri: bytes, name: str) -> str | None:
    """Value of the first ``name=`` in ``uri`` (the raw path, as bytes) that has something
    after the ``=``, decoded as latin-1.

    ``name`` includes its leading ``;`` (``;jsessionid``) and is case-sensitive. The value ends
    at the first ``?``, ``;`` or ``/``; it may come out empty (``;jsessionid=/x``), which the
    caller treats as no session.
    """
    at, stop = path_span(uri, name)
    return uri[at:stop].decode("latin-1") if at >= 0 else None


def path_span(uri: bytes, name: str) -> tuple[int, int]:
    """``path_parameter``'s scan, answered as offsets: ``(at, stop)``, the value being
    ``uri[at:stop]`` (maybe empty), or ``(-1, -1)`` when there is no such parameter."""
    global _path_key
    _path_key = _keyed(name, _path_key)
    key = _path_key[1]
    if not key:
        return -1, -1
    p = uri  # compiled: a C pointer to the bytes (sticky.pxd)
    n = len(uri)
    start = _find(uri, p, n, key, 0)
    while start >= 0:
        after = start + len(key)
        if after + 1 < n and p[after] == _EQUALS:  # "=" and something after it
            stop = after + 1
            while stop < n and p[stop] not in (_QUESTION, _SEMICOLON, _SLASH):
                stop += 1
            return after + 1, stop
        start = _find(uri, p, n, key, start + 1)
    return -1, -1


def cookie_value(headers: Sequence[bytes], name: str) -> str | None:
    """Every value of cookie ``name`` across ``headers`` (Cookie header values, as bytes),
    joined by ``;``, decoded as latin-1.

    The name must start the header or follow ``;``, ``,`` or whitespace; whitespace may sit
    between the name and ``=``; the value must not be empty right after the ``=`` and ends at
    ``;`` or ``,``; one pair of surrounding double quotes is removed.
    """
    key = _cookie_bytes(name)
    return _joined(headers, key, 0) if key else None


def _joined(headers: Sequence[bytes], key: bytes, first: int) -> str | None:
    """``cookie_value``'s scan for cookie ``key`` from header ``headers[first]`` on
    (``session_text`` starts at the header where ``cookie_span`` found the first of several
    values), the headers before it left out."""
    count = 0
    one: str | None = None
    found: list[str] | None = None
    for k in range(first, len(headers)):
        header = headers[k]
        p = header  # compiled: a C pointer to the bytes (sticky.pxd)
        n = len(header)
        at, stop = _next_value(header, p, n, key, 0)
        while at >= 0:
            # one pair of quotes is removed (by offsets: only the value is decoded)
            begin, end = _unquoted(p, at, stop)
            value = header[begin:end].decode("latin-1")
            count += 1
            if count == 1:
                one = value  # the common case: one value, no list
            elif found is None:
                found = [one, value]  # type: ignore[list-item]  # one is set
            else:
                found.append(value)
            at, stop = _next_value(header, p, n, key, stop)
    if found is not None:
        return ";".join(found)
    return one


def cookie_span(headers: Sequence[bytes], name: str) -> tuple[int, int, int]:
    """``cookie_value``'s scan, answered as offsets when it finds one value: ``(k, at,
    stop)``, the value (quotes removed) being ``headers[k][at:stop]``. ``(NO_SESSION, 0, 0)``
    when it finds none or an empty one; ``(SEVERAL, k, 0)`` when it finds several (joined by
    ``session_text``, mod_jk bug 44116), the first in ``headers[k]``."""
    key = _cookie_bytes(name)
    if not key:
        return _NO_SESSION, 0, 0
    found = -1
    start = end = 0
    for k in range(len(headers)):
        header = headers[k]
        p = header  # compiled: a C pointer to the bytes (sticky.pxd)
        n = len(header)
        at, stop = _next_value(header, p, n, key, 0)
        while at >= 0:
            if found >= 0:
                return _SEVERAL, found, 0
            found = k
            start, end = _unquoted(p, at, stop)
            at, stop = _next_value(header, p, n, key, stop)
    if found < 0 or start == end:
        return _NO_SESSION, 0, 0
    return found, start, end


def _cookie_bytes(name: str) -> bytes:
    """The bytes cookie ``name`` is found as (``_keyed``'s cache of the last name asked)."""
    global _cookie_key
    _cookie_key = _keyed(name, _cookie_key)
    return _cookie_key[1]


def _unquoted(p: bytes, at: int, stop: int) -> tuple[int, int]:
    """The offsets of the value ``p[at:stop]`` without one pair of surrounding quotes."""
    if stop - at > 1 and p[at] == _QUOTE and p[stop - 1] == _QUOTE:
        return at + 1, stop - 1
    return at, stop


def _keyed(name: str, last: tuple[str, bytes]) -> tuple[str, bytes]:
    """``last`` when it is ``name``'s (the same object), else ``name`` and its bytes."""
    return last if last[0] is name else (name, _encoded(name))


def _encoded(name: str) -> bytes:
    """``name`` as the bytes it is found as (latin-1), or b"" when none are (found nowhere)."""
    if not name:
        return b""
    try:
        return name.encode("latin-1")
    except UnicodeEncodeError:
        return b""


def _next_value(header: bytes, p: bytes, n: int, key: bytes, start: int) -> tuple[int, int]:
    """The offsets (value, end) of the next value of cookie ``key`` in ``header`` (``p``: its
    bytes, ``n`` of them) found at or after ``start``, or (-1, -1): the scan ``cookie_value``
    describes. A match resumes the search at the end of its value (the caller passes it as
    ``start``), a miss one byte after where it began. Whitespace is C isspace() (SP and
    9-13): what mod_jk accepts before a cookie name and around its ``=``. (A hand-written
    scan rather than a regex: compiled, it is a loop over the bytes in C, where the regex cost
    ~4k instructions a sticky request.)"""
    size = len(key)
    i = _find(header, p, n, key, start)
    while i >= 0:
        c = p[i - 1] if i > 0 else _SEMICOLON
        if c in (_SEMICOLON, _COMMA, _SP) or 9 <= c <= 13:
            at = i + size
            while at < n and (p[at] == _SP or 9 <= p[at] <= 13):
                at += 1
            if at + 1 < n and p[at] == _EQUALS:  # "=" and something after it
                at += 1
                stop = at
                while stop < n and p[stop] != _SEMICOLON and p[stop] != _COMMA:
                    stop += 1
                return at, stop
        i = _find(header, p, n, key, i + 1)
    return -1, -1


def _find(header: bytes, p: bytes, n: int, key: bytes, i: int) -> int:
    """The offset of the first ``key`` at or after ``i`` in ``header`` (``p``: its bytes,
    ``n`` of them), or -1."""
    if _PURE:
        return header.find(key, i)
    # compiled: libc's memchr finds each place the name's first byte is, memcmp compares the
    # rest (sticky.pxd): for a name of a few bytes in a header of a few dozen, cheaper than
    # memmem's set-up (~150 instructions)
    q = key
    size = len(key)
    last = n - size  # the last offset the name fits at
    while i <= last:
        at = _memchr(p + i, q[0], last - i + 1)  # type: ignore[name-defined,operator]  # noqa: F821
        if not at:
            return -1
        i = at - p
        if _memcmp(at + 1, q + 1, size - 1) == 0:  # type: ignore[name-defined,operator]  # noqa: F821
            return i
        i += 1
    return -1


def route_start(data: bytes, at: int, stop: int) -> int:
    """Where the route of the one id ``data[at:stop]`` begins (just after its first ``.``),
    or -1 when it has no dot (``session_routes`` for an id as bytes)."""
    p = data  # compiled: a C pointer to the bytes (sticky.pxd)
    for i in range(at, stop):
        if p[i] == _DOT:
            return i + 1
    return -1


def same_bytes(data: bytes, at: int, stop: int, key: bytes | None) -> bool:
    """``data[at:stop] == key``, without the slice; a ``key`` of None equals nothing."""
    if key is None or stop - at != len(key):
        return False
    if _PURE:
        return data.startswith(key, at)
    p = data  # compiled: C pointers to the bytes, compared by libc's memcmp (sticky.pxd)
    q = key
    return _memcmp(p + at, q, stop - at) == 0  # type: ignore[name-defined,operator,no-any-return]  # noqa: F821


def session_routes(session: str) -> list[str]:
    """Routes named by a session id, in order: per ``;``-separated id, the text after its
    first ``.``; ids without a dot are skipped (``ABC.dc1.n1`` names ``dc1.n1``)."""
    if ";" not in session:
        # one id, the common case: its route without the lists split and partition make
        dot = session.find(".")
        return [session[dot + 1 :]] if dot >= 0 else []
    routes = []
    for part in session.split(";"):
        _, dot_, route = part.partition(".")
        if dot_:
            routes.append(route)
    return routes
