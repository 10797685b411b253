"""Who may see and change what through the status worker (front-door-security.md, admin rows;
mod_jk §5.3 for read_only and user)."""

from __future__ import annotations

import json

import pytest

from balancer.config.model import Activation
from balancer.status import StatusRequest
from tests.unit.test_status_kit import TOKEN, Kit, header, text

DISABLE_N1 = {"cmd": "update", "w": "lb", "sw": "n1", "vwa": "d", "mime": "txt"}


def n1_activation(kit: Kit) -> Activation:
    return kit.lb.member("n1").activation


# -- who may look ---------------------------------------------------------------------------


@pytest.mark.parametrize("ip", ["127.0.0.1", "127.5.6.7", "::1", "::ffff:127.0.0.1"])
def test_loopback_clients_may_look(ip):
    assert Kit().get("mime=txt", ip=ip).status == 200


def test_a_client_in_an_allowed_network_may_look():
    resp = Kit().get("mime=txt", ip="10.1.200.3")
    assert resp.status == 200
    assert "Balancer Worker: name=lb" in text(resp)


@pytest.mark.parametrize("ip", ["10.2.0.1", "192.0.2.7", "2001:db8::1", "", "not-an-ip"])
def test_other_clients_are_refused_with_access_denied(ip):
    resp = Kit().get("mime=txt", ip=ip)
    assert resp.status == 403
    assert text(resp) == 'Result: type=ERROR message="Access denied."\n'


@pytest.mark.parametrize(
    ("mime", "expected"),
    [
        ("txt", 'Result: type=ERROR message="Access denied."'),
        ("prop", "worker.result.message=Access denied."),
        ("xml", '<jk:result\n    type="ERROR"\n    message="Access denied."/>'),
        ("html", "Result: ERROR - Access denied."),
    ],
)
def test_access_denied_answers_in_the_requested_format_and_shows_nothing_else(mime, expected):
    resp = Kit().get(f"mime={mime}", ip="192.0.2.7")
    body = text(resp)
    assert resp.status == 403
    assert expected in body
    assert "n1" not in body and "8101" not in body


def test_access_denied_in_json():
    resp = Kit().get("mime=json", ip="192.0.2.7")
    assert json.loads(resp.body) == {"result": {"type": "ERROR", "message": "Access denied."}}


def test_a_refused_client_cannot_change_anything_even_with_the_token():
    kit = Kit()
    resp = kit.post(DISABLE_N1, bearer=TOKEN, ip="192.0.2.7")
    assert resp.status == 403
    assert n1_activation(kit) is Activation.ACTIVE


def test_a_user_list_refuses_requests_without_that_user():
    kit = Kit(status={"user": ("alice",)})
    assert kit.get("mime=txt").status == 403
    assert kit.get("mime=txt", user="bob").status == 403
    assert kit.get("mime=txt", user="alice").status == 200
    assert kit.get("mime=txt", user="ALICE").status == 403


def test_user_names_may_be_compared_ignoring_case():
    kit = Kit(status={"user": ("alice",), "user_case_insensitive": True})
    assert kit.get("mime=txt", user="ALICE").status == 200


# -- how changes must arrive ----------------------------------------------------------------


@pytest.mark.parametrize("cmd", ["update", "reset", "recover"])
def test_a_get_never_changes_state(cmd):
    kit = Kit()
    kit.drive({"n1": 200})
    before = (kit.lb.member("n1").elected, n1_activation(kit))
    resp = kit.get({"cmd": cmd, "w": "lb", "sw": "n1", "vwa": "d", "mime": "txt"})
    assert resp.status == 405
    assert header(resp, "Allow") == "POST"
    assert "State changes need POST with a token." in text(resp)
    assert (kit.lb.member("n1").elected, n1_activation(kit)) == before


def test_a_post_with_the_page_csrf_token_changes_state():
    kit = Kit()
    resp = kit.post(DISABLE_N1)
    assert resp.status == 200
    assert text(resp) == 'Result: type=OK message="Action finished"\n'
    assert n1_activation(kit) is Activation.DISABLED


