"""The status worker through a real balancer process: every format tells the same story after
real traffic, and the change rules (POST + CSRF or bearer token, read_only, client address
through trusted proxies) hold on the wire.

No test here can come from a non-loopback address; the one that needs one goes through
``worker.trusted_proxies=127.0.0.1/32`` and an X-Forwarded-For naming a documentation address
(203.0.113.0/24): the balancer judges the client by it, and no packet goes anywhere.
"""

from __future__ import annotations

import http.client
import json
import re
import shlex
import signal
import xml.etree.ElementTree as ET
from urllib.parse import urlencode

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import Stack, http_get, wait_for

pytestmark = pytest.mark.integration

MOUNTS = "/app|/*=lb\n/jkmanager|/*=jkstatus\n/metrics=jkstatus\n"
TOKEN = "t0k3n-for-the-status-api-0123456789abcdef"
MEMBERS = ["n1", "n2", "n3"]
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
Counts = dict[str, tuple[int, int, int]]  # member -> (elected, sessions, errors)


def _start(stack: Stack, extra: str = "") -> None:
    for name in MEMBERS:
        stack.start_backend(name)
    stack.start_balancer(stack.workers_properties(MEMBERS, extra), mounts=MOUNTS)


def _call(
    stack: Stack,
    method: str,
    target: str,
    body: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, http.client.HTTPMessage, bytes]:
    """One request, redirects not followed."""
    conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=10)
    try:
        data = urlencode(body).encode() if body is not None else None
        conn.request(method, target, body=data, headers={**(headers or {})})
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


def _post(stack: Stack, form: dict[str, str], headers: dict[str, str] | None = None):
    return _call(stack, "POST", "/jkmanager", form, {**FORM, **(headers or {})})


def _served(stack: Stack, cookie: str | None = None) -> str:
    status, _, body = http_get(f"{stack.url}/app/x", {"Cookie": cookie} if cookie else {})
    assert status == 200, body[:200]
    return json.loads(body)["node"]


def _txt_members(stack: Stack) -> dict[str, dict[str, str]]:
    out = {}
    for line in stack.status_txt().splitlines():
        if line.startswith("Member: "):
            fields = dict(t.split("=", 1) for t in shlex.split(line[len("Member: ") :]))
            out[fields["name"]] = fields
    return out


def _lb_line(stack: Stack) -> str:
    (line,) = [ln for ln in stack.status_txt().splitlines() if ln.startswith("Balancer Worker:")]
    return line


def _csrf(stack: Stack) -> str:
    status, _, page = http_get(f"{stack.url}/jkmanager")
    assert status == 200
    found = re.search(rb'name="csrf" value="([^"]+)"', page)
    assert found is not None, "no csrf field on the page"
    return found.group(1).decode()


# -- the formats agree ---------------------------------------------------------------------


def _from_txt(body: bytes) -> Counts:
    out = {}
    for line in body.decode().splitlines():
        if line.startswith("Member: "):
            f = dict(t.split("=", 1) for t in shlex.split(line[len("Member: ") :]))
            out[f["name"]] = (int(f["elected"]), int(f["sessions"]), int(f["errors"]))
    return out


def _from_prop(body: bytes) -> Counts:
    props = {}
    members = []
    for line in body.decode().splitlines():
        key, _, value = line.partition("=")
        props[key] = value
        if key == "worker.lb.balance_workers":
            members.append(value)
    return {
        m: tuple(int(props[f"worker.{m}.{k}"]) for k in ("elected", "sessions", "errors"))
        for m in members
    }


def _from_xml(body: bytes) -> Counts:
    root = ET.fromstring(body)
    ns = {"jk": "http://tomcat.apache.org"}
    return {
        m.get("name"): tuple(int(m.get(k)) for k in ("elected", "sessions", "errors"))
        for m in root.iterfind("jk:balancers/jk:balancer/jk:member", ns)
    }


