"""A member's response head read from its bytes: what the relay needs, and the fields it relays.

llhttp has already checked the head (strict mode: names are tokens, no whitespace before the
colon, no CR, LF or other control bytes in values, no obs-fold), so a field is exactly
``\\r\\n<name>:`` in the head and its line ends at the next ``\\r\\n``. Rather than taking every
field through a Python callback (llhttp's ``on_header``, two Python objects and a call per
field) and building the head again, the head is searched once (``_FRAMING``) for the fields
that are not relayed as they are — framing, hop-by-hop fields and Set-Cookie — and the other
field lines go to the client as the member wrote them. Pure: bytes in, values out.
"""

from __future__ import annotations

import re

from balancer.dataplane import http11 as h

# The response fields the relay has to look at (http11.RESPONSE_HEADERS). Content-Length and
# Set-Cookie are read and relayed; the others are read (or not) and never relayed.
_FRAMING = re.compile(
    b"\r\n("
    + b"|".join(re.escape(name) for name in sorted(h.RESPONSE_HEADERS, key=len, reverse=True))
    + b"):"
)
_KEPT = frozenset({b"content-length", b"set-cookie"})


# what read_fields finds: (fields, content_length, transfer_encoding, upgrade, set_cookies,
# connection tokens); ``fields`` are the field lines relayed to the client, ``Name: value\r\n``
# each, as the member wrote them
Fields = tuple[
    bytes, int | None, bytes | None, bytes | None, list[bytes] | None, list[bytes] | None
]


def read_fields(block: bytes) -> Fields:
    """``block``: the head from the CRLF that ends the status line through the CRLF that ends
    the last field line (``b"\\r\\n"`` alone for a head without fields)."""
    content_length: int | None = None
    te: bytes | None = None
    upgrade: bytes | None = None
    set_cookies: list[bytes] | None = None
    tokens: list[bytes] | None = None
    pieces: list[bytes] | None = None
    start = 2  # the relayed lines begin after the status line's CRLF
    for m in _FRAMING.finditer(block.lower()):
        name = m.group(1)
        vstart = m.end()
        vend = block.index(b"\r\n", vstart)
        value = block[vstart:vend].strip(b" \t")  # without OWS, as llhttp's on_header gave it
        if name in _KEPT:
            if name == b"content-length":
                content_length = int(value)  # llhttp checked digits and duplicates
            elif set_cookies is None:
                set_cookies = [value]
            else:
                set_cookies.append(value)
            continue
        # not relayed: the line is cut out
        if pieces is None:
            pieces = []
        pieces.append(block[start : m.start() + 2])
        start = vend + 2
        if name == b"transfer-encoding":
            te = value
        elif name == b"connection":
            if value != b"keep-alive" and value != b"close":  # those name no field
                more = h.connection_tokens(value)
                tokens = more if tokens is None else tokens + more
        elif name == b"upgrade":
            upgrade = value
        # the other hop-by-hop fields: dropped
    if pieces is None:
        fields = block[2:]
    else:
        pieces.append(block[start:])
        fields = b"".join(pieces)
    return fields, content_length, te, upgrade, set_cookies, tokens


def drop_named(fields: bytes, named: set[bytes]) -> bytes:
    """``fields`` without the lines of the fields a Connection field named (lower case)."""
    return b"".join(
        [
            line + b"\r\n"
            for line in fields.split(b"\r\n")[:-1]
            if line.partition(b":")[0].lower() not in named
        ]
    )


def field_lines(headers: list[tuple[bytes, bytes]]) -> bytes:
    """``Name: value\\r\\n`` lines of ``headers`` (the relayed form of an AJP head's fields)."""
    return b"".join([b"%s: %s\r\n" % pair for pair in headers])


def field_pairs(fields: bytes) -> list[tuple[bytes, bytes]]:
    """(name, value) of each relayed field line, values without OWS (for the rare readers)."""
    pairs = []
    for line in fields.split(b"\r\n")[:-1]:
        name, _, value = line.partition(b":")
        pairs.append((name, value.strip(b" \t")))
    return pairs


def has_field(fields: bytes, lname: bytes) -> bool:
    """Whether the field lines hold a field named ``lname`` (lower case)."""
    return (b"\r\n" + fields.lower()).find(b"\r\n" + lname + b":") >= 0
