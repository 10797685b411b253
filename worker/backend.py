"""The `SessionBackend` seam: where a worker's sessions live beyond its own process.

Two backends sit behind it: the built-in cluster (`replication.node.ClusterNode`: every node
holds every session, deltas replicated all-to-all) and Redis (`replication.redis_store`:
sessions live in Redis or Redis Cluster, the worker keeps only the sessions of the requests in
flight). The worker owns the session *model* (sessions.py, delta.py); backends build on it and
plug into the session middleware through `SessionManager`:

- `sink` (every backend): ships a request's deltas before the response leaves; raising
  `SessionNotSaved` turns the response into a 503 with `Retry-After` (the write is not known to
  be kept, so it must not be acknowledged);
- `observer` (CommitObserver): the exactly-once ledger's replay and record hooks;
- `peers` (SessionPeers, the built-in cluster): ask other members for a session not held here;
- `loader` (SessionLoader, an external store): bring the request's sessions (and the ledger
  record of its request id) into the local store before the request runs, and forget them
  after it, so every request sees the store's current version.

The server (server.py) builds the backend the cluster file's `[store] kind` names and only
talks to it through `SessionBackend`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # a pure room: the types only
    from aiohttp import web
    from prometheus_client.registry import Collector

    from .peers import Lookup


class SessionNotSaved(Exception):
    """The backend could not keep a request's session changes (the store is unreachable, or
    did not confirm in time): the middleware answers 503 with `Retry-After`."""


class SessionLoader(Protocol):
    """An external store's side of a request (see the module docstring)."""

    async def load(self, session_ids: Sequence[str], request_id: str | None) -> Lookup:
        """Put the current version of the named sessions (and the recorded response of
        `request_id`, if any) in the local store. FOUND or ABSENT: the request may go on
        (ABSENT: none of them exists); UNKNOWN: the store could not say, answer 503."""
        ...

    def release(self, random_parts: Sequence[str]) -> None:
        """The request is over: forget the local copies no other request has open."""
        ...


class SessionBackend(Protocol):
    """What the worker's server needs of a backend: wiring, lifecycle, metrics."""

    manager_token: str  # /metrics and /cluster-manager from non-loopback clients

    def install(self, app: web.Application) -> None:
        """Plug into the app's SessionManager and add endpoints; before the app starts."""
        ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def advertise_http(self, host: str, port: int, lbfactor: int = 1) -> None: ...

    def announce_leaving(self) -> None: ...

    async def release_singletons(self) -> None:
        """Graceful stop: hand the app's singletons over (the built-in cluster elects them)."""
        ...

    def collectors(self) -> Sequence[Collector]:
        """Prometheus collectors for the worker's /metrics."""
        ...
