"""The URI map: rule syntax, matching, priority and exclusions (balancer/mounts.py; modjk.md §4)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from balancer.config.errors import ConfigError
from balancer.config.model import (
    LbConfig,
    Location,
    MemberConfig,
    StatusConfig,
    WorkersConfig,
)
from balancer.mounts import (
    Mapped,
    MountRule,
    Rejected,
    RuleSource,
    Unmapped,
    UriMap,
    load_mounts,
    parse_mounts,
)

FILE = "uriworkermap.properties"


def workers_config(
    mounts: tuple[tuple[str, str, Location], ...] = (),
    worker_list: tuple[str, ...] = ("lb", "jkstatus", "other"),
) -> WorkersConfig:
    """The shipped names (lb over node1..node3, jkstatus) plus a second lb, "other"."""
    members = {n: MemberConfig(n, type="http") for n in ("node1", "node2", "node3", "node4")}
    return WorkersConfig(
        worker_list=worker_list,
        maintain=60,
        lbs={
            "lb": LbConfig("lb", balance_workers=("node1", "node2", "node3")),
            "other": LbConfig("other", balance_workers=("node4",)),
        },
        members=members,
        statuses={"jkstatus": StatusConfig("jkstatus")},
        mounts=mounts,
        file="workers.properties",
    )


def uri_map(text: str, **kwargs: object) -> UriMap:
    built, _ = parse_mounts(text, FILE, workers_config(**kwargs))  # type: ignore[arg-type]
    return built


def warnings_of(text: str, **kwargs: object) -> list[str]:
    _, warnings = parse_mounts(text, FILE, workers_config(**kwargs))  # type: ignore[arg-type]
    return [str(w) for w in warnings]


def errors_of(text: str, **kwargs: object) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_mounts(text, FILE, workers_config(**kwargs))  # type: ignore[arg-type]
    return [str(p) for p in caught.value.problems]


def worker_for(m: UriMap, raw: str) -> str | None:
    decision = m.match(raw)
    return decision.worker if isinstance(decision, Mapped) else None


# --- exact and wildchar rules -----------------------------------------------------------------


def test_an_exact_rule_matches_only_the_identical_path():
    m = uri_map("/app=lb")
    assert worker_for(m, "/app") == "lb"
    for path in ("/app/", "/app/x", "/apps", "/ap", "/APP"):
        assert worker_for(m, path) is None, path


def test_star_matches_any_sequence_including_slashes_and_nothing():
    m = uri_map("/app/*=lb\n/*.jsp=other")
    assert worker_for(m, "/app/") == "lb"
    assert worker_for(m, "/app/a/b/c") == "lb"
    assert worker_for(m, "/x/y/z.jsp") == "other"
    assert worker_for(m, "/.jsp") == "other"
    assert worker_for(m, "/app") is None
    assert worker_for(m, "/x/y/z.jspx") is None


def test_question_mark_matches_exactly_one_character_slash_included():
    m = uri_map("/a?c=lb")
    assert worker_for(m, "/abc") == "lb"
    assert worker_for(m, "/a/c") == "lb"
    assert worker_for(m, "/ac") is None
    assert worker_for(m, "/abbc") is None


def test_a_wildchar_rule_must_match_the_whole_path():
    m = uri_map("/app/*.png=lb")
    assert worker_for(m, "/app/a.png") == "lb"
    assert worker_for(m, "/app/a.png/x") is None
    assert worker_for(m, "/x/app/a.png") is None


def test_regex_characters_in_patterns_are_literal():
    m = uri_map("/app/v1.0/*=lb\n/a+b(c)[d]{2}$^.\\x=other")
    assert worker_for(m, "/app/v1.0/x") == "lb"
    assert worker_for(m, "/app/v1x0/x") is None
    assert worker_for(m, "/a+b(c)[d]{2}$^.\\x") == "other"
    assert worker_for(m, "/aab(c)[d]{2}$^.\\x") is None
    assert worker_for(m, "/a+b(c)dd$^.\\x") is None


def test_patterns_are_case_sensitive():
    assert worker_for(uri_map("/App/*=lb"), "/app/x") is None


def test_a_rule_is_matched_against_the_normalized_path():
    m = uri_map("/app/x=lb")
    for raw in ("/app;foo=1/x", "//app//x", "/app/./x", "/app/y/../x", "/%61pp/x", "/app/x;s=1"):
        assert worker_for(m, raw) == "lb", raw


def test_a_bad_path_is_rejected_before_any_rule_is_tried():
    m = uri_map("/*=lb")
    assert m.match("/../x") == Rejected(400, "request path climbs above the root ('..')")
    assert isinstance(m.match("/app/%2F"), Rejected)
    assert m.match("/" + "a" * 5000) == Rejected(414, m.match("/" + "a" * 5000).reason)  # type: ignore[union-attr]


def test_the_mapped_decision_carries_the_rule_and_the_normalized_path():
    decision = uri_map("/app|/*=lb").match("/app;jsessionid=A.node1/x")
    assert isinstance(decision, Mapped)
    assert decision.path == "/app/x"
    assert decision.rule.pattern == "/app/*"
    assert decision.rule.location == Location(FILE, 1)


def test_an_unmatched_path_is_unmapped():
    assert uri_map("/app=lb").match("/other") == Unmapped("/other")


# --- X|Y, prefixes ------------------------------------------------------------------------------


def test_bar_is_shorthand_for_two_rules():
    m = uri_map("/app|/*=lb")
    assert [r.pattern for r in m.rules] == ["/app/*", "/app"]
    assert worker_for(m, "/app") == "lb"
    assert worker_for(m, "/app/x") == "lb"
    assert all(r.location == Location(FILE, 1) for r in m.rules)


@pytest.mark.parametrize("key", ["/app|/*|/x", "/app|"])
def test_a_bar_needs_exactly_one_non_empty_tail(key):
    (error,) = errors_of(f"{key}=lb")
    assert error.startswith(f"{FILE}:1: {key}:")
    assert "X|Y" in error


def test_a_leading_minus_disables_the_rule():
    m = uri_map("-/app=lb")
    assert worker_for(m, "/app") is None
    (rule,) = m.rules
    assert not rule.enabled
    assert str(rule) == "-/app=lb"


def test_minus_bang_is_a_disabled_exclusion():
    m = uri_map("/app/*=lb\n-!/app/x=lb")
    assert worker_for(m, "/app/x") == "lb"
    excl = next(r for r in m.rules if r.exclusion)
    assert not excl.enabled
    assert str(excl) == "-!/app/x=lb"


def test_bang_minus_is_not_a_prefix_and_the_error_says_so():
    (error,) = errors_of("!-/app/x=lb")
    assert error.startswith(f"{FILE}:1: !-/app/x:")
    assert "'-!'" in error


@pytest.mark.parametrize(("key", "hint"), [("*.jsp", "'/*.jsp'"), ("app/*", "start with '/'")])
def test_a_pattern_must_start_with_a_slash(key, hint):
    (error,) = errors_of(f"# comment\n{key}=lb")
    assert error.startswith(f"{FILE}:2: ")
    assert hint in error


# --- exclusions -------------------------------------------------------------------------------


def test_an_exclusion_for_the_matched_worker_unmaps_the_path():
    m = uri_map("/app/*=lb\n!/app/static/*.png=lb")
    decision = m.match("/app/static/a.png")
    assert isinstance(decision, Unmapped)
    assert decision.excluded_by is not None and decision.excluded_by.pattern == "/app/static/*.png"
    assert worker_for(m, "/app/static/a.css") == "lb"


def test_an_exclusion_still_catches_a_path_with_params():
    m = uri_map("/app/*=lb\n!/app/static/*.png=lb")
    assert isinstance(m.match("/app/static/a.png;v=1"), Unmapped)  # §9 item 9


def test_a_star_exclusion_applies_to_every_worker():
    m = uri_map("/app/*=lb\n/admin/*=jkstatus\n!/*/secret=*")
    assert isinstance(m.match("/app/secret"), Unmapped)
    assert isinstance(m.match("/admin/secret"), Unmapped)
    assert worker_for(m, "/app/public") == "lb"


def test_an_exclusion_for_another_worker_does_not_apply():
    m = uri_map("/app/*=lb\n/x/*=other\n!/app/x=other")
    assert worker_for(m, "/app/x") == "lb"


def test_after_an_exclusion_there_is_no_fallback_to_a_lower_rule():
    m = uri_map("/app/*=lb\n/*=jkstatus\n!/app/x=lb")
    assert isinstance(m.match("/app/x"), Unmapped)
    assert worker_for(m, "/elsewhere") == "jkstatus"


def test_an_exclusion_can_be_exact_or_wildchar_and_shorter_than_the_rule():
    m = uri_map("/app/deep/*=lb\n!/*.bak=lb\n!/app/deep/x=lb")
    assert isinstance(m.match("/app/deep/a/b.bak"), Unmapped)
    assert isinstance(m.match("/app/deep/x"), Unmapped)
    assert worker_for(m, "/app/deep/y") == "lb"


def test_disabled_rules_are_ignored_everywhere():
    m = uri_map("-/app/*=lb\n/*=other\n-!/*.png=other\n-!/app/x=*")
    assert worker_for(m, "/app/x") == "other"
    assert worker_for(m, "/a.png") == "other"
    assert len(m.rules) == 4  # still listed (the status page shows them)


def test_star_names_a_worker_only_in_an_exclusion():
    (error,) = errors_of("/app=*")
    assert "only allowed in an exclusion" in error


def test_an_exclusion_for_a_worker_nothing_maps_is_a_warning():
    (warning,) = warnings_of("/app/*=lb\n!/app/x=other")
    assert warning.startswith(f"{FILE}:2: ")
    assert "no rule maps" in warning


# --- priority (§4.3) ---------------------------------------------------------------------------


def test_more_slashes_beat_a_longer_pattern():
    m = uri_map("/a*xxxxxxxxxxxxxxxxxxxxxxxx=other\n/a/b*=lb")
    assert worker_for(m, "/a/bxxxxxxxxxxxxxxxxxxxxxxxx") == "lb"


def test_with_equal_slashes_the_longer_pattern_wins():
    m = uri_map("/app/*=lb\n/app/*.jsp=other")
    assert worker_for(m, "/app/x.jsp") == "other"
    assert worker_for(m, "/app/x.html") == "lb"


def test_a_longer_wildchar_rule_beats_an_exact_rule():
    m = uri_map("/app/x=other\n/app/x*=lb")
    assert worker_for(m, "/app/x") == "lb"


def test_a_longer_exact_rule_beats_a_wildchar_rule():
    m = uri_map("/app/*=lb\n/app/xy=other")
    assert worker_for(m, "/app/xy") == "other"
    assert worker_for(m, "/app/xz") == "lb"


def test_equal_rank_goes_to_the_earlier_line():
    m = uri_map("/app/*=lb\n/app/x=other")  # same slashes, same length
    assert worker_for(m, "/app/x") == "lb"
    m = uri_map("/app/x=other\n/app/*=lb")
    assert worker_for(m, "/app/x") == "other"


def test_rules_are_listed_in_priority_order():
    m = uri_map("/a=lb\n/a/b/c=lb\n/a/bb=lb\n/a/b=lb")
    assert [r.pattern for r in m.rules] == ["/a/b/c", "/a/bb", "/a/b", "/a"]


def test_a_workers_properties_mount_loses_to_the_uri_map_on_a_tie():
    mounts = (("/app/*", "other", Location("workers.properties", 7)),)
    m = uri_map("/app/*=lb", mounts=mounts)
    assert worker_for(m, "/app/x") == "lb"
    assert [r.source for r in m.rules] == [RuleSource.URIWORKERMAP, RuleSource.WORKERS_MOUNT]


def test_a_workers_properties_mount_still_wins_by_slashes_and_length():
    mounts = (
        ("/app/deep/*", "other", Location("workers.properties", 7)),
        ("/solo", "other", Location("workers.properties", 8)),
    )
    m = uri_map("/app/*=lb", mounts=mounts)
    assert worker_for(m, "/app/deep/x") == "other"
    assert worker_for(m, "/app/x") == "lb"
    assert worker_for(m, "/solo") == "other"


def test_mount_rules_take_prefixes_and_bars_and_keep_their_location():
    loc = Location("workers.properties", 12)
    m = uri_map("", mounts=(("/m|/*", "other", loc), ("!/m/private", "other", loc)))
    assert worker_for(m, "/m") == "other"
    assert worker_for(m, "/m/x") == "other"
    assert isinstance(m.match("/m/private"), Unmapped)
    assert {r.location for r in m.rules} == {loc}


def test_a_mount_naming_an_unknown_worker_is_an_error_at_its_location():
    (error,) = errors_of("", mounts=(("/m", "ghost", Location("workers.properties", 3)),))
    assert error.startswith("workers.properties:3: /m:")


def test_the_same_pattern_mapped_twice_keeps_the_later_line_with_a_warning():
    text = "/app/*=lb\n/app|/*=other"
    m = uri_map(text)
    assert worker_for(m, "/app/x") == "other"
    (warning,) = warnings_of(text)
    assert warning.startswith(f"{FILE}:2: /app/*:")
    assert f"{FILE}:1" in warning


def test_a_repeated_key_overrides_with_a_warning():
    text = "/app=lb\n/app=other"
    assert worker_for(uri_map(text), "/app") == "other"
    (warning,) = warnings_of(text)
    assert "overrides the one on line 1" in warning


# --- workers ----------------------------------------------------------------------------------


def test_a_rule_naming_an_unknown_worker_is_an_error_with_a_suggestion():
    (error,) = errors_of("/a=lb\n/b=lbb")
    assert error.startswith(f"{FILE}:2: /b: no worker named 'lbb' in workers.properties")
    assert "did you mean 'lb'?" in error


def test_a_disabled_rule_naming_an_unknown_worker_only_warns():
    (warning,) = warnings_of("-/b=gone")
    assert "no worker named 'gone'" in warning
    assert "disabled" in warning


def test_mapping_a_member_outside_worker_list_warns():
    m = uri_map("/n1/*=node1")
    assert worker_for(m, "/n1/x") == "node1"
    (warning,) = warnings_of("/n1/*=node1")
    assert "not in worker.list" in warning


def test_a_missing_worker_name_is_an_error():
    (error,) = errors_of("/a=;stateless=1")
    assert "no worker named before ';'" in error


def test_every_problem_is_reported_at_once():
    errors = errors_of("/a=nobody\nb=lb\n/c=lb;bogus=1\nno equals sign\n/d=$(UNDEFINED)")
    lines = sorted(int(e.split(":")[1]) for e in errors)
    assert lines == [1, 2, 3, 4, 5]


def test_variables_come_from_the_environment_given():
    m, _ = parse_mounts("/app/*=$(TARGET)", FILE, workers_config(), environ={"TARGET": "other"})
    assert worker_for(m, "/app/x") == "other"


def test_rules_for_lists_a_workers_rules_in_priority_order():
    m = uri_map("/app|/*=lb\n/jk=jkstatus\n!/app/xy=lb")
    assert [str(r) for r in m.rules_for("lb")] == ["!/app/xy=lb", "/app/*=lb", "/app=lb"]


def test_an_empty_map_maps_nothing():
    m = uri_map("# nothing\n")
    assert m.rules == ()
    assert m.match("/") == Unmapped("/")


# --- loading from a file --------------------------------------------------------------------


def test_load_mounts_reads_the_file_and_names_it_in_errors(tmp_path):
    path = tmp_path / "uriworkermap.properties"
    path.write_text("/app|/*=lb\n/x=nobody\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_mounts(path, workers_config(), environ={})
    assert str(caught.value).startswith(f"{path}:2: /x:")
    path.write_text("/app|/*=lb\n", encoding="utf-8")
    m, warnings = load_mounts(path, workers_config(), environ={})
    assert warnings == []
    assert worker_for(m, "/app/y") == "lb"


def test_load_mounts_reports_a_missing_file(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_mounts(tmp_path / "nope.properties", workers_config())
    assert "cannot read the URI map" in str(caught.value)


# --- the index and caches agree with a plain scan -----------------------------------------------


def _reference_match(rules: list[MountRule], path: str) -> tuple[str, str | None]:
    """mod_jk's algorithm, written as plainly as possible: scan in priority order."""

    def hits(rule: MountRule) -> bool:
        regex = "".join(
            ".*" if c == "*" else "." if c == "?" else re.escape(c) for c in rule.pattern
        )
        return re.fullmatch(regex, path, re.DOTALL) is not None

    ordered = sorted(rules, key=MountRule.priority)
    for rule in ordered:
        if rule.enabled and not rule.exclusion and hits(rule):
            for excl in ordered:
                applies = excl.enabled and excl.exclusion and excl.worker in (rule.worker, "*")
                if applies and hits(excl):
                    return ("excluded", excl.pattern)
            return ("mapped", rule.pattern)
    return ("unmapped", None)


