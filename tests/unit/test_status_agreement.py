"""All formats tell the same story: after a scripted run through the real lb engine (fake
backend outcomes), html, xml, txt, prop, json and Prometheus show the engine's own counters."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

from prometheus_client.parser import text_string_to_metric_families

from balancer.lb.decisions import Outcome, OutcomeKind
from balancer.lb.member import State
from tests.unit.test_lb_driver import REFUSED, TIMEOUT
from tests.unit.test_status_kit import Kit, prop_map, text, txt_lines

CLIENT_GONE = Outcome(OutcomeKind.CLIENT_ERROR, request_sent=True, reason="client-gone")
KEYS = (
    "elected",
    "sessions",
    "errors",
    "client_errors",
    "reply_timeouts",
    "transferred",
    "read",
    "lbfactor",
    "lbmult",
    "lbvalue",
    "busy",
    "max_busy",
    "sticky_hits",
    "sticky_misses",
    "failovers",
)
PROMETHEUS = {
    "elected": "pyjk_member_requests_total",
    "sessions": "pyjk_member_requests_without_session_total",
    "errors": "pyjk_member_errors_total",
    "client_errors": "pyjk_member_client_errors_total",
    "transferred": "pyjk_member_transferred_bytes_total",
    "read": "pyjk_member_read_bytes_total",
    "sticky_hits": "pyjk_member_sticky_hits_total",
    "sticky_misses": "pyjk_member_sticky_misses_total",
    "failovers": "pyjk_member_failovers_total",
    "reply_timeouts": "pyjk_member_reply_timeouts",
    "lbfactor": "pyjk_member_lbfactor",
    "lbmult": "pyjk_member_lb_mult",
    "lbvalue": "pyjk_member_lb_value",
    "busy": "pyjk_member_busy",
    "max_busy": "pyjk_member_max_busy",
}
HTML_COLUMNS = {
    "elected": "Acc",
    "sessions": "Sess",
    "errors": "Err",
    "client_errors": "CE",
    "reply_timeouts": "RE",
    "transferred": "Wr",
    "read": "Rd",
    "lbfactor": "F",
    "lbmult": "M",
    "lbvalue": "V",
    "busy": "Busy",
    "max_busy": "Max",
    "sticky_hits": "SH",
    "sticky_misses": "SM",
    "failovers": "FO",
}


def scripted_kit() -> Kit:
    kit = Kit()
    for _ in range(7):
        kit.drive(sent=10, received=30)
    for _ in range(3):
        kit.drive(cookie="JSESSIONID=abc.n2", sent=5, received=7)
    kit.now += 1
    kit.drive({"n1": REFUSED}, cookie="JSESSIONID=abc.n1")  # n1 fails, the request moves on
    kit.drive({"n3": TIMEOUT}, cookie="JSESSIONID=abc.n3")
    kit.drive({"n2": CLIENT_GONE}, cookie="JSESSIONID=abc.n2")
    kit.drive(cookie="JSESSIONID=abc.n1")  # n1 is ERR: a sticky miss
    kit.post({"cmd": "update", "w": "lb", "sw": "n3", "vwf": 3, "mime": "txt"})
    kit.now += 2
    return kit


def truth(kit: Kit) -> dict[str, dict[str, str]]:
    out = {}
    for m in kit.lb.members:
        values = {
            "elected": m.elected,
            "sessions": m.sessions,
            "errors": m.errors,
            "client_errors": m.client_errors,
            "reply_timeouts": m.reply_timeouts,
            "transferred": m.bytes_transferred,
            "read": m.bytes_read,
            "lbfactor": m.lbfactor,
            "lbmult": m.lb_mult,
            "lbvalue": m.lb_value,
            "busy": m.busy,
            "max_busy": m.max_busy,
            "sticky_hits": m.sticky_hits,
            "sticky_misses": m.sticky_misses,
            "failovers": m.failovers,
        }
        out[m.name] = {k: str(v) for k, v in values.items()}
        out[m.name]["state"] = m.state.value
        out[m.name]["activation"] = m.activation.value
    return out


def from_txt(kit: Kit) -> dict[str, dict[str, str]]:
    return {m["name"]: m for m in txt_lines(kit.get("mime=txt"), "Member")}


def from_prop(kit: Kit) -> dict[str, dict[str, str]]:
    props = prop_map(kit.get("mime=prop"))
    names = props["worker.lb.balance_workers"]
    return {
        n: {k: props[f"worker.{n}.{k}"][0] for k in (*KEYS, "state", "activation")} for n in names
    }


def from_xml(kit: Kit) -> dict[str, dict[str, str]]:
    root = ET.fromstring(kit.get("mime=xml").body)
    members = root.iter("{http://tomcat.apache.org}member")
    return {m.get("name", ""): dict(m.attrib) for m in members}


def from_json(kit: Kit) -> dict[str, dict[str, str]]:
    data = json.loads(kit.get("mime=json").body)
    return {m["name"]: {k: str(v) for k, v in m.items()} for m in data["balancers"][0]["members"]}


def from_prometheus(kit: Kit) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for family in text_string_to_metric_families(text(kit.get("", path="/metrics"))):
        for s in family.samples:
            if s.labels.get("worker") != "lb" or "member" not in s.labels:
                continue
            member = out.setdefault(s.labels["member"], {})
            for key, name in PROMETHEUS.items():
                if s.name == name:
                    member[key] = str(int(s.value))
            if s.name == "pyjk_member_state" and s.value == 1:
                member["state"] = s.labels["state"]
            if s.name == "pyjk_member_activation" and s.value == 1:
                member["activation"] = s.labels["activation"]
    return out


class _Rows(HTMLParser):
    """Every table as rows of cell texts."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self.cell is not None:
            self.tables[-1][-1].append("".join(self.cell).strip())
            self.cell = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)


