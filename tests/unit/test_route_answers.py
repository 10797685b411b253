"""The router's table of answers by raw path (balancer/dataplane/answers.py) and how the
balancer keeps it true: a reload is never served from an old table, --https-redirect still
redirects every plain request, and the requests it answers still count as routed."""

from __future__ import annotations

from pathlib import Path

from balancer.dataplane import LocalResponse, ProxyTo, Request
from balancer.dataplane.answers import RouteAnswers
from balancer.dataplane.routes import RouteDecision
from balancer.server import Balancer


def request(path: bytes, *, secure: bool = False, method: bytes = b"GET") -> Request:
    req = Request("127.0.0.1", secure)
    req.method, req.target, req.path, req.host = method, path, path, b"example.test"
    return req


class CountingRouter:
    def __init__(self) -> None:
        self.seen: list[bytes] = []
        self.table: RouteAnswers | None = None

    def __call__(self, req: Request) -> RouteDecision:
        self.seen.append(req.path)
        answer = LocalResponse(200, body=req.path)
        assert self.table is not None
        self.table.remember(req.path, answer)
        return answer


def counting_table(**kw: int) -> tuple[RouteAnswers, CountingRouter]:
    router = CountingRouter()
    table = router.table = RouteAnswers(router, **kw)
    return table, router


def test_the_router_is_asked_once_per_path_and_the_table_answers_the_rest() -> None:
    table, router = counting_table()
    answers = [table(request(p)) for p in (b"/a", b"/b", b"/a", b"/a", b"/b")]
    assert router.seen == [b"/a", b"/b"]
    assert table.hits == 3
    assert [a.body for a in answers] == [b"/a", b"/b", b"/a", b"/a", b"/b"]  # type: ignore[union-attr]


def test_an_answer_the_router_does_not_remember_is_asked_for_every_time() -> None:
    calls = []

    def router(req: Request) -> RouteDecision:
        calls.append(req.path)
        return LocalResponse(200)  # e.g. a status page: depends on more than the path

    table = RouteAnswers(router)
    table(request(b"/jkmanager"))
    table(request(b"/jkmanager"))
    assert calls == [b"/jkmanager", b"/jkmanager"] and table.hits == 0


def test_long_paths_are_not_kept_and_a_full_table_starts_over() -> None:
    table, router = counting_table(limit=2, path_limit=4)
    for p in (b"/long-path", b"/long-path"):
        table(request(p))
    assert router.seen == [b"/long-path", b"/long-path"]
    for p in (b"/a", b"/b", b"/c", b"/c", b"/a"):
        table(request(p))
    # /c found the table full (/a, /b) and emptied it: /a is asked for again
    assert router.seen[2:] == [b"/a", b"/b", b"/c", b"/a"]


def test_plain_requests_go_to_the_router_when_it_answers_every_plain_request() -> None:
    table, router = counting_table()
    table.plain_to_router = True
    table(request(b"/a", secure=True))
    table(request(b"/a", secure=True))
    table(request(b"/a"))
    assert router.seen == [b"/a", b"/a"] and table.hits == 1


WORKERS = """worker.list=lb1,lb2,jkstatus
worker.lb1.type=lb
worker.lb1.balance_workers=n1
worker.lb2.type=lb
worker.lb2.balance_workers=n1
worker.n1.type=http
worker.n1.host=127.0.0.1
worker.n1.port=18081
worker.jkstatus.type=status
"""


def balancer(tmp_path: Path, mounts_text: str, **kw: object) -> tuple[Balancer, Path]:
    workers = tmp_path / "workers.properties"
    mounts = tmp_path / "uriworkermap.properties"
    workers.write_text(WORKERS)
    mounts.write_text(mounts_text)
    return Balancer(workers, mounts, [("127.0.0.1", 0, False)], **kw), mounts  # type: ignore[arg-type]


def test_a_reload_is_never_answered_from_the_old_table(tmp_path: Path) -> None:
    b, mounts = balancer(tmp_path, "/app|/*=lb1\n")
    route = b.proxy.router
    first = route(request(b"/app/x"))
    assert type(first) is ProxyTo and first.name == "lb1"
    assert route(request(b"/app/x")) is first  # from the table
    mounts.write_text("/app|/*=lb2\n")
    assert b.reload("test")
    after = route(request(b"/app/x"))
    assert type(after) is ProxyTo and after.name == "lb2"
    assert after.engine is b.runtime.engines["lb2"]
    mounts.write_text("/other|/*=lb2\n")
    assert b.reload("test")
    gone = route(request(b"/app/x"))
    assert type(gone) is LocalResponse and gone.status == 404


def test_requests_answered_from_the_table_count_as_routed(tmp_path: Path) -> None:
    b, _ = balancer(tmp_path, "/app|/*=lb1\n")
    for _ in range(5):
        b.proxy.router(request(b"/app/x"))
    b.proxy.router(request(b"/nowhere"))
    assert b.requests == 6


def test_https_redirect_redirects_a_plain_request_whose_path_the_table_knows(
    tmp_path: Path,
) -> None:
    workers = tmp_path / "workers.properties"
    mounts = tmp_path / "uriworkermap.properties"
    workers.write_text(WORKERS)
    mounts.write_text("/app|/*=lb1\n")
    b = Balancer(
        workers,
        mounts,
        [("127.0.0.1", 0, False), ("127.0.0.1", 8443, True)],
        https_redirect=True,
    )
    route = b.proxy.router
    assert type(route(request(b"/app/x", secure=True))) is ProxyTo
    assert type(route(request(b"/app/x", secure=True))) is ProxyTo
    plain = route(request(b"/app/x"))
    assert type(plain) is LocalResponse and plain.status == 301