def _from_json(body: bytes) -> Counts:
    (lb,) = json.loads(body)["balancers"]
    return {m["name"]: (m["elected"], m["sessions"], m["errors"]) for m in lb["members"]}


def _from_prometheus(body: bytes) -> Counts:
    names = {
        "pyjk_member_requests": 0,
        "pyjk_member_requests_without_session": 1,
        "pyjk_member_errors": 2,
    }
    found: dict[str, list[int]] = {}
    for family in text_string_to_metric_families(body.decode()):
        if family.name not in names:
            continue
        for sample in family.samples:
            if sample.name.endswith("_total"):
                assert sample.labels["worker"] == "lb"
                found.setdefault(sample.labels["member"], [-1, -1, -1])[names[family.name]] = int(
                    sample.value
                )
    return {m: tuple(v) for m, v in found.items()}  # type: ignore[misc]


def test_every_format_agrees_with_the_traffic_after_a_scripted_load(stack: Stack):
    _start(stack)
    served: list[tuple[str, str]] = []  # (kind, node)
    for i in range(36):  # new sessions, and sticky ones on n2 and n1
        if i % 3 == 0:
            served.append(("sticky-n2", _served(stack, "JSESSIONID=abc.n2")))
        elif i % 9 == 1:
            served.append(("sticky-n1", _served(stack, "JSESSIONID=abc.n1")))
        else:
            served.append(("new", _served(stack)))
    n3 = stack.backends["n3"].proc
    n3.signal(signal.SIGTERM)  # not stop(): that closes the log a failure report reads
    n3.wait(10)
    served += [("new", _served(stack)) for _ in range(14)]  # n3 is dead: errors, failover
    assert len(served) == 50
    assert [n for k, n in served if k == "sticky-n2"] == ["n2"] * 12
    assert [n for k, n in served if k == "sticky-n1"] == ["n1"] * 4

    answers = {
        "txt": _from_txt(_call(stack, "GET", "/jkmanager?mime=txt")[2]),
        "prop": _from_prop(_call(stack, "GET", "/jkmanager?mime=prop")[2]),
        "xml": _from_xml(_call(stack, "GET", "/jkmanager?mime=xml")[2]),
        "json": _from_json(_call(stack, "GET", "/jkmanager?mime=json")[2]),
        "prometheus": _from_prometheus(_call(stack, "GET", "/jkmanager?mime=prometheus")[2]),
        "/metrics": _from_prometheus(_call(stack, "GET", "/metrics")[2]),
    }
    txt = answers["txt"]
    assert set(txt) == set(MEMBERS)
    for fmt, counts in answers.items():
        assert counts == txt, f"{fmt} disagrees with txt: {counts} != {txt}"
    # ... and the story is the traffic's: n1 and n2 answered every attempt they got, n3 failed
    for live in ("n1", "n2"):
        elected, sessions, errors = txt[live]
        assert elected == sum(1 for _, n in served if n == live)
        assert sessions == sum(1 for k, n in served if n == live and k == "new")
        assert errors == 0
    elected, sessions, errors = txt["n3"]
    assert errors >= 1
    assert elected == errors + sum(1 for _, n in served if n == "n3")
    members = _txt_members(stack)
    assert members["n2"]["sticky_hits"] == "12"
    assert members["n3"]["state"].startswith("ERR")
    # /metrics answers in Prometheus' text exposition format
    _, headers, _ = _call(stack, "GET", "/metrics")
    assert headers["Content-Type"].startswith("text/plain; version=")
    # without trusted proxies an X-Forwarded-For is not believed: still the loopback peer
    status, _, _ = _call(
        stack, "GET", "/jkmanager?mime=txt", headers={"X-Forwarded-For": "203.0.113.5"}
    )
    assert status == 200


# -- changes: POST with the page's CSRF token ---------------------------------------------


