"""Session ids, routes and sticky routing (modjk.md §3.5, §3.9, §9.1)."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from balancer.config.model import Activation, LbConfig, MemberConfig, Method, RuleExtensions
from balancer.lb import sticky
from balancer.lb.decisions import RequestFacts
from balancer.lb.engine import LbEngine
from balancer.lb.member import State
from balancer.lb.settings import LbSettings
from balancer.lb.sticky import (
    NO_SESSION,
    SEVERAL,
    cookie_value,
    path_parameter,
    session_id,
    session_routes,
    session_span,
)
from tests.unit.test_lb_driver import REFUSED, engine, facts, run

DEFAULTS = LbSettings.from_config(LbConfig("lb"))


def sid(uri="/app/x", cookies=(), settings=DEFAULTS, **kw):
    cookies = tuple(c.encode("latin-1") for c in cookies)
    return session_id(RequestFacts("GET", uri.encode("latin-1"), cookies=cookies, **kw), settings)


def cookie(headers, name):
    """cookie_value of Cookie header values written as text (latin-1, as they arrive)."""
    return cookie_value([h.encode("latin-1") for h in headers], name)


# -- reading the session id -----------------------------------------------------------------


def test_path_parameter_beats_cookie():
    assert sid("/app;jsessionid=P.n1/x", ["JSESSIONID=C.n2"]) == "P.n1"


def test_path_parameter_may_sit_in_any_segment_and_ends_at_slash_semicolon_or_query():
    assert path_parameter(b"/a;jsessionid=X.n1/b", ";jsessionid") == "X.n1"
    assert path_parameter(b"/a/b;jsessionid=X.n1;v=2", ";jsessionid") == "X.n1"
    assert path_parameter(b"/a;jsessionid=X.n1?q=1", ";jsessionid") == "X.n1"


def test_path_parameter_needs_an_equals_sign_and_is_case_sensitive():
    assert path_parameter(b"/a;jsessionidx=1;jsessionid=Y.n2", ";jsessionid") == "Y.n2"
    assert path_parameter(b"/a;JSESSIONID=Y.n2", ";jsessionid") is None


def test_empty_path_parameter_means_no_session_and_hides_the_cookie():
    # mod_jk looks at cookies only when no path parameter was found at all
    assert sid("/a;jsessionid=/b", ["JSESSIONID=C.n2"]) is None
    # "=" at the very end is not a value: the cookie is used
    assert sid("/a;jsessionid=", ["JSESSIONID=C.n2"]) == "C.n2"


def test_every_matching_cookie_in_every_header_is_joined_in_order():
    headers = ["a=1; JSESSIONID=A.n1", "JSESSIONID=B.n2, other=3; JSESSIONID=C.n3"]
    assert cookie(headers, "JSESSIONID") == "A.n1;B.n2;C.n3"


def test_cookie_name_must_start_the_header_or_follow_a_separator():
    assert cookie(["XJSESSIONID=A.n1"], "JSESSIONID") is None
    assert cookie(["a=1;JSESSIONID=A.n1"], "JSESSIONID") == "A.n1"
    assert cookie(["a=1,JSESSIONID=A.n1"], "JSESSIONID") == "A.n1"
    assert cookie(["a=1\tJSESSIONID=A.n1"], "JSESSIONID") == "A.n1"


def test_cookie_allows_whitespace_before_equals_and_strips_one_pair_of_quotes():
    assert cookie(['JSESSIONID  ="A.n1"'], "JSESSIONID") == "A.n1"
    assert cookie(['JSESSIONID=""A.n1""'], "JSESSIONID") == '"A.n1"'
    assert cookie(['JSESSIONID="'], "JSESSIONID") == '"'


def test_cookie_bytes_beyond_ascii_compare_and_decode_as_latin_1():
    # the headers arrive as bytes: a byte is the latin-1 character it was decoded to before
    assert cookie_value([b"JSESSIONID=\xe9t\xe9.n\xff"], "JSESSIONID") == "\xe9t\xe9.n\xff"
    assert cookie_value([b"a=1;\xe9ID=A.n1"], "\xe9ID") == "A.n1"
    assert cookie_value([b"a=1;\xc3\xa9ID=A.n1"], "\xe9ID") is None  # UTF-8 is two bytes
    assert cookie_value([b"JSESSIONID=A.n1"], "\u20acID") is None  # no latin-1 byte spells it


def test_only_c_isspace_separates_a_cookie_name_not_unicode_spaces():
    # NBSP (0xA0) and NEL (0x85) are spaces to str.isspace(), not to C isspace() (mod_jk)
    assert cookie_value([b"a=1\xa0JSESSIONID=A.n1"], "JSESSIONID") is None
    assert cookie_value([b"JSESSIONID\x85=A.n1"], "JSESSIONID") is None
    assert cookie_value([b"a=1\vJSESSIONID\f=\rA.n1"], "JSESSIONID") == "\rA.n1"


def test_cookie_name_is_looked_up_afresh_when_another_name_is_asked():
    headers = [b"JSESSIONID=A.n1; SID=B.n2"]
    assert cookie_value(headers, "JSESSIONID") == "A.n1"
    assert cookie_value(headers, "SID") == "B.n2"
    assert cookie_value(headers, "".join(["JSESSION", "ID"])) == "A.n1"  # an equal, new str


def test_cookie_without_value_is_skipped_and_name_is_case_sensitive():
    assert cookie(["JSESSIONID="], "JSESSIONID") is None
    assert cookie(["jsessionid=A.n1"], "JSESSIONID") is None
    assert sid(cookies=["JSESSIONID=;x=1"]) is None


def test_route_override_stands_for_a_session_of_that_route():
    assert sid(cookies=["JSESSIONID=A.n1"], route_override="n2") == ".n2"


def test_no_session_when_sticky_is_off_or_ignored_by_the_rule():
    off = LbSettings.from_config(LbConfig("lb", sticky_session=False))
    assert sid(cookies=["JSESSIONID=A.n1"], settings=off) is None
    ignore = RuleExtensions(sticky_ignore=True)
    assert sid(cookies=["JSESSIONID=A.n1"], rule=ignore) is None


def test_rule_session_cookie_and_path_replace_the_lbs():
    rule = RuleExtensions(session_cookie="SID", session_path=";sid")
    assert sid(cookies=["JSESSIONID=A.n1; SID=B.n2"], rule=rule) == "B.n2"
    assert sid("/a;sid=C.n3;jsessionid=D.n1", rule=rule) == "C.n3"


def test_route_is_everything_after_the_first_dot():
    assert session_routes("ABC.node1") == ["node1"]
    assert session_routes("ABC.dc1.n1") == ["dc1.n1"]
    assert session_routes("nodot;X.n2;.n3") == ["n2", "n3"]
    assert session_routes("nodot") == []
    assert session_routes(".n1") == ["n1"]
    assert session_routes("A.") == [""]


@given(st.text(alphabet=st.sampled_from(list("A.;n1")), max_size=12))
def test_session_routes_of_one_id_are_those_of_the_general_split(session):
    routes = [part.partition(".")[2] for part in session.split(";") if "." in part]
    assert session_routes(session) == routes


# -- routing by route -----------------------------------------------------------------------


def test_sticky_request_follows_route_suffix():
    eng = engine("n1", "n2", "n3")
    result = run(eng, facts(cookie="JSESSIONID=abc.n3"))
    assert result.tried == ["n3"]
    assert result.forwards[0].sticky


def test_sticky_request_follows_a_route_edited_at_run_time_at_once():
    # the plan compares the id's route bytes with each member's route bytes, cached on the
    # member (read_route_bytes): the cache must follow an edit
    eng = engine("n1", "n2", "n3")
    assert run(eng, facts(cookie="JSESSIONID=abc.n2")).forwards[0].member.name == "n2"
    eng.update_member("n2", 0.0, route="second")
    moved = run(eng, facts(cookie="JSESSIONID=abc.n2")).forwards[0]
    assert not moved.sticky  # no member has route n2 any more: balanced
    followed = run(eng, facts(cookie="JSESSIONID=abc.second")).forwards[0]
    assert (followed.member.name, followed.sticky) == ("n2", True)
    assert eng.member("n2").sticky_hits == 2
    eng.member("n2").route = "n2"  # a plain field write (reload, handover) too
    back = run(eng, facts(cookie="JSESSIONID=abc.n2")).forwards[0]
    assert (back.member.name, back.sticky) == ("n2", True)


def test_a_quoted_cookie_routes_by_its_unquoted_route_and_an_empty_one_is_no_session():
    eng = engine("n1", "n2", "n3")
    quoted = run(eng, facts(cookie='JSESSIONID="abc.n3"')).forwards[0]
    assert (quoted.member.name, quoted.sticky) == ("n3", True)
    assert run(eng, facts(cookie='JSESSIONID=""')).plan.session is None


def test_a_route_outside_latin_1_is_named_by_no_session_id():
    eng = engine(MemberConfig("n1"), MemberConfig("n2", route="n\u20ac"), MemberConfig("n3"))
    # the id's bytes decode as latin-1: "n\xe2\x82\xac" is not the route "n\u20ac"
    result = run(eng, facts(cookie="JSESSIONID=abc.n\xe2\x82\xac"))
    assert not result.forwards[0].sticky
    assert result.plan.session == "abc.n\xe2\x82\xac"


def test_many_members_find_the_route_through_the_lookup_table():
    # past LbEngine's byte scan limit, route_at decodes the route for route_index
    eng = engine(*[f"n{i}" for i in range(12)])
    for i in (0, 7, 11):
        forward = run(eng, facts(cookie=f"JSESSIONID=abc.n{i}")).forwards[0]
        assert (forward.member.name, forward.sticky) == (f"n{i}", True)
    assert not run(eng, facts(cookie="JSESSIONID=abc.n12")).forwards[0].sticky


def test_multiple_session_cookies_are_tried_in_order():
    eng = engine("n1", "n2", "n3")
    eng.update_member("n1", 0.0, activation=Activation.STOPPED)
    result = run(eng, facts(cookie="JSESSIONID=A.n9; JSESSIONID=B.n1; JSESSIONID=C.n2"))
    # n9 unknown, n1 stopped without redirect or domain: the third id wins, still sticky
    assert result.tried == ["n2"] and result.forwards[0].sticky


def test_route_naming_a_domain_goes_to_the_best_member_of_that_domain():
    eng = engine(
        MemberConfig("a1", route="dc1.a1"),
        MemberConfig("a2", route="dc1.a2"),
        MemberConfig("b1", route="dc2.b1"),
    )
    eng.member("a1").lb_value = 5
    result = run(eng, facts(cookie="JSESSIONID=X.dc1.gone"))
    assert result.tried == ["a2"]
    assert not result.forwards[0].sticky


def test_disabled_member_keeps_sticky_sessions_but_gets_no_new_ones():
    eng = engine("n1", MemberConfig("n2", activation=Activation.DISABLED))
    assert run(eng, facts(cookie="JSESSIONID=x.n2")).tried == ["n2"]
    assert [run(eng).tried[0] for _ in range(3)] == ["n1"] * 3


def test_stopped_member_gets_nothing_and_its_sessions_are_rebalanced():
    eng = engine("n1", MemberConfig("n2", activation=Activation.STOPPED))
    result = run(eng, facts(cookie="JSESSIONID=x.n2"))
    assert result.tried == ["n1"] and not result.forwards[0].sticky


def test_unusable_sticky_member_sends_to_its_redirect_even_if_disabled():
    eng = engine(
        "n1",
        MemberConfig("n2", redirect="n3"),
        MemberConfig("n3", activation=Activation.DISABLED),
    )
    eng.member("n2").state = State.ERR
    result = run(eng, facts(cookie="JSESSIONID=x.n2"))
    assert result.tried == ["n3"] and not result.forwards[0].sticky


def test_unusable_sticky_member_without_redirect_uses_its_domain():
    eng = engine(
        MemberConfig("n1", domain="other"),
        MemberConfig("n2", domain="d"),
        MemberConfig("n3", domain="d"),
    )
    eng.update_member("n2", 0.0, activation=Activation.STOPPED)
    eng.member("n1").lb_value = 0
    eng.member("n3").lb_value = 9
    result = run(eng, facts(cookie="JSESSIONID=x.n2"))
    assert result.tried == ["n3"]


def test_busy_sticky_member_fails_over():
    eng = engine("n1", "n2")
    eng.member("n2").state = State.OK_BUSY
    eng.pool_has_room = lambda member: False
    assert run(eng, facts(cookie="JSESSIONID=x.n2")).tried == ["n1"]


def test_exact_route_match_wins_over_a_domain_of_the_same_name():
    eng = engine(MemberConfig("n1", route="d"), MemberConfig("n2", domain="d"))
    assert run(eng, facts(cookie="JSESSIONID=x.d")).tried == ["n1"]


# -- sticky_session_force -------------------------------------------------------------------


def test_force_answers_503_for_a_stopped_route_after_one_retry_interval():
    eng = engine("n1", MemberConfig("n2", activation=Activation.STOPPED), sticky_session_force=True)
    result = run(eng, facts(cookie="JSESSIONID=x.n2"))
    assert result.tried == []
    assert result.client_status == 503
    assert result.waited == 0.1  # §9.1: every such 503 took about 101 ms


def test_force_answers_503_for_an_unknown_route_and_for_no_route():
    eng = engine("n1", "n2", sticky_session_force=True)
    assert run(eng, facts(cookie="JSESSIONID=x.n9")).client_status == 503
    assert run(eng, facts(cookie="JSESSIONID=x")).client_status == 503


def test_force_still_balances_requests_without_session():
    eng = engine("n1", "n2", sticky_session_force=True)
    assert run(eng).status == 200


def test_force_gives_an_err_member_its_forced_recovery_try():
    eng = engine("n1", "n2", sticky_session_force=True)
    eng.member("n2").state = State.ERR
    result = run(eng, facts(cookie="JSESSIONID=x.n2"))
    assert result.tried == ["n2"] and result.status == 200
    assert eng.member("n2").state is State.OK


def test_without_force_an_unresolved_session_is_balanced_but_not_counted_as_new():
    eng = engine("n1", "n2", method=Method.SESSIONS)
    result = run(eng, facts(cookie="JSESSIONID=x.n9"))
    assert result.status == 200
    assert all(m.sessions == 0 and m.lb_value == 0 for m in eng.members)


# -- single member, hot standby -------------------------------------------------------------


def test_single_member_is_used_as_sticky_with_or_without_session():
    eng = engine("only")
    result = run(eng)
    assert result.tried == ["only"] and result.forwards[0].sticky


def test_single_disabled_member_serves_sticky_requests_but_not_new_ones():
    eng = engine(MemberConfig("only", activation=Activation.DISABLED))
    assert run(eng, facts(cookie="JSESSIONID=x.only")).status == 200
    assert run(eng).client_status == 503


def test_single_err_member_gets_its_forced_recovery_try():
    eng = engine("only")
    eng.member("only").state = State.ERR
    result = run(eng)
    assert result.tried == ["only"] and result.status == 200


def test_disabled_hot_standby_takes_new_requests_when_every_active_member_is_down():
    eng = engine(
        MemberConfig("n1", redirect="standby"),
        "n2",
        MemberConfig("standby", activation=Activation.DISABLED),
    )
    result = run(eng, backends={"n1": REFUSED, "n2": REFUSED})
    assert result.tried == ["n1", "n1", "n2", "n2", "standby"]
    assert result.status == 200
    assert not result.forwards[-1].sticky


def test_rule_activation_override_applies_to_choice_and_to_the_forwarded_activation():
    eng = engine("n1", "n2")
    n1_disabled = facts(rule=RuleExtensions(activation={"n1": Activation.DISABLED}))
    assert [run(eng, n1_disabled).tried[0] for _ in range(2)] == ["n2", "n2"]
    assert run(eng, n1_disabled).forwards[0].activation == "ACT"
    n2_stopped = RuleExtensions(activation={"n2": Activation.STOPPED})
    assert run(eng, facts(cookie="JSESSIONID=x.n2", rule=n2_stopped)).tried == ["n1"]
    sticky = facts(
        cookie="JSESSIONID=x.n1", rule=RuleExtensions(activation={"n1": Activation.DISABLED})
    )
    result = run(eng, sticky)
    assert result.tried == ["n1"] and result.forwards[0].activation == "DIS"


def _regex_cookie_value(headers, name):
    """cookie_value as one regex (pyjk before session 4): the reference the scan must match."""
    space = re.escape(" \t\n\v\f\r")
    pattern = re.compile(
        f"(?:^|(?<=[;,{space}])){re.escape(name)}[{space}]*=(?=.)([^;,]*)", re.DOTALL
    )
    found = [v for header in headers for v in pattern.findall(header)]
    if not found:
        return None
    return ";".join(v[1:-1] if len(v) > 1 and v[0] == v[-1] == '"' else v for v in found)


@settings(max_examples=1000, deadline=None)
@given(
    headers=st.lists(
        st.text(
            alphabet=st.sampled_from(list('JSESIONIDjx=;, \t\n\v\f\r".AB\xa0\x85\xe9\xff')),
            max_size=30,
        ),
        max_size=3,
    ),
    name=st.sampled_from(["JSESSIONID", "J", "ID", "S=", "x", "\xe9x"]),
)
@example(headers=["x="], name="x")  # nothing after the "=": no value
@example(headers=["x=;x= \tx=,"], name="x")  # empty values, a name inside a value
@example(headers=['a=1,\vJSESSIONID \f= "A.n1";J=2', "JSESSIONIDx=3"], name="JSESSIONID")
def test_cookie_scan_finds_what_the_regex_finds(headers, name):
    assert cookie(headers, name) == _regex_cookie_value(headers, name)


@settings(max_examples=500, deadline=None)
@given(
    headers=st.lists(
        st.text(alphabet=st.sampled_from(list('JSESIONID=;, ".ABn1\xe9')), max_size=24),
        max_size=3,
    ),
    uri=st.sampled_from(["/app/x", "/a;jsessionid=P.n1", "/a;jsessionid=/b"]),
    override=st.sampled_from([None, "n2"]),
)
@example(headers=['JSESSIONID="A.n1"'], uri="/app/x", override=None)
@example(headers=['JSESSIONID=""'], uri="/app/x", override=None)
@example(headers=["JSESSIONID=A.n1", "JSESSIONID=B.n2"], uri="/app/x", override=None)
def test_the_plans_session_and_routes_are_those_of_session_id(headers, uri, override):
    # the plan keeps one cookie value as offsets (session_span) and makes the str and the
    # routes only when asked: they must be what session_id and session_routes give
    request = facts(uri=uri, route_override=override)
    request.cookies = tuple(h.encode("latin-1") for h in headers)
    expected = session_id(request, DEFAULTS)
    k, at, stop = session_span(request, DEFAULTS)
    if k >= 0:
        assert request.cookies[k][at:stop].decode("latin-1") == expected
    else:
        # JK_ROUTE, IN_PATH, SEVERAL: read as text; an empty path parameter is no session
        assert (k == NO_SESSION) == (expected is None)
    plan = engine("n1", "n2").plan(request, 0.0)
    assert plan.session == expected
    assert plan._route_list() == (session_routes(expected) if expected else [])


def _text_path_parameter(uri, name):
    """path_parameter over the decoded path (pyjk before session 6): the reference."""
    start = uri.find(name)
    while start >= 0:
        after = start + len(name)
        if uri.startswith("=", after) and after + 1 < len(uri):
            value = uri[after + 1 :]
            for stop in "?;/":
                cut = value.find(stop)
                if cut >= 0:
                    value = value[:cut]
            return value
        start = uri.find(name, start + 1)
    return None


@settings(max_examples=500, deadline=None)
@given(
    uri=st.text(alphabet=st.sampled_from(list(";jsid=/?.A\xe9\xff")), max_size=30),
    name=st.sampled_from([";jsessionid", ";j", ";", ";\xe9", ";\u20ac"]),
)
@example(uri="/a;jsessionid=", name=";jsessionid")  # "=" at the very end: no value
@example(uri="/a;jsessionid=;jsessionid=B", name=";jsessionid")  # the first: empty, not B
def test_path_parameter_on_bytes_finds_what_the_text_scan_finds(uri, name):
    reference = None if "\u20ac" in name else _text_path_parameter(uri, name)
    assert path_parameter(uri.encode("latin-1"), name) == reference


# -- the byte helpers and the session's scans -----------------------------------------------

COMPILED = not sticky.__file__.endswith(".py")


def test_the_byte_helpers_cannot_be_asked_to_read_past_the_buffer():
    # route_start, same_bytes and LbEngine.route_at take offsets into the bytes unchecked:
    # compiled (route_start(b"abc", 0, 4096) read 4 KiB past "abc") they are C-only, reached
    # through the plan; run as Python, the bytes' own bounds checks stand
    if COMPILED:
        assert not hasattr(sticky, "route_start") and not hasattr(sticky, "same_bytes")
        assert not hasattr(LbEngine, "route_at")
    else:
        with pytest.raises(IndexError):
            sticky.route_start(b"abc", 0, 4096)
        assert not sticky.same_bytes(b"ab", 1, 5, b"bcdz")


@pytest.mark.skipif(COMPILED, reason="compiled: the scans are C calls, not counted from Python")
@pytest.mark.parametrize(
    ("uri", "cookies", "override", "key", "finds"),
    [
        # the path parameter: found once (twice more before: session_span ran again, then
        # path_parameter)
        ("/a;jsessionid=P.n1/x", ["JSESSIONID=C.n2"], None, b";jsessionid", 1),
        # JK_ROUTE: no scan at all
        ("/a;jsessionid=P.n1/x", ["JSESSIONID=C.n2"], "n2", b";jsessionid", 0),
        # several values: cookie_span stops at the second (3 finds: A, none after it, B),
        # session_text goes on from where A was found (4: A, none, B, none); before, the span
        # ran twice and the whole scan after it (3 + 3 + 4)
        ("/app/x", ["a=1; JSESSIONID=A.n1", "JSESSIONID=B.n2"], None, b"JSESSIONID", 7),
    ],
)
def test_a_session_read_as_text_is_scanned_for_once(
    monkeypatch, uri, cookies, override, key, finds
):
    calls: list[bytes] = []
    find = sticky._find

    def counted(header, p, n, name, i):
        calls.append(name)
        return find(header, p, n, name, i)

    monkeypatch.setattr(sticky, "_find", counted)
    request = facts(uri=uri, route_override=override)
    request.cookies = tuple(h.encode("latin-1") for h in cookies)
    plan = engine("n1", "n2").plan(request, 0.0)
    assert calls.count(key) == finds
    assert plan.session == session_id(request, DEFAULTS)


def test_several_values_are_joined_from_where_the_first_was_found():
    request = facts(uri="/app/x")
    request.cookies = (b"a=1", b"x=2; JSESSIONID=A.n1", b"JSESSIONID=B.n2, JSESSIONID=C.n3")
    k, at, stop = session_span(request, DEFAULTS)
    assert (k, at) == (SEVERAL, 1)
    assert sticky.session_text(request, DEFAULTS, k, at, stop) == "A.n1;B.n2;C.n3"
