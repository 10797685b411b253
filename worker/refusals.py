"""The "cluster full" refusal: its response and its log, both built to stay quiet under load.

A node at ``max_active_sessions`` refuses every new visitor. In a soak that was ~150 refusals a
second; one warning line each buried everything else in the log (43,000 lines in 5 minutes).
``RefusalLog`` is pure (time passed in): the first refusal is logged at once, later ones are
counted and logged as one line per ``interval`` with their count.

The 503 carries ``X-Pyjk-Refusal: sessions-full`` and ``Retry-After``. With all-to-all
replication every node holds every session, so every member is full at once: the balancer
passes a response with this header to the client instead of trying the other members for it
(``balancer.lb.plan``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

REFUSAL_HEADER = "X-Pyjk-Refusal"
SESSIONS_FULL = "sessions-full"
RETRY_AFTER_S = 10
LOG_INTERVAL_S = 10.0


@dataclass
class RefusalLog:
    """Counts refusals; ``note`` answers how many to report now (None: stay quiet)."""

    interval: float = LOG_INTERVAL_S
    pending: int = field(default=0, init=False)
    total: int = field(default=0, init=False)
    _last: float | None = field(default=None, init=False)

    def note(self, now: float) -> int | None:
        self.pending += 1
        self.total += 1
        return self.due(now)

    def due(self, now: float) -> int | None:
        """The count to log when one interval has passed since the last line (or none was
        written yet); also for a periodic flush, so the last burst is not left unsaid."""
        if not self.pending or (self._last is not None and now - self._last < self.interval):
            return None
        count, self.pending, self._last = self.pending, 0, now
        return count