def test_a_post_with_the_pages_csrf_token_changes_and_a_get_changes_nothing(stack: Stack):
    _start(stack, "worker.jkstatus.read_only=false")
    csrf = _csrf(stack)
    disable = {"cmd": "update", "w": "lb", "sw": "n2", "vwa": "d", "mime": "txt"}

    status, _, body = _post(stack, disable)  # no token
    assert status == 403 and b"valid csrf field or bearer token" in body
    status, _, _ = _post(stack, {**disable, "csrf": csrf[::-1]})
    assert status == 403
    status, _, _ = _post(stack, {**disable, "csrf": csrf}, {"Sec-Fetch-Site": "cross-site"})
    assert status == 403
    assert _txt_members(stack)["n2"]["activation"] == "ACT"

    status, _, body = _post(stack, {**disable, "csrf": csrf})
    assert status == 200, body
    assert b'Result: type=OK message="Action finished"' in body
    assert _txt_members(stack)["n2"]["activation"] == "DIS"

    # from the HTML page: 303 back to the view, with a one-shot result
    status, headers, _ = _post(
        stack, {**disable, "vwa": "s", "mime": "html", "from": "list", "csrf": csrf}
    )
    assert status == 303
    location = headers["Location"]
    assert location.startswith("/jkmanager?cmd=list&result=")
    status, _, page = _call(stack, "GET", location)
    assert status == 200 and b"lb/n2 activation: DIS -&gt; STP" in page
    _, _, again = _call(stack, "GET", location)
    assert b"DIS -&gt; STP" not in again  # shown once
    assert _txt_members(stack)["n2"]["activation"] == "STP"

    # a GET naming a change is refused and changes nothing, even with the token in the query
    query = urlencode({"cmd": "update", "w": "lb", "sw": "n2", "vwa": "a", "csrf": csrf})
    status, headers, body = _call(stack, "GET", f"/jkmanager?{query}&mime=txt")
    assert status == 405 and headers["Allow"] == "POST", body
    assert _txt_members(stack)["n2"]["activation"] == "STP"
    assert "audit status change client=127.0.0.1" in stack.balancer.output()


# -- changes: the API with a bearer token -------------------------------------------------


def test_a_bearer_token_authorises_api_posts_and_a_wrong_one_is_refused(stack: Stack):
    _start(stack, f"worker.jkstatus.read_only=false\nworker.jkstatus.token={TOKEN}")
    for _ in range(6):
        _served(stack)
    good = {"Authorization": f"Bearer {TOKEN}"}
    bad = {"Authorization": f"Bearer {TOKEN[:-1]}x"}
    update = {"cmd": "update", "w": "lb", "sw": "n2", "vwa": "d", "mime": "json"}

    status, _, body = _post(stack, update, bad)
    assert status == 403 and json.loads(body)["result"]["type"] == "ERROR"
    # a wrong bearer token is refused even next to a valid csrf field
    status, _, _ = _post(stack, {**update, "csrf": _csrf(stack)}, bad)
    assert status == 403
    assert _txt_members(stack)["n2"]["activation"] == "ACT"

    status, _, body = _post(stack, update, good)
    assert status == 200, body
    assert json.loads(body)["result"] == {"type": "OK", "message": "Action finished"}
    assert _txt_members(stack)["n2"]["activation"] == "DIS"

    assert int(_txt_members(stack)["n1"]["elected"]) > 0
    status, _, _ = _post(stack, {"cmd": "reset", "w": "lb", "sw": "n1", "mime": "txt"}, good)
    assert status == 200
    members = _txt_members(stack)
    assert members["n1"]["elected"] == "0" and int(members["n3"]["elected"]) > 0

    status, _, _ = _post(stack, {"cmd": "update", "w": "lb", "vlr": "3", "mime": "txt"}, good)
    assert status == 200
    assert " retries=3 " in _lb_line(stack)
    out = stack.balancer.output()
    assert "cmd=update worker=lb member=n2 attribute=activation before=ACT after=DIS" in out
    assert "cmd=reset worker=lb member=n1" in out
    assert TOKEN not in out  # the token never reaches the logs


