"""When a failed request may be sent again: mod_jk's recovery_options plus pyjk's own limits.

mod_jk bits (reference modjk.md §2.2): 1 = no retry or failover once the backend may have
received the request; 2 = not once response headers reached the client; 4 = close the backend
connection on a client error (a data-plane matter); 8 = always retry HEAD; 16 = always retry
GET (8 and 16 override 1 and 2).

pyjk is stricter than mod_jk's default (which replays even a POST that was sent, §9.10):
- never after any byte of the response reached the client (``response_started``);
- never when the request body cannot be replayed (``replayable`` false);
- never a non-idempotent method that the backend may have received, unless the member's
  recovery_options carries pyjk's own bit ``RECOVERY_REPLAY_UNSAFE`` (0x80);
- a failed connect sent nothing, so it is always safe.
"""

from __future__ import annotations

from balancer.lb.decisions import IDEMPOTENT_METHODS, OutcomeKind

RECOVERY_NO_RETRY_AFTER_SEND = 0x01
RECOVERY_NO_RETRY_AFTER_HEADERS = 0x02
RECOVERY_CLOSE_ON_CLIENT_ERROR = 0x04
RECOVERY_ALWAYS_RETRY_HEAD = 0x08
RECOVERY_ALWAYS_RETRY_GET = 0x10
# pyjk's own bit: allow re-sending a non-idempotent request the backend may have received.
RECOVERY_REPLAY_UNSAFE = 0x80


def resend_refusal(
    method: str,
    recovery_options: int,
    kind: OutcomeKind,
    *,
    request_sent: bool,
    replayable: bool,
    response_started: bool,
) -> str | None:
    """Why the request must not be sent again (to any member), or None if it may be."""
    if response_started:
        return "the response had reached the client"
    if kind is OutcomeKind.CONNECT_FAILED:
        return None
    if not replayable:
        return "the request body cannot be replayed"
    if not request_sent:
        return None
    method = method.upper()
    if method not in IDEMPOTENT_METHODS and not recovery_options & RECOVERY_REPLAY_UNSAFE:
        return f"{method} may have reached the backend"
    always = (method == "HEAD" and recovery_options & RECOVERY_ALWAYS_RETRY_HEAD) or (
        method == "GET" and recovery_options & RECOVERY_ALWAYS_RETRY_GET
    )
    if recovery_options & RECOVERY_NO_RETRY_AFTER_SEND and not always:
        return "recovery_options 1: the backend may have the request"
    return None