def test_a_post_with_the_bearer_token_changes_state():
    kit = Kit()
    resp = kit.post(DISABLE_N1, csrf=False, bearer=TOKEN)
    assert resp.status == 200
    assert n1_activation(kit) is Activation.DISABLED


@pytest.mark.parametrize(
    ("csrf", "bearer"),
    [
        (False, None),  # no token at all
        (False, "wrong-token"),
        (True, "wrong-token"),  # a wrong bearer is not rescued by the form field
    ],
)
def test_a_post_without_a_valid_token_is_refused(csrf, bearer):
    kit = Kit()
    resp = kit.post(DISABLE_N1, csrf=csrf, bearer=bearer)
    assert resp.status == 403
    assert "Access denied" in text(resp)
    assert n1_activation(kit) is Activation.ACTIVE


def test_a_forged_csrf_field_is_refused():
    kit = Kit()
    resp = kit.post({**DISABLE_N1, "csrf": "x" * 43}, csrf=False)
    assert resp.status == 403
    assert n1_activation(kit) is Activation.ACTIVE


def test_another_process_token_is_not_accepted():
    first, second = Kit(), Kit()
    assert first.worker.csrf != second.worker.csrf
    resp = second.post({**DISABLE_N1, "csrf": first.worker.csrf}, csrf=False)
    assert resp.status == 403


def test_no_bearer_is_accepted_when_no_token_is_configured():
    kit = Kit(status={"token": ""})
    for bearer in ("", "x", TOKEN):
        assert kit.post(DISABLE_N1, csrf=False, bearer=bearer).status == 403
    assert n1_activation(kit) is Activation.ACTIVE


def test_a_cross_site_form_post_is_refused_even_with_the_csrf_token():
    kit = Kit()
    resp = kit.post(DISABLE_N1, headers=((b"sec-fetch-site", b"cross-site"),))
    assert resp.status == 403
    assert n1_activation(kit) is Activation.ACTIVE
    same = kit.post(DISABLE_N1, headers=((b"sec-fetch-site", b"same-origin"),))
    assert same.status == 200


def _post_with_query(kit: Kit, query: str, body: bytes, *headers: tuple[bytes, bytes]):
    return kit.send(
        StatusRequest(
            "POST",
            "/jkmanager",
            query,
            ((b"content-type", b"application/x-www-form-urlencoded"), *headers),
            body,
            "127.0.0.1",
        )
    )


def test_parameters_in_the_query_of_a_post_are_read_as_mod_jk_reads_them():
    # issue 18: ``curl -X POST ".../jkmanager?cmd=update&w=lb&sw=n1&vwa=d"`` answered the
    # list page with 200 and changed nothing
    kit = Kit()
    resp = _post_with_query(
        kit, "cmd=update&w=lb&sw=n1&vwa=d&mime=txt", f"csrf={kit.worker.csrf}".encode()
    )
    assert resp.status == 200
    assert n1_activation(kit) is Activation.DISABLED


def test_a_query_only_post_with_a_bearer_token_applies_the_change():
    kit = Kit()
    bearer = (b"authorization", b"Bearer " + TOKEN.encode())
    resp = _post_with_query(kit, "cmd=update&w=lb&sw=n1&vwa=d&mime=txt", b"", bearer)
    assert resp.status == 200
    assert n1_activation(kit) is Activation.DISABLED


def test_a_query_only_post_still_needs_the_token():
    kit = Kit()
    resp = _post_with_query(kit, "cmd=update&w=lb&sw=n1&vwa=d&mime=txt", b"")
    assert resp.status == 403
    assert n1_activation(kit) is Activation.ACTIVE


def test_the_body_wins_over_the_query_where_both_name_a_parameter():
    kit = Kit()
    resp = _post_with_query(
        kit,
        "cmd=update&w=lb&sw=n1&vwa=d&mime=txt",
        f"csrf={kit.worker.csrf}&vwa=s".encode(),
    )
    assert resp.status == 200
    assert n1_activation(kit) is Activation.STOPPED


