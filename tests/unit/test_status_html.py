"""The HTML page: self-contained, balanced, POST forms for every change, results after a 303."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.unit.test_lb_driver import REFUSED
from tests.unit.test_status_kit import Kit, header, text

VOID = {"meta", "input", "br", "hr", "link", "img"}


class Page(HTMLParser):
    """Checks nesting and collects links, forms and their fields."""

    def __init__(self, body: str) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.links: list[str] = []
        self.forms: list[dict[str, object]] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.feed(body)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag not in VOID:
            self.stack.append(tag)
        if tag == "a":
            self.links.append(a.get("href") or "")
        elif tag == "form":
            self.forms.append(
                {"method": a.get("method"), "action": a.get("action"), "fields": {}, "buttons": []}
            )
        elif tag in ("input", "select") and self.forms and "form" in self.stack:
            fields = self.forms[-1]["fields"]
            assert isinstance(fields, dict)
            if a.get("type") == "radio" and "checked" not in a:
                fields.setdefault(a.get("name"), None)
            else:
                fields[a.get("name")] = a.get("value")
        elif tag == "button" and self.forms and "form" in self.stack and a.get("name"):
            buttons = self.forms[-1]["buttons"]
            assert isinstance(buttons, list)
            buttons.append((a.get("name"), a.get("value")))

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:]}")
            return
        self.stack.pop()

    def posts(self) -> list[dict[str, str]]:
        return [f["fields"] for f in self.forms if f["method"] == "post"]  # type: ignore[misc]


def page(resp) -> Page:
    return Page(text(resp))


def test_the_page_is_self_contained_and_balanced():
    p = page(Kit().get(""))
    assert not p.errors and not p.stack
    body = text(Kit().get(""))
    assert body.startswith("<!DOCTYPE html>")
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in body
    assert "<style>" in body
    assert not [t for t, _ in p.tags if t in ("script", "img", "iframe", "link")]
    assert not [a for _, a in p.tags if "src" in a or any(k.startswith("on") for k in a)]
    assert all(link.startswith("/jkmanager") for link in p.links)


def test_wide_tables_scroll_inside_a_wrapper():
    body = text(Kit().get(""))
    assert ".scroll{overflow-x:auto" in body
    assert body.count("<table") == len(re.findall(r'<div class="scroll"><table[ >]', body))


def test_the_page_says_changes_are_not_persisted_and_has_a_legend():
    body = text(Kit().get(""))
    assert "not persisted" in body
    assert "<h2>Legend" in body
    for column in ("Live", "Drained", "SH", "SM", "FO", "Acc", "Sess", "Rs", "LE"):
        assert f"<th>{column}</th>" in body


def test_every_change_is_a_post_form_with_the_csrf_token():
    kit = Kit()
    kit.drive({"n1": REFUSED}, cookie="JSESSIONID=a.n1")
    p = page(kit.get(""))
    for link in p.links:
        cmd = parse_qs(urlsplit(link).query).get("cmd", ["list"])[0]
        assert cmd in ("list", "show", "edit", "dump"), link
    posts = p.posts()
    assert posts
    assert all(f["csrf"] == kit.worker.csrf for f in posts)
    cmds = [(f["cmd"], f.get("sw")) for f in posts]
    assert ("reset", None) in cmds  # R for the lb
    assert ("reset", "n1") in cmds and ("recover", "n1") in cmds
    assert ("recover", "n2") not in cmds  # T only for a member in ERR


def test_member_rows_have_activation_buttons_and_an_lbfactor_form():
    p = page(Kit().get(""))
    updates = [f for f in p.forms if f["method"] == "post" and f["fields"]["cmd"] == "update"]
    n2 = [f for f in updates if f["fields"].get("sw") == "n2"]
    assert {b for f in n2 for b in f["buttons"]} == {("vwa", "a"), ("vwa", "d"), ("vwa", "s")}
    assert any(f["fields"].get("vwf") == "1" for f in n2)


def test_a_form_post_redirects_to_the_view_with_a_one_shot_result():
    kit = Kit()
    form = {"cmd": "update", "w": "lb", "sw": "n2", "vwa": "d", "mime": "html", "from": "list"}
    resp = kit.post(form)
    assert resp.status == 303
    location = header(resp, "Location")
    assert location is not None
    query = parse_qs(urlsplit(location).query)
    assert query["cmd"] == ["list"]
    shown = text(kit.get(urlsplit(location).query))
    assert "Result: OK - Action finished: lb/n2 activation: ACT -&gt; DIS" in shown
    again = text(kit.get(urlsplit(location).query))
    assert "Result: OK" not in again


def test_a_change_from_a_show_view_returns_to_it():
    kit = Kit()
    resp = kit.post({"cmd": "reset", "w": "lb", "sw": "n3", "mime": "html", "from": "show"})
    query = parse_qs(urlsplit(header(resp, "Location") or "").query)
    assert (query["cmd"], query["w"], query["sw"]) == (["show"], ["lb"], ["n3"])


def test_a_forged_result_id_shows_nothing():
    body = text(Kit().get("result=Your+password+expired"))
    assert "Result:" not in body and "password" not in body


def test_a_failed_form_post_shows_the_error_with_its_status():
    kit = Kit()
    resp = kit.post({"cmd": "recover", "w": "lb", "sw": "n1", "mime": "html"})
    assert resp.status == 409
    assert "Result: ERROR - Marking worker for recovery failed" in text(resp)


def test_read_only_pages_have_no_forms_that_post():
    for kit, query in ((Kit(status={"read_only": True}), ""), (Kit(), "opt=32")):
        resp = kit.get(query)
        p = page(resp)
        assert not p.posts()
        assert "(read only)</h1>" in text(resp)
        assert "cmd=edit" not in text(resp)


def test_refresh_and_its_stop_link():
    body = text(Kit().get("cmd=show&w=lb&re=5"))
    assert '<meta http-equiv="refresh" content="5">' in body
    assert ">Stop auto refresh</a>" in body
    assert 'name="re"' in text(Kit().get(""))


def test_opt_toggles_hide_and_show_sections():
    kit = Kit()
    hidden = text(kit.get("opt=4"))
    assert "<h2>Legend" not in hidden and ">Show Legend</a>" in hidden
    assert "<h4>Balancer Members" not in text(kit.get("opt=1"))
    assert "URI Mappings for lb" not in text(kit.get("opt=2"))
    assert "Good</th>" not in text(kit.get("opt=128"))
    assert "Sticky Sessions</th>" not in text(kit.get("opt=64"))
    p = page(kit.get(""))
    assert any("opt=4" in link for link in p.links)


def test_edit_forms_for_an_lb_a_member_an_attribute_and_a_single_worker():
    kit = Kit()
    lb = page(kit.get("cmd=edit&w=lb")).posts()[0]
    assert {"vlr", "vlri", "vlt", "vlee", "vlx", "vls", "vlf", "vlm", "vll"} <= set(lb)
    assert (lb["vlm"], lb["vll"], lb["vls"]) == ("R", "O", None)  # radios checked, select
    member = page(kit.get("cmd=edit&w=lb&sw=n3")).posts()[0]
    assert member["sw"] == "n3" and member["vwa"] == "a" and member["vwf"] == "2"
    assert {"vwn", "vwr", "vwc", "vwd", "var", "vari", "varo", "vart", "vabl"} <= set(member)
    att = page(kit.get("cmd=edit&w=lb&att=vwf")).posts()[0]
    assert (att["att"], att["val0"], att["val2"]) == ("vwf", "1", "2")
    single = page(kit.get("cmd=edit&w=solo")).posts()[0]
    assert "var" in single and "vwa" not in single
    assert "Invalid attribute" in text(kit.get("cmd=edit&w=lb&att=nope"))


def test_the_edit_form_posts_back_through_the_same_update():
    kit = Kit()
    fields = page(kit.get("cmd=edit&w=lb&sw=n1")).posts()[0]
    fields = {k: v for k, v in fields.items() if v is not None}
    fields["vwf"] = "4"
    resp = kit.post(fields, csrf=False)
    assert resp.status == 303
    assert kit.lb.member("n1").lbfactor == 4


def test_error_pages_keep_the_message_and_hide_the_workers():
    resp = Kit().get("cmd=show&w=nope")
    assert resp.status == 404
    body = text(resp)
    assert "Result: ERROR - Could not find given worker" in body
    assert "n1" not in body


@pytest.mark.parametrize(
    ("css", "linked"),
    [("/static/jk.css", True), ("https://cdn.example/jk.css", True), ('x" onload="y', False)],
)
def test_a_configured_stylesheet_is_linked_and_allowed_by_the_policy(css, linked):
    resp = Kit(status={"css": css}).get("")
    csp = header(resp, "Content-Security-Policy") or ""
    assert ('rel="stylesheet"' in text(resp)) is linked
    if linked:
        allowed = "'self'" if css.startswith("/") else css
        assert re.search(rf"style-src 'unsafe-inline' {re.escape(allowed)};", csp)
    else:
        assert "onload" not in text(resp) and "onload" not in csp


def test_dump_and_version_pages():
    kit = Kit()
    dump = text(kit.get("cmd=dump"))
    assert "<pre>" in dump and "worker.lb.balance_workers=n1,n2,n3" in dump
    version = text(kit.get("cmd=version"))
    assert "pyjk/0.1.0" in version and "Balancer Members" not in version
