"""The codec's one error type."""

from __future__ import annotations


class AjpError(ValueError):
    """Bytes that are not a valid AJP/1.3 packet or message, or a message that cannot be encoded.

    The message says what was expected and what was found, e.g.
    ``SEND_HEADERS: header 3 value runs past the end of the packet (offset 212 of 200)``.
    """
