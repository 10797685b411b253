"""Tomcat behind pyjk's HTTPS listener: over AJP it sees a secure request, the TLS facts
mod_jk sends from mod_ssl, and the client certificate when pyjk asks for one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.test_tls_frontdoor import Tls, https, make_tls, tls_args
from tests.integration.tomcat import kit
from tests.support.certs import make_pair
from tests.support.procs import ProcGroup, port_open, wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(kit.missing() is not None, reason=str(kit.missing())),
]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[kit.TomcatStack, Tls]]:
    """One Tomcat (the JVM is heavy); named ``stack`` for the logs of a failed test."""
    tmp = tmp_path_factory.mktemp("tomcat-tls")
    site = kit.TomcatStack(ProcGroup(tmp), tmp)
    tls = make_tls(tmp)
    try:
        site.start_tomcats("n1")
        workers = kit.workers_properties(list(site.tomcats.values()))
        args = tls_args(tls, "--tls-client-ca", str(tls.ca.cert))
        site.start_balancer(workers, mounts=kit.MOUNTS, args=args)
        wait_for(lambda: port_open(tls.port), 10, what="https listener")
        yield site, tls
    finally:
        site.group.stop_all()


def fields(body: bytes) -> dict[str, str]:
    return dict(line.split("=", 1) for line in body.decode().splitlines() if "=" in line)


def test_tomcat_sees_a_secure_request_with_the_tls_facts(stack):
    _, tls = stack
    status, body, _ = https(tls, "/tls.jsp")
    assert status == 200, body
    seen = fields(body)
    assert seen["secure"] == "true" and seen["scheme"] == "https"
    assert seen["cipher"].startswith("TLS_")  # TLS 1.3 suite names, as OpenSSL gives them
    assert seen["protocol"] == "TLSv1.3"
    assert int(seen["key_size"]) >= 128
    assert seen["client_cert"] == "none"


def test_tomcat_sees_the_client_certificate_when_one_is_shown(stack):
    site, tls = stack
    client = make_pair(site.tmp / "client", "alice", ["alice.test"], tls.ca, client=True)
    status, body, _ = https(tls, "/tls.jsp", ctx=tls.context(client))
    assert status == 200, body
    assert fields(body)["client_cert"] == "CN=alice.test"
