"""Hostile names and parameters cannot break out of any format.

The config reader limits names to [A-Za-z0-9_.-], but the status worker must not rely on it:
these tests build workers, members, routes, error texts and URI patterns full of markup, quotes,
line breaks and control characters directly, and send hostile parameters.
"""

from __future__ import annotations

import dataclasses
import json
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from balancer.config.model import LbConfig, MemberConfig
from balancer.lb.engine import LbEngine
from balancer.mounts import MountRule, UriMap
from balancer.status import escape
from tests.unit.test_status_kit import Kit, header, text, txt_fields

EVIL = "<script>alert(1)</script>\"'&=: #!\r\nResult: type=OK\x00\x1b\u2028\\end"
LB = "lb" + EVIL
MEMBER = "m" + EVIL
ROUTE = "r" + EVIL
XML_BAD = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def hostile_kit() -> Kit:
    kit = Kit()
    member = MemberConfig(MEMBER, type="http", host="h" + EVIL)
    lb = LbConfig(LB, balance_workers=(MEMBER,))
    engine = LbEngine(lb, [member], 60, 0.0)
    m = engine.members[0]
    m.route, m.domain, m.redirect = ROUTE, "d" + EVIL, "x" + EVIL
    m.last_error_reason = "e" + EVIL
    kit.engines[LB] = engine
    workers = dataclasses.replace(
        kit.workers,
        worker_list=(*kit.workers.worker_list, LB),
        lbs={**kit.workers.lbs, LB: lb},
        members={**kit.workers.members, MEMBER: member},
    )
    uri_map = UriMap([*kit.uri_map.rules, MountRule("/p" + EVIL, LB)])
    kit.worker.update_sources(workers=workers, uri_map=uri_map)
    return kit


def test_txt_values_stay_on_their_line_and_read_back():
    resp = hostile_kit().get("mime=txt")
    lines = text(resp).split("\n")
    assert lines[-1] == ""
    kinds = {line.split(":", 1)[0] for line in lines[:-1]}
    assert kinds <= {
        "Server",
        "Time",
        "Software",
        "Balancer Workers",
        "Balancer Worker",
        "Member",
        "Map",
        "AJP Workers",
        "AJP Worker",
        "Result",
    }
    assert sum(line.startswith("Result:") for line in lines) == 1
    assert "\r" not in text(resp) and "\x00" not in text(resp) and "\u2028" not in text(resp)
    lbs = [txt_fields(x) for x in lines if x.startswith("Balancer Worker: ")]
    assert LB in [lb["name"] for lb in lbs]
    member = next(txt_fields(x) for x in lines if x.startswith("Member: ") and "alert" in x)
    assert member["name"] == MEMBER
    assert member["route"] == ROUTE
    assert member["last_error"] == "e" + EVIL
    maps = [txt_fields(x)["uri"] for x in lines if x.startswith("Map: ")]
    assert "/p" + EVIL in maps


def _prop_unescape(s: str) -> str:
    out, i = [], 0
    while i < len(s):
        c = s[i]
        if c == "\\":
            nxt = s[i + 1]
            if nxt == "u":
                out.append(chr(int(s[i + 2 : i + 6], 16)))
                i += 6
                continue
            out.append({"n": "\n", "r": "\r", "t": "\t"}.get(nxt, nxt))
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def _prop_entries(body: str) -> list[tuple[str, str]]:
    entries = []
    for line in body.split("\n")[:-1]:
        m = re.match(r"((?:[^\\=]|\\.)*)=(.*)", line)
        assert m, line
        entries.append((_prop_unescape(m.group(1)), _prop_unescape(m.group(2))))
    return entries


def test_prop_keys_and_values_stay_on_their_line_and_read_back():
    body = text(hostile_kit().get("mime=prop"))
    assert "\r" not in body and "\x00" not in body
    entries = _prop_entries(body)
    props = dict(entries)
    assert props[f"worker.{LB}.type"] == "lb"
    assert props[f"worker.{MEMBER}.route"] == ROUTE
    assert props[f"worker.{MEMBER}.host"] == "h" + EVIL
    assert (f"worker.{LB}.balance_workers", MEMBER) in entries
    assert [k for k, _ in entries if k.startswith("worker.result.")] == [
        "worker.result.type",
        "worker.result.message",
    ]


def test_xml_stays_well_formed_and_reads_back():
    body = hostile_kit().get("mime=xml").body
    root = ET.fromstring(body)
    ns = "{http://tomcat.apache.org}"
    wanted = XML_BAD.sub("\ufffd", LB)
    lb = next(b for b in root.iter(ns + "balancer") if b.get("name") == wanted)
    member = lb.find(ns + "member")
    assert member is not None
    assert member.get("route") == XML_BAD.sub("\ufffd", ROUTE)
    assert member.get("last_error") == XML_BAD.sub("\ufffd", "e" + EVIL)
    assert len(list(root.iter(ns + "result"))) == 1