def from_html(kit: Kit) -> dict[str, dict[str, str]]:
    parser = _Rows()
    parser.feed(text(kit.get("")))
    (table,) = [t for t in parser.tables if t and "Acc" in t[0] and "Name" in t[0]]
    heads = table[0]
    out = {}
    for row in table[1:]:
        cells = dict(zip(heads, row, strict=False))
        member = {k: cells[col].split(" ")[0] for k, col in HTML_COLUMNS.items()}
        member["state"] = cells["State"]
        member["activation"] = cells["Act"]
        out[cells["Name"]] = member
    return out


def test_every_format_shows_the_engine_s_counters():
    kit = scripted_kit()
    expected = truth(kit)
    # the script reached every counter somewhere
    for key in (
        "errors",
        "client_errors",
        "reply_timeouts",
        "sticky_hits",
        "sticky_misses",
        "failovers",
        "transferred",
        "read",
        "sessions",
    ):
        assert any(m[key] != "0" for m in expected.values()), key
    assert {m["state"] for m in expected.values()} >= {"ERR", "OK"}
    for reader in (from_txt, from_prop, from_xml, from_json, from_prometheus, from_html):
        seen = reader(kit)
        assert set(seen) == set(expected), reader.__name__
        for name, values in expected.items():
            got = {k: seen[name].get(k) for k in values}
            assert got == values, (reader.__name__, name)


def test_lb_summaries_agree_across_formats():
    kit = scripted_kit()
    (txt,) = txt_lines(kit.get("mime=txt"), "Balancer Worker")
    props = prop_map(kit.get("mime=prop"))
    data = json.loads(kit.get("mime=json").body)["balancers"][0]
    root = ET.fromstring(kit.get("mime=xml").body)
    xml = next(root.iter("{http://tomcat.apache.org}balancer")).attrib
    for key in ("good", "degraded", "bad", "busy", "max_busy", "member_count", "map_count"):
        values = {txt[key], props[f"worker.lb.{key}"][0], str(data[key]), xml[key]}
        assert len(values) == 1, key
    in_error = sum(m.state is State.ERR for m in kit.lb.members)
    assert in_error >= 1
    assert txt["bad"] == str(in_error)