def test_a_post_body_must_be_form_urlencoded():
    kit = Kit()
    resp = kit.post(DISABLE_N1, content_type=b"application/json")
    assert resp.status == 415
    assert n1_activation(kit) is Activation.ACTIVE


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "OPTIONS"])
def test_other_methods_are_not_allowed(method):
    resp = Kit().get("mime=txt", method=method)
    assert resp.status == 405
    assert header(resp, "Allow") == "GET, HEAD, POST"


def test_head_is_answered_like_get():
    kit = Kit()
    assert kit.get("mime=txt", method="HEAD").body == kit.get("mime=txt").body


# -- read only --------------------------------------------------------------------------------


@pytest.mark.parametrize("cmd", ["update", "reset", "recover", "edit"])
def test_read_only_refuses_every_change(cmd):
    kit = Kit(status={"read_only": True})
    resp = kit.post({**DISABLE_N1, "cmd": cmd}, bearer=TOKEN)
    assert resp.status == 403
    assert text(resp) == (
        'Result: type=ERROR message="This command is not allowed in read only mode."\n'
    )
    assert n1_activation(kit) is Activation.ACTIVE


def test_read_only_still_shows_everything():
    kit = Kit(status={"read_only": True})
    for cmd in ("list", "show", "version", "dump"):
        assert kit.get({"cmd": cmd, "w": "lb", "mime": "txt"}).status == 200


def test_the_read_only_view_option_refuses_changes_too():
    kit = Kit()
    resp = kit.post({**DISABLE_N1, "opt": 0x20})
    assert resp.status == 403
    assert n1_activation(kit) is Activation.ACTIVE


# -- answers --------------------------------------------------------------------------------


@pytest.mark.parametrize("mime", ["html", "xml", "txt", "prop", "json", "prometheus"])
def test_every_answer_forbids_caching_sniffing_and_framing(mime):
    resp = Kit().get(f"mime={mime}")
    assert header(resp, "Cache-Control") == "no-cache"
    assert header(resp, "Pragma") == "no-cache"
    assert header(resp, "X-Content-Type-Options") == "nosniff"
    assert header(resp, "X-Frame-Options") == "DENY"


def test_html_carries_a_strict_content_security_policy():
    csp = header(Kit().get(""), "Content-Security-Policy")
    assert csp is not None
    for part in (
        "default-src 'none'",
        "style-src 'unsafe-inline'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ):
        assert part in csp
    assert "script-src" not in csp


def test_error_answers_carry_the_security_headers_too():
    resp = Kit().get("", ip="192.0.2.7")
    assert resp.status == 403
    assert header(resp, "X-Frame-Options") == "DENY"
    assert header(resp, "Content-Security-Policy") is not None


def test_each_change_writes_one_audit_line(caplog):
    kit = Kit()
    with caplog.at_level("INFO", logger="pyjk.audit"):
        kit.post(
            {"cmd": "update", "w": "lb", "sw": "n1", "vwa": "d", "vwf": "3", "mime": "txt"},
            ip="10.1.0.9",
        )
    lines = [r.getMessage() for r in caplog.records if r.name == "pyjk.audit"]
    assert len(lines) == 2
    assert all("client=10.1.0.9" in line and "cmd=update" in line for line in lines)
    assert any("member=n1 attribute=activation before=ACT after=DIS" in line for line in lines)
    assert any("attribute=lbfactor before=1 after=3" in line for line in lines)


def test_refused_and_unchanged_requests_write_no_audit_line(caplog):
    kit = Kit()
    with caplog.at_level("INFO", logger="pyjk.audit"):
        kit.get(DISABLE_N1)
        kit.post(DISABLE_N1, csrf=False)
        kit.post({**DISABLE_N1, "vwa": "a"})  # already Active
    assert not [r for r in caplog.records if r.name == "pyjk.audit"]