def test_json_reads_back_exactly():
    data = json.loads(hostile_kit().get("mime=json").body)
    lb = next(b for b in data["balancers"] if b["name"] == LB)
    assert lb["members"][0]["route"] == ROUTE
    assert lb["maps"][0]["uri"] == "/p" + EVIL


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.hidden: dict[str, list[str]] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        a = dict(attrs)
        if tag == "input" and a.get("type") == "hidden":
            self.hidden.setdefault(a["name"] or "", []).append(a.get("value") or "")


def test_html_never_carries_live_markup_from_values():
    body = text(hostile_kit().get(""))
    assert "<script" not in body.lower()
    parser = _Collect()
    parser.feed(body)
    assert "script" not in parser.tags
    # the hidden member fields of the R forms read back to the member's name (control
    # characters the page cannot carry become U+FFFD)
    names = parser.hidden["sw"]
    assert any(n.startswith("m<script>alert(1)</script>\"'&") for n in names)


def test_prometheus_labels_read_back_without_control_characters():
    body = text(hostile_kit().get("mime=prometheus"))
    families = {f.name: f for f in text_string_to_metric_families(body)}
    samples = [s for s in families["pyjk_member_info"].samples if "alert" in s.labels["member"]]
    (sample,) = samples
    assert sample.labels["route"].startswith("r<script>alert(1)</script>\"'&")
    assert "\r" not in sample.labels["route"] and "\x00" not in sample.labels["route"]


HOSTILE_PARAMS = ["<script>x</script>", '"><script>x</script>', "a\r\nb", "\x00", "%ZZ", "é"]


@pytest.mark.parametrize("value", HOSTILE_PARAMS)
@pytest.mark.parametrize("name", ["w", "sw", "cmd", "mime", "re", "opt", "from", "att", "result"])
def test_hostile_parameters_are_never_reflected_raw(name, value):
    kit = Kit()
    for mime in ("html", "txt", "xml", "prop", "json"):
        query = {"mime": mime, name: value}
        for cmd in ("list", "show", "edit"):
            resp = kit.get({"cmd": cmd, "w": "lb", **query})
            body = text(resp)
            assert "<script" not in body.lower()
            if mime != "html":
                assert value not in body or value in ("é",)


def test_a_hostile_path_cannot_redirect_elsewhere_or_split_headers():
    kit = Kit()
    resp = kit.post(
        {"cmd": "reset", "w": "lb", "mime": "html"}, path="//evil.example/x\r\nSet-Cookie: a=b"
    )
    assert resp.status == 303
    location = header(resp, "Location")
    assert location is not None
    assert location.startswith("/evil.example/x")
    assert not location.startswith("//")
    assert "\r" not in location and "\n" not in location


def test_form_actions_never_leave_the_site():
    body = text(Kit().get("", path="//evil.example/jkmanager"))
    assert 'action="//' not in body and 'href="//' not in body


def test_audit_lines_escape_what_they_log(caplog):
    kit = Kit()
    with caplog.at_level("INFO", logger="pyjk.audit"):
        kit.post(
            {"cmd": "update", "w": "lb", "sw": "n1", "vwd": 3, "mime": "txt"}, user="eve\nforged=1"
        )
    (record,) = [r for r in caplog.records if r.name == "pyjk.audit"]
    line = record.getMessage()
    assert "\n" not in line
    assert 'user="eve\\nforged=1"' in line


# -- the escapers, for any text -------------------------------------------------------------

ANY_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)


@given(ANY_TEXT)
@settings(max_examples=300, deadline=None)
def test_any_txt_value_is_one_token_that_reads_back(value):
    line = "X: a=" + escape.txt(value) + " b=1"
    assert "\n" not in line and "\r" not in line
    assert txt_fields(line) == {"a": value, "b": "1"}


@given(ANY_TEXT, ANY_TEXT)
@settings(max_examples=300, deadline=None)
def test_any_prop_key_and_value_read_back(key, value):
    line = escape.prop_key(key) + "=" + escape.prop_value(value)
    assert "\n" not in line and "\r" not in line
    assert _prop_entries(line + "\n") == [(key, value)]


@given(ANY_TEXT)
@settings(max_examples=300, deadline=None)
def test_any_xml_attribute_parses_back(value):
    root = ET.fromstring(f'<a v="{escape.xml_attr(value)}"/>')
    assert root.get("v") == XML_BAD.sub("\ufffd", re.sub("[\ufffe\uffff]", "\ufffd", value))


@given(ANY_TEXT)
@settings(max_examples=300, deadline=None)
def test_any_html_value_stays_text(value):
    parser = _Collect()
    parser.feed(f'<input type="hidden" name="x" value="{escape.h(value)}"><p>{escape.h(value)}</p>')
    assert parser.tags == ["input", "p"]
