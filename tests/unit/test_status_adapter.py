"""The data-plane glue: a data-plane Request in, a LocalResponse out."""

from __future__ import annotations

from balancer.config.model import Activation
from balancer.dataplane.request import Request
from balancer.dataplane.routes import LocalHandler
from balancer.status.adapter import local_handler, local_response, status_request
from balancer.status.messages import StatusResponse
from tests.unit.test_status_kit import TOKEN, Kit


def dataplane_request(method: bytes, target: bytes, headers=(), client_ip="127.0.0.1") -> Request:
    req = Request(client_ip, secure=False)
    req.method = method
    req.target = target
    path, _, query = target.partition(b"?")
    req.path, req.query = path, query
    req.headers = list(headers)
    return req


def test_status_request_copies_what_the_worker_reads():
    req = dataplane_request(b"GET", b"/jkmanager?mime=txt", [(b"Authorization", b"Bearer t")])
    sr = status_request(req, b"", user="alice")
    assert (sr.method, sr.path, sr.query, sr.client_ip, sr.user) == (
        "GET",
        "/jkmanager",
        "mime=txt",
        "127.0.0.1",
        "alice",
    )
    assert sr.bearer == "t"
    assert status_request(req, b"", client_ip="10.1.0.1").client_ip == "10.1.0.1"


def test_local_response_carries_status_type_body_and_headers():
    resp = local_response(StatusResponse(303, "text/plain", b"x", (("Location", "/jk?a=1"),)))
    assert (resp.status, resp.content_type, resp.body) == (303, b"text/plain", b"x")
    assert resp.headers == ((b"Location", b"/jk?a=1"),)


async def test_the_handler_reads_the_clocks_and_answers():
    kit = Kit()
    handler = local_handler(kit.worker, monotonic=lambda: 42.0, wall=lambda: 1_700_000_042.0)
    assert isinstance(handler, LocalHandler)
    resp = await handler.handler(dataplane_request(b"GET", b"/jkmanager?mime=txt"), b"")
    assert resp.status == 200
    assert b"Time: datetime=20231114221402 tz=UTC unix=1700000042" in resp.body
    assert (b"X-Frame-Options", b"DENY") in resp.headers


async def test_the_handler_applies_a_posted_change_with_the_bearer_token():
    kit = Kit()
    handler = local_handler(kit.worker)
    req = dataplane_request(
        b"POST",
        b"/jkmanager",
        [
            (b"Content-Type", b"application/x-www-form-urlencoded"),
            (b"Authorization", b"Bearer " + TOKEN.encode()),
        ],
    )
    resp = await handler.handler(req, b"cmd=update&w=lb&sw=n2&vwa=s&mime=txt")
    assert resp.status == 200
    assert kit.lb.member("n2").activation is Activation.STOPPED


async def test_the_handler_can_resolve_the_client_address():
    kit = Kit()
    handler = local_handler(kit.worker, client_ip=lambda req: "192.0.2.9")
    resp = await handler.handler(dataplane_request(b"GET", b"/jkmanager?mime=txt"), b"")
    assert resp.status == 403
