"""Session ids: `<32 uppercase hex>.<route>`, the shape Tomcat and mod_jk agree on.

The random part (128 bits from `secrets`) is the secret that names a session; the route after the
**first** dot only tells the balancer which node to send the request to (tomcat-cluster.md §5.1,
modjk.md §8). A route change (failover takeover) keeps the random part and swaps the route, so
the store keys sessions by the random part alone.
"""

from __future__ import annotations

import re
import secrets

RANDOM_BYTES = 16
RANDOM_HEX_CHARS = 2 * RANDOM_BYTES
# mod_jk keeps routes in 64-byte shared-memory strings (modjk.md §1.1): 63 characters fit.
MAX_ROUTE_LENGTH = 63

_RANDOM_RE = re.compile(rf"[0-9A-F]{{{RANDOM_HEX_CHARS}}}")
# Routes travel in cookies and URL path parameters: keep them to token characters. Dots are
# allowed inside (a mod_jk route `domain.member` derives its domain from the part before them).
_ROUTE_RE = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*")


def new_random_part() -> str:
    """A fresh random part: 32 uppercase hex characters (128 bits from the OS CSPRNG)."""
    return secrets.token_hex(RANDOM_BYTES).upper()


AUTO_ROUTE = "auto"  # `--route auto`: pick one (auto_route)


def auto_route() -> str:
    """A fresh route for `--route auto`: "w" and 8 hex digits from `secrets`.

    Short and valid as a jvmRoute; 32 random bits make a clash in one cluster unlikely, and a
    balancer refuses a second live member with a route already in use (balancer/cluster_members).
    Stable for the process's life: chosen once at start."""
    return "w" + secrets.token_hex(4)


def check_route(route: object) -> str:
    """Return `route` if it can be a session route, else raise ValueError saying why."""
    if not isinstance(route, str):
        raise TypeError(f"session route: expected a str, found {type(route).__name__}")
    if not route or len(route) > MAX_ROUTE_LENGTH:
        raise ValueError(
            f"session route {route!r}: expected 1 to {MAX_ROUTE_LENGTH} characters, "
            f"found {len(route)}"
        )
    if not _ROUTE_RE.fullmatch(route):
        raise ValueError(
            f"session route {route!r}: expected letters, digits, '_' or '-', "
            "in parts joined by single dots"
        )
    return route


def make_session_id(random_part: str, route: str) -> str:
    """Join a random part and a route into a full session id."""
    if not _RANDOM_RE.fullmatch(random_part):
        raise ValueError(
            f"session id random part {random_part!r}: expected {RANDOM_HEX_CHARS} "
            "uppercase hex characters"
        )
    return f"{random_part}.{check_route(route)}"


def split_session_id(session_id: str) -> tuple[str, str | None] | None:
    """Split `<random>.<route>` into its parts, or None if it is not a session id we issue.

    The route is everything after the first dot (None when there is no dot). Ids that do not
    have our random part's exact shape are not ours: callers treat them as "no session".
    """
    random_part, dot, route = session_id.partition(".")
    if not _RANDOM_RE.fullmatch(random_part):
        return None
    if not dot:
        return random_part, None
    if len(route) > MAX_ROUTE_LENGTH or not _ROUTE_RE.fullmatch(route):
        return None
    return random_part, route


def random_part_of(session_id: str) -> str:
    """The random part of a well-formed session id; ValueError for anything else."""
    parts = split_session_id(session_id)
    if parts is None:
        raise ValueError(
            f"session id {session_id!r}: expected {RANDOM_HEX_CHARS} uppercase hex "
            "characters, a dot and a route"
        )
    return parts[0]