def test_read_only_refuses_posted_updates_and_offers_no_forms(stack: Stack):
    _start(stack, f"worker.jkstatus.read_only=true\nworker.jkstatus.token={TOKEN}")
    good = {"Authorization": f"Bearer {TOKEN}"}
    status, _, body = _post(
        stack, {"cmd": "update", "w": "lb", "sw": "n2", "vwa": "d", "mime": "txt"}, good
    )
    assert status == 403 and b"not allowed in read only mode" in body
    status, _, _ = _post(stack, {"cmd": "reset", "w": "lb", "mime": "txt"}, good)
    assert status == 403
    assert _txt_members(stack)["n2"]["activation"] == "ACT"
    status, _, page = http_get(f"{stack.url}/jkmanager")
    assert status == 200 and b"(read only)" in page
    assert b'method="post"' not in page and b'name="csrf"' not in page
    status, _, _ = _call(stack, "GET", "/jkmanager?cmd=edit&w=lb&mime=txt")
    assert status == 403


# -- the client address through a trusted proxy ---------------------------------------------


def test_a_client_behind_a_trusted_proxy_is_judged_by_its_forwarded_address(stack: Stack):
    extra = f"worker.trusted_proxies=127.0.0.1/32\nworker.jkstatus.token={TOKEN}"
    _start(stack, extra)
    outside = {"X-Forwarded-For": "203.0.113.9"}

    status, _, body = _call(stack, "GET", "/jkmanager?mime=txt", headers=outside)
    assert status == 403 and b"Access denied." in body
    status, _, _ = _call(stack, "GET", "/metrics", headers=outside)
    assert status == 403
    # a client "behind" a proxy chain: the right-most address that is not a trusted proxy
    chain = {"X-Forwarded-For": "127.0.0.1, 203.0.113.9, 127.0.0.1"}
    status, _, _ = _call(stack, "GET", "/jkmanager?mime=txt", headers=chain)
    assert status == 403
    # not even with the bearer token
    status, _, _ = _post(
        stack,
        {"cmd": "update", "w": "lb", "sw": "n2", "vwa": "d", "mime": "txt"},
        {**outside, "Authorization": f"Bearer {TOKEN}"},
    )
    assert status == 403
    assert _txt_members(stack)["n2"]["activation"] == "ACT"
    status, _, _ = _call(
        stack, "GET", "/jkmanager?mime=txt", headers={"X-Forwarded-For": "127.0.0.1"}
    )
    assert status == 200
    wait_for(lambda: "refused client=203.0.113.9" in stack.balancer.output(), 5, what="refusal log")

    # from loopback itself the token works; the edits meet the reload below
    token = {"Authorization": f"Bearer {TOKEN}"}
    for form in ({"w": "lb", "sw": "n2", "vwa": "d"}, {"w": "lb", "vlr": "3"}):
        status, _, body = _post(stack, {"cmd": "update", "mime": "txt", **form}, token)
        assert status == 200, body
    assert " retries=3 " in _lb_line(stack)

    # allow= admits that network (after a reload), and nobody else from outside
    assert stack.workers_file is not None
    stack.workers_file.write_text(
        stack.workers_properties(MEMBERS, f"{extra}\nworker.jkstatus.allow=203.0.113.0/24")
    )
    stack.balancer.signal(signal.SIGHUP)
    wait_for(lambda: "reloaded (SIGHUP)" in stack.balancer.output(), 10, what="reload")
    status, _, _ = _call(stack, "GET", "/jkmanager?mime=txt", headers=outside)
    assert status == 200
    status, _, _ = _call(
        stack, "GET", "/jkmanager?mime=txt", headers={"X-Forwarded-For": "198.51.100.7"}
    )
    assert status == 403
    # the reload kept the runtime edit of the unchanged member n2, and took the lb's settings
    # from the file again (what the page's notice says)
    assert _txt_members(stack)["n2"]["activation"] == "DIS"
    assert _lb_line(stack).count(" retries=2 ") == 1
