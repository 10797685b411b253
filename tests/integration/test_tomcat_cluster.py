"""A two-node Tomcat cluster (DeltaManager, multicast membership on loopback) behind pyjk: the
node serving a session stops, the session lives on at the other one, and Tomcat's
JvmRouteBinderValve gives it a cookie naming its new route — the mod_jk + Tomcat cluster
pattern, with pyjk in mod_jk's place."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.integration.conftest import http_get
from tests.integration.tomcat import kit
from tests.support.procs import ProcGroup, wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(kit.missing() is not None, reason=str(kit.missing())),
]

Site = kit.TomcatStack


@pytest.fixture
def stack(tmp_path) -> Iterator[Site]:
    site = Site(ProcGroup(tmp_path), tmp_path)
    try:
        site.start_tomcats("n1", "n2", cluster=True)
        site.start_pyjk()
        yield site
    finally:
        site.group.stop_all()


def counter(site: Site, session: str | None = None) -> tuple[dict[str, str], list[str]]:
    headers = {"Cookie": f"JSESSIONID={session}"} if session else {}
    status, hdrs, body = http_get(f"{site.url}/counter.jsp", headers)
    assert status == 200, body
    fields = dict(part.split("=", 1) for part in body.decode().split())
    return fields, hdrs.get_all("Set-Cookie") or []


def members_joined(site: Site) -> bool:
    """Both nodes logged the other's arrival in the cluster."""
    return all("Replication member added" in t.output() for t in site.tomcats.values())


def test_a_session_survives_the_stop_of_its_node_with_a_cookie_for_the_new_route(
    stack: Site,
) -> None:
    wait_for(lambda: members_joined(stack), 20, what="the two Tomcats to see each other")
    first, _ = counter(stack)
    sid, home = first["session"], first["node"]
    other = "n2" if home == "n1" else "n1"
    for expected in ("2", "3"):
        fields, _ = counter(stack, sid)
        assert (fields["node"], fields["count"]) == (home, expected)
    stack.tomcats[home].stop()
    started = time.monotonic()
    fields, cookies = counter(stack, sid)
    took = time.monotonic() - started
    random_part = sid.split(".", 1)[0]
    # the same session (count goes on), renamed to the survivor's route by JvmRouteBinderValve
    assert fields["node"] == other and fields["count"] == "4"
    assert fields["session"] == f"{random_part}.{other}"
    assert f"JSESSIONID={random_part}.{other}; Path=/; HttpOnly" in cookies
    assert took < 3, took
    # pyjk routes the renamed session to its new home from now on
    again, cookies = counter(stack, fields["session"])
    assert (again["node"], again["count"], cookies) == (other, "5", [])
    assert stack.member_state(home) == "ERR"