_SEGMENTS = st.sampled_from(["a", "b", "ab", "x.png", "*", "?", "a*", "*.png", "b?"])
_PATTERNS = st.lists(_SEGMENTS, min_size=0, max_size=3).map(lambda s: "/" + "/".join(s))
_RULES = st.lists(
    st.tuples(
        _PATTERNS,
        st.sampled_from(["lb", "other", "*"]),
        st.booleans(),
        st.booleans(),
        st.sampled_from(list(RuleSource)),
    ),
    max_size=12,
)
_REQUESTS = st.lists(st.sampled_from(["a", "b", "ab", "x.png", "abb", "c", ""]), max_size=4).map(
    lambda s: "/" + "/".join(s)
)


@settings(max_examples=400, deadline=None)
@given(_RULES, st.lists(_REQUESTS, min_size=1, max_size=8))
def test_the_indexed_map_decides_like_a_plain_priority_scan(specs, paths):
    rules = [
        MountRule(p, w if excl else (w if w != "*" else "lb"), on, excl, source=src, order=i)
        for i, (p, w, on, excl, src) in enumerate(specs)
    ]
    cached, uncached = UriMap(rules), UriMap(rules, cache_size=0)
    for path in paths + paths:  # the second round is served from the caches
        expected = _reference_match(rules, path)
        for m in (cached, uncached):
            decision = m.match_path(path)
            if isinstance(decision, Mapped):
                got = ("mapped", decision.rule.pattern)
            elif decision.excluded_by is not None:
                got = ("excluded", decision.excluded_by.pattern)
            else:
                got = ("unmapped", None)
            # Equal patterns from one source tie; the reference and the map both take the
            # earlier load order, so even the chosen rule agrees.
            assert got == expected, (path, [str(r) for r in m.rules])


def test_raw_paths_that_differ_only_in_params_get_the_same_decision():
    m = uri_map("/app|/*=lb")
    first = m.match("/app/x;jsessionid=AAA.node1")
    second = m.match("/app/x;jsessionid=BBB.node2")
    assert first == second == m.match("/app/x")


def test_an_unknown_worker_does_not_hide_errors_in_the_same_rules_extensions():
    errors = errors_of("/a=nobody;bogus=1")
    assert len(errors) == 2
