"""Reading the session id of a request and the routes it names (reference modjk.md §3.5).

Pure string work, kept apart from member choice so every quirk can be tested on its own:

- ``JK_ROUTE`` (``RequestFacts.route_override``) wins and stands for the id ``.<route>``;
- then the path parameter: the first ``<session_path>=`` anywhere in the forwarded URI, the
  value running to the first ``?``, ``;`` or ``/``;
- then cookies: every ``<session_cookie>=value`` in every Cookie header, in order, joined by
  ``;`` (multiple JSESSIONID cookies, mod_jk bug 44116);
- the route of one id is what follows its *first* ``.`` (the docs say "after a dot"; the code
  takes the first, reference §8).

The route is untrusted client input. It is only ever compared with configured routes and
domains; it never names a host.
"""

from __future__ import annotations

from collections.abc import Iterable

from balancer.lb.decisions import RequestFacts
from balancer.lb.settings import LbSettings


def session_id(facts: RequestFacts, settings: LbSettings) -> str | None:
    """The request's session id, or None when the request has none (or must not be sticky).

    An empty value counts as none. The rule's ``session_cookie``/``session_path`` replace the
    lb's; ``sticky_session=false`` and the rule's ``sticky_ignore`` skip the lookup entirely.
    """
    rule = facts.rule
    if not settings.sticky_session or rule.sticky_ignore:
        return None
    if facts.route_override:
        return "." + facts.route_override
    value = path_parameter(facts.uri, rule.session_path or settings.session_path)
    if value is None:
        # mod_jk consults cookies only when no path parameter was found at all: an empty
        # ";jsessionid=" value hides the cookie, and the request then has no session.
        cookies = facts.cookies
        if not cookies:
            return None
        value = cookie_value(cookies, rule.session_cookie or settings.session_cookie)
    return value or None


def path_parameter(uri: str, name: str) -> str | None:
    """Value of the first ``name=`` in ``uri`` that has something after the ``=``.

    ``name`` includes its leading ``;`` (``;jsessionid``) and is case-sensitive. The value ends
    at the first ``?``, ``;`` or ``/``; it may come out empty (``;jsessionid=/x``), which the
    caller treats as no session.
    """
    if not name:
        return None
    start = uri.find(name)
    while start >= 0:
        after = start + len(name)
        if uri.startswith("=", after) and after + 1 < len(uri):
            value = uri[after + 1 :]
            for stop in "?;/":
                cut = value.find(stop)
                if cut >= 0:
                    value = value[:cut]
            return value
        start = uri.find(name, start + 1)
    return None


def cookie_value(headers: Iterable[str], name: str) -> str | None:
    """Every value of cookie ``name`` across ``headers`` (Cookie header values), joined by ``;``.

    The name must start the header or follow ``;``, ``,`` or whitespace; whitespace may sit
    between the name and ``=``; the value must not be empty right after the ``=`` and ends at
    ``;`` or ``,``; one pair of surrounding double quotes is removed.
    """
    if not name:
        return None
    found: list[str] | None = None
    for header in headers:
        values = _cookie_values(header, name)
        if values:
            if found is None:
                found = values
            else:
                found += values
    if found is None:
        return None
    for k, value in enumerate(found):
        if len(value) > 1 and value[0] == '"' and value[-1] == '"':
            found[k] = value[1:-1]
    return ";".join(found)


def _cookie_values(header: str, name: str) -> list[str] | None:
    """The values of ``name`` in one header, in order, or None: the scan ``cookie_value``
    describes. A match resumes the search at the end of its value, a miss one character after
    where it began. Whitespace is C isspace(): what mod_jk accepts before a cookie name and
    around its ``=``. (A hand-written scan rather than a regex: compiled, it is a loop over the
    characters in C, where the regex cost ~4k instructions a sticky request.)"""
    found: list[str] | None = None
    size = len(name)
    end = len(header)
    start = header.find(name)
    while start >= 0:
        if start == 0 or header[start - 1] in ";, \t\n\v\f\r":
            at = start + size
            while at < end and header[at] in " \t\n\v\f\r":
                at += 1
            if at + 1 < end and header[at] == "=":  # "=" and something after it
                at += 1
                stop = at
                while stop < end and header[stop] != ";" and header[stop] != ",":
                    stop += 1
                if found is None:
                    found = [header[at:stop]]
                else:
                    found.append(header[at:stop])
                start = header.find(name, stop)
                continue
        start = header.find(name, start + 1)
    return found


def session_routes(session: str) -> list[str]:
    """Routes named by a session id, in order: per ``;``-separated id, the text after its
    first ``.``; ids without a dot are skipped (``ABC.dc1.n1`` names ``dc1.n1``)."""
    routes = []
    for part in session.split(";"):
        _, dot, route = part.partition(".")
        if dot:
            routes.append(route)
    return routes
