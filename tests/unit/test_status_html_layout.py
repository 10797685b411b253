"""The HTML page's layout for the operator's main task, draining a member: the row's actions
next to its name, members-at-a-glance cards first at phone width, states in colour."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from balancer.status import cells, style
from balancer.status.model import Field, Row
from balancer.status.style import STYLE
from tests.unit.test_lb_driver import REFUSED
from tests.unit.test_status_html import Page
from tests.unit.test_status_kit import Kit, header, text


class _Cells(HTMLParser):
    """The member table (the one with the ``members`` class) as rows of (class, text) cells."""

    def __init__(self, body: str) -> None:
        super().__init__()
        self.rows: list[list[tuple[str, str]]] = []
        self.depth = 0  # inside the member table
        self.cell: list[str] | None = None
        self.cls = ""
        self.feed(body)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table" and a.get("class") == "members":
            self.depth = 1
        elif self.depth and tag == "tr":
            self.rows.append([])
        elif self.depth and tag in ("td", "th"):
            self.cell, self.cls = [], a.get("class") or ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self.depth = 0
        elif self.depth and tag in ("td", "th") and self.cell is not None:
            self.rows[-1].append((self.cls, " ".join(" ".join(self.cell).split())))
            self.cell = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)


def _section(body: str, cls: str) -> str:
    """The markup of the first ``<section class=cls>``."""
    match = re.search(rf'<section class="{cls}".*?</section>', body, re.S)
    return match.group() if match else ""


def _cards(body: str) -> list[str]:
    return re.findall(r'<div class="card [^"]*">.*?</dl>.*?</div>', _section(body, "glance"))


def test_the_actions_column_comes_right_after_the_name():
    table = _Cells(text(Kit().get("")))
    heads = [t for _, t in table.rows[0]]
    assert heads[:6] == ["", "Name", "Actions", "Act", "Drained", "State"]
    for row in table.rows[1:]:
        classes = [c for c, _ in row]
        assert classes[1:5] == ["name", "actions", "activation", ""]
        assert row[2][1].startswith("Activate Disable Stop")  # the buttons, by their text


def test_each_row_s_actions_post_for_that_member_with_the_token():
    kit = Kit()
    body = text(kit.get(""))
    rows = re.findall(r'<td class="actions">(.*?)</td>', body)
    assert len(rows) == 3
    for member, markup in zip(("n1", "n2", "n3"), rows, strict=True):
        p = Page(markup)
        assert not p.errors and not p.stack
        (buttons, factor) = p.forms
        assert buttons["fields"] == {
            "cmd": "update",
            "w": "lb",
            "sw": member,
            "mime": "html",
            "from": "list",
            "csrf": kit.worker.csrf,
        }
        assert buttons["buttons"] == [("vwa", "a"), ("vwa", "d"), ("vwa", "s")]
        assert factor["fields"]["sw"] == member and "vwf" in factor["fields"]


def test_a_read_only_table_has_no_actions_column_and_keeps_its_alignment():
    table = _Cells(text(Kit().get("opt=32")))
    heads = [t for _, t in table.rows[0]]
    assert "Actions" not in heads and heads[1:4] == ["Name", "Act", "Drained"]
    assert all(len(row) == len(heads) for row in table.rows)


def test_the_cards_come_before_every_table_and_only_a_media_query_shows_them():
    body = text(Kit().get(""))
    assert body.index('<section class="glance"') < body.index("<table")
    assert ".glance{display:none}" in STYLE
    (narrow,) = re.findall(r"@media \(max-width:600px\)\{(.*)\}$", STYLE)
    assert ".glance{display:block}" in narrow


def test_a_card_per_member_with_what_a_drain_needs_and_the_three_buttons():
    kit = Kit()
    body = text(kit.get(""))
    cards = _cards(body)
    assert len(cards) == 3
    for member, card in zip(("n1", "n2", "n3"), cards, strict=True):
        assert f'<b class="name">{member}</b>' in card
        for label in ("Route", "Sess / Live", "Busy", "Err"):
            assert f"<dt>{label}</dt>" in card
        assert ">ACT</span>" in card and ">OK/IDLE</span>" in card
        p = Page(card)
        assert not p.errors and not p.stack
        posts = [f for f in p.forms if f["method"] == "post"]
        (form,) = posts
        assert form["fields"]["sw"] == member and form["fields"]["csrf"] == kit.worker.csrf
        assert form["buttons"] == [("vwa", "a"), ("vwa", "d"), ("vwa", "s")]
        assert re.search(r'value="a" class="b-a" disabled>Activate<', card)  # already active


def test_a_card_button_changes_the_member_like_the_table_s():
    kit = Kit()
    (card,) = [c for c in _cards(text(kit.get(""))) if '"name">n2<' in c]
    fields = Page(card).posts()[0]
    resp = kit.post({**fields, "vwa": "d"}, csrf=False)
    assert resp.status == 303
    assert kit.lb.member("n2").activation.value == "DIS"


def test_the_result_of_a_change_is_the_first_thing_under_the_title():
    kit = Kit()
    resp = kit.post({"cmd": "update", "w": "lb", "sw": "n2", "vwa": "d", "mime": "html"})
    location = header(resp, "Location") or ""
    body = text(kit.get(location.split("?", 1)[1]))
    after_title = body.split("</h1>", 1)[1]
    assert after_title.startswith('<p class="ok">Result: OK - Action finished: lb/n2')


def test_a_disabled_drained_member_is_greyed_and_marked_next_to_its_activation():
    kit = Kit(cluster_view=lambda: {"n1": 3, "n2": 0, "n3": 5})
    kit.post({"cmd": "update", "w": "lb", "sw": "n2", "vwa": "d", "mime": "txt"})
    body = text(kit.get(""))
    (card,) = [c for c in _cards(body) if '"name">n2<' in c]
    assert card.startswith('<div class="card m-dis k-ok">')
    assert re.search(r'"pill a-dis">DIS</span><span class="pill drained">drained</span>', card)
    assert re.search(r'value="d" class="b-d" disabled>Disable<', card)
    row = next(r for r in _Cells(body).rows if ("name", "n2") in r)
    assert row[3:5] == [("activation", "DIS"), ("", "drained")]
    assert '<tr class="m-dis k-ok">' in body
    assert [c for c in _cards(body) if "drained</span>" in c] == [card]  # n1, n3 are active


def test_a_member_in_error_is_red_in_its_card_and_row():
    kit = Kit()
    kit.drive({"n1": REFUSED}, cookie="JSESSIONID=a.n1")
    body = text(kit.get(""))
    (card,) = [c for c in _cards(body) if '"name">n1<' in c]
    assert card.startswith('<div class="card m-act k-err">')
    assert '<span class="pill s-err">ERR</span>' in card
    assert '<td class="state"><span class="s-err">ERR</span></td>' in body


@pytest.mark.parametrize(
    ("state", "kind"),
    [
        ("OK", "ok"),
        ("OK/IDLE", "ok"),
        ("OK/BUSY", "warn"),
        ("ERR/REC", "warn"),
        ("ERR/PRB", "warn"),
        ("ERR/FRC", "warn"),
        ("ERR", "err"),
        (None, "none"),
    ],
)
def test_states_are_green_amber_or_red(state, kind):
    assert cells.state_kind(Row([Field("state", state)])) == kind


@pytest.mark.parametrize(("activation", "kind"), [("ACT", "act"), ("DIS", "dis"), ("STP", "stp")])
def test_disabled_and_stopped_members_are_greyed(activation, kind):
    r = Row([Field("activation", activation), Field("state", "OK")])
    assert cells.activation_kind(r) == kind
    assert cells.member_classes(r) == f"m-{kind} k-ok"
    if kind != "act":
        assert re.search(rf"tr\.m-{kind}>td[,{{]", STYLE)
        assert re.search(rf"\.card\.m-{kind}[,{{]", STYLE)


def test_read_only_cards_show_the_members_without_buttons():
    body = text(Kit(status={"read_only": True}).get(""))
    cards = _cards(body)
    assert len(cards) == 3
    assert not [c for c in cards if "<form" in c or "cmd=edit" in c]


def test_no_cards_where_the_members_are_not_shown():
    kit = Kit()
    for query in ("opt=1", "cmd=edit&w=lb", "cmd=edit&w=lb&sw=n1", "cmd=dump", "cmd=version"):
        assert 'class="glance"' not in text(kit.get(query)), query
    assert 'class="glance"' not in text(Kit().get("cmd=show&w=nope"))
    assert len(_cards(text(kit.get("cmd=show&w=lb&sw=n2")))) == 1


def test_the_stylesheet_is_one_line_and_no_line_break_glued_two_words():
    assert "\n" not in STYLE and "/*" not in STYLE
    assert STYLE.count("{") == STYLE.count("}")
    source = re.sub(r"/\*.*?\*/", "", style._SOURCE, flags=re.S)
    for before, after in re.findall(r"(\S)[ \t]*\n\s*(\S)", source):
        assert before in "{;}," or after == "}", (before, after)
