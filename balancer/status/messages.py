"""What the status worker reads and answers: requests, responses, parameters, errors.

``StatusRequest`` is a plain value the wiring builds from the data plane's request (headers in
the data plane's form: a tuple of ``(name, value)`` bytes pairs); ``StatusResponse`` is what the
wiring turns into a ``LocalResponse`` (see ``balancer.status.adapter``).

Parameters are mod_jk's (reference modjk.md §5.1): from the query string of a GET, from the
``application/x-www-form-urlencoded`` body of a POST. They are percent-decoded; the first of
repeated names wins. mod_jk masks ``<>?"`` with ``@``; pyjk escapes every value where it is
written instead, so nothing needs masking here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

# mod_jk's messages (§5.2, §9.8), kept word for word: clients parse them.
ACTION_FINISHED = "Action finished"
ACCESS_DENIED = "Access denied."
READ_ONLY = "This command is not allowed in read only mode."
INVALID_COMMAND = "Invalid command."
INVALID_MIME = "Invalid mime type."
NO_WORKER = "NULL or EMPTY worker param"
EMPTY_SUB_WORKER = "EMPTY sub worker param"
NO_SUB_WORKER = "NULL or EMPTY sub_worker param"
UNKNOWN_WORKER = "Could not find given worker"
UNKNOWN_SUB_WORKER = "could not find sub worker"
NO_SUB_WORKERS = "worker type has no sub workers"
NO_WILDCARD = "wildcard not allowed in sub worker for this command"
RECOVER_FAILED = "Marking worker for recovery failed"
# pyjk's own
NEEDS_POST = "State changes need POST with a token."
BAD_TOKEN = "Access denied: state changes need a valid csrf field or bearer token."
CROSS_SITE = "Access denied: cross-site requests may not change state."
FORM_ONLY = "POST bodies must be application/x-www-form-urlencoded."
METHOD = "Only GET, HEAD and POST are allowed."
TOO_MANY = "Too many parameters."

COMMANDS = ("list", "show", "edit", "update", "reset", "recover", "version", "dump")
CHANGES = frozenset({"update", "reset", "recover"})  # need POST + a token
READ_ONLY_REFUSED = frozenset({"edit", "update", "reset", "recover"})
WORKER_NEEDED = frozenset({"show", "edit", "update", "reset", "recover"})
MIMES = ("html", "xml", "txt", "prop", "json", "prometheus")

# opt bits (§5.1)
OPT_NO_MEMBERS = 0x1
OPT_NO_MAPS = 0x2
OPT_NO_LEGEND = 0x4
OPT_NO_LB = 0x8
OPT_NO_AJP = 0x10
OPT_READ_ONLY = 0x20
OPT_NO_LB_CONF = 0x40
OPT_NO_LB_SUMMARY = 0x80
OPT_NO_AJP_CONF = 0x100

MAX_PARAMS = 256
MAX_REFRESH = 86400  # s
_INT = re.compile(r"[0-9]{1,9}")
_HEX = re.compile(r"0[xX][0-9a-fA-F]{1,8}")


class StatusError(Exception):
    """A refused request: the HTTP status and mod_jk's message (or pyjk's where mod_jk has
    none); ``headers`` are added to the response (``Allow`` for 405)."""

    def __init__(
        self, status: int, message: str, headers: tuple[tuple[str, str], ...] = ()
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


@dataclass(frozen=True, slots=True)
class StatusRequest:
    """One request to the status worker.

    ``path``: the request path without the query (links and form actions point at it);
    ``query``: the raw query string without ``?``; ``headers``: end-to-end fields as the data
    plane keeps them; ``client_ip``: already resolved through trusted proxies; ``user``: a
    name the front end authenticated, for the ``user`` directive (pyjk authenticates none by
    itself, so with a ``user`` list set everybody is refused, as mod_jk does without one).
    """

    method: str
    path: str
    query: str = ""
    headers: Sequence[tuple[bytes, bytes]] = ()
    body: bytes = b""
    client_ip: str = ""
    user: str | None = None

    def header(self, name: str) -> str | None:
        want = name.lower().encode("latin-1")
        for n, v in self.headers:
            if n.lower() == want:
                return v.decode("latin-1")
        return None

    @property
    def bearer(self) -> str | None:
        """The token of an ``Authorization: Bearer <token>`` header, if any."""
        value = self.header("authorization")
        if value is None:
            return None
        scheme, _, token = value.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return token.strip()


@dataclass(frozen=True, slots=True)
class StatusResponse:
    status: int
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Params:
    """The parameters of one request; ``values`` holds every name (first value wins)."""

    values: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Params:
        try:
            pairs = parse_qsl(
                text, keep_blank_values=True, max_num_fields=MAX_PARAMS, errors="replace"
            )
        except ValueError:
            raise StatusError(400, TOO_MANY) from None
        values: dict[str, str] = {}
        for name, value in pairs:
            values.setdefault(name, value)
        return cls(values)

    def get(self, name: str) -> str | None:
        return self.values.get(name)

    @property
    def cmd(self) -> str:
        return self.values.get("cmd") or "list"

    @property
    def mime(self) -> str:
        return self.values.get("mime") or "html"

    @property
    def worker(self) -> str | None:
        return self.values.get("w")

    @property
    def sub(self) -> str | None:
        return self.values.get("sw")

    @property
    def opt(self) -> int:
        return parse_count(self.values.get("opt"), 0)

    @property
    def refresh(self) -> int:
        return min(parse_count(self.values.get("re"), 0), MAX_REFRESH)

    @property
    def origin(self) -> str:
        """``from``: the view to go back to after a change (list or show)."""
        return "show" if self.values.get("from") == "show" else "list"


def parse_count(text: str | None, default: int) -> int:
    """A non-negative int (decimal, or 0x hex for ``opt``); anything else is ``default``, as
    mod_jk's atoi makes it 0 (ignoring a bad refresh or option is harmless)."""
    if text is None:
        return default
    text = text.strip()
    if _INT.fullmatch(text):
        return int(text)
    if _HEX.fullmatch(text):
        return int(text, 16)
    return default
