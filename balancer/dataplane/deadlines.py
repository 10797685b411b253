"""Which read/write deadline of an upstream connection comes due next (sans-IO).

Both upstream protocols (HTTP/1.1 in ``upstream.py``, AJP13 in ``ajp_upstream.py``) keep one
timer per connection and, when it fires, ask which of three deadlines applies next:

- reply timeout: the container has sent nothing for ``reply_timeout`` since the reply clock
  started (the HTTP side starts it when the request is complete, the AJP side at the last read:
  the caller passes the start in, or ``None`` when the clock has not started);
- socket timeout on reading: nothing read for ``socket_timeout`` since ``last_read``;
- socket timeout on sending: our writes have been held back by the container for
  ``socket_timeout`` since ``write_paused_at`` (0: not paused).

The earliest wins; on a tie the reply timeout wins over the socket timeout, and a read over a
send. Called once per timer fire, not per request.
"""

from __future__ import annotations

from balancer.lb.decisions import OutcomeKind

Deadline = tuple[float, OutcomeKind, str]


def next_deadline(
    reply_from: float | None,
    reply_timeout: float,
    last_read: float,
    socket_timeout: float,
    write_paused_at: float,
) -> Deadline | None:
    """The earliest deadline as ``(when, outcome kind, reason)``; ``None`` when none applies.

    Timeouts of 0 are off. ``when`` may already be past: the caller compares it with its ``now``
    and either fails the exchange with ``(kind, reason)`` or re-arms its timer for ``when``.
    """
    best = 0.0
    kind = OutcomeKind.READ_FAILED
    reason = ""
    if reply_timeout and reply_from is not None:
        best = reply_from + reply_timeout
        kind, reason = OutcomeKind.REPLY_TIMEOUT, "reply-timeout"
    if socket_timeout:
        t = last_read + socket_timeout
        if not best or t < best:
            best, kind, reason = t, OutcomeKind.READ_FAILED, "socket-timeout"
        if write_paused_at and write_paused_at + socket_timeout < best:
            best, kind, reason = (
                write_paused_at + socket_timeout,
                OutcomeKind.SEND_FAILED,
                "send-timeout",
            )
    if not best:
        return None
    return best, kind, reason
