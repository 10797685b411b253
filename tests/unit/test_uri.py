"""Request-path normalization for the URI map (balancer/uri.py; modjk.md §4.2, §9 item 9)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from balancer.uri import MAX_URI_LENGTH, NormalizedPath, Rejected, normalize, normalize_path


def norm(raw: str) -> str:
    result = normalize_path(raw)
    assert isinstance(result, NormalizedPath), result
    return result.path


def rejected(raw: str) -> Rejected:
    result = normalize_path(raw)
    assert isinstance(result, Rejected), result
    return result


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/", "/"),
        ("/app", "/app"),
        ("/app/", "/app/"),
        ("/app/index.html", "/app/index.html"),
    ],
)
def test_plain_paths_come_back_unchanged(raw, expected):
    assert norm(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/app;foo=1/x", "/app/x"),  # §9 item 9, observed on httpd + mod_jk
        ("/app/static/a.png;v=1", "/app/static/a.png"),
        ("/app/x;jsessionid=ABC.node1", "/app/x"),
        ("/app;a=1;b=2/x;c", "/app/x"),
        ("/app/;jsessionid=X", "/app/"),
        ("/;x", "/"),
    ],
)
def test_path_parameters_are_stripped_from_every_segment(raw, expected):
    assert norm(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("//app//x", "/app/x"),
        ("/app///x//", "/app/x/"),
        ("//", "/"),
        ("/app/./x", "/app/x"),
        ("/./app/.", "/app/"),
        ("/app/x/../y", "/app/y"),
        ("/app/x/..", "/app/"),
        ("/app/..", "/"),
        ("/app/../etc", "/etc"),  # httpd resolves this before mod_jk sees it
        ("/a/b/c/../../d", "/a/d"),
        ("/app/.../x", "/app/.../x"),  # "..." is an ordinary name
        ("/app/.hidden", "/app/.hidden"),
        ("/app/x..", "/app/x.."),
    ],
)
def test_empty_and_dot_segments_are_resolved(raw, expected):
    assert norm(raw) == expected


@pytest.mark.parametrize("raw", ["/..", "/../x", "/app/../../x", "/a/./../..", "/..;x/etc"])
def test_climbing_above_the_root_is_400(raw):
    assert rejected(raw).status == 400


def test_params_are_cut_before_dot_segments_are_resolved_like_the_backend_does():
    # Tomcat reads "..;x" as "..": the map must see the same target, not "/app/..;x/admin".
    assert norm("/app/..;x/admin") == "/admin"
    assert norm("/app/x/..;/y") == "/app/y"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/app/%73", "/app/s"),
        ("/%61pp/x", "/app/x"),
        ("/app/a%20b", "/app/a b"),
        ("/app/%25", "/app/%"),  # decoded once: "%25" is a literal "%"
        ("/app/%2e%2e/x", "/x"),  # encoded dots are dots
        ("/app/%2E/x", "/app/x"),
        ("/app/caf%C3%A9", "/app/café"),
        ("/app/%3f", "/app/?"),
    ],
)
def test_percent_escapes_are_decoded_once_before_matching(raw, expected):
    assert norm(raw) == expected


@pytest.mark.parametrize("raw", ["/app/%2F", "/app/a%2fb", "/app%2F..%2Fadmin"])
def test_an_encoded_slash_is_400(raw):
    assert "%2F" in rejected(raw).reason


@pytest.mark.parametrize("raw", ["/app/%3B", "/app/x%3b.png"])
def test_an_encoded_semicolon_is_400(raw):
    assert rejected(raw).status == 400


@pytest.mark.parametrize("raw", ["/app/%zz", "/app/%", "/app/%4", "/app/%4g/x", "/%%41"])
def test_invalid_percent_encoding_is_400(raw):
    result = rejected(raw)
    assert result.status == 400
    assert "percent" in result.reason


@pytest.mark.parametrize(
    "raw", ["/app/%00", "/app/%0a", "/app/x%7F", "/app/\x00", "/app/\t", "/\x85"]
)
def test_control_characters_raw_or_decoded_are_400(raw):
    result = rejected(raw)
    assert result.status == 400
    assert "control" in result.reason


def test_bytes_that_are_not_utf8_are_400():
    assert rejected("/app/%ff").status == 400
    assert rejected("/app/%C3").status == 400


def test_raw_non_ascii_text_is_kept():
    assert norm("/app/café") == "/app/café"


def test_paths_longer_than_4095_characters_are_414():
    assert norm("/" + "a" * (MAX_URI_LENGTH - 1)) == "/" + "a" * (MAX_URI_LENGTH - 1)
    assert rejected("/" + "a" * MAX_URI_LENGTH).status == 414


def test_the_length_limit_can_be_changed():
    assert isinstance(normalize_path("/abcdef", max_length=5), Rejected)
    assert normalize_path("/abcd", max_length=5) == NormalizedPath("/abcd")


@pytest.mark.parametrize("raw", ["*", "", "app/x", "http://example.com/app"])
def test_a_target_that_is_not_a_path_is_400(raw):
    assert rejected(raw).status == 400


def test_a_query_string_is_ignored_if_the_caller_left_it_on():
    assert norm("/app/x?a=/../..&b=%zz") == "/app/x"


def test_normalize_returns_the_bare_string_for_the_hot_path():
    assert normalize("/app;x/./y") == "/app/y"
    assert isinstance(normalize("/../"), Rejected)


# --- properties -------------------------------------------------------------------------------

_CHARS = st.sampled_from(
    [
        *("/", "/", "/", ".", ".", ";", "%", "2", "F", "f", "3", "B", "e", "E", "0", "a", "=", "?"),
        *("\x00", "\x7f", " ", "é", "%2e", "%2F", "%3B", "%00", "..", "//", "%C3%A9", "%ff"),
    ]
)
_PATHS = st.lists(_CHARS, max_size=40).map(lambda parts: "/" + "".join(parts))


@settings(max_examples=2000)
@given(st.one_of(_PATHS, st.text(max_size=60), st.text(max_size=60).map(lambda t: "/" + t)))
def test_normalization_never_raises_and_never_leaves_dot_segments_double_slashes_or_params(raw):
    result = normalize_path(raw)
    if isinstance(result, Rejected):
        assert result.status in (400, 414)
        return
    path = result.path
    assert path.startswith("/")
    assert "/../" not in path and not path.endswith("/..")
    assert "/./" not in path and not path.endswith("/.")
    assert "//" not in path
    assert ";" not in path
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in path)


@settings(max_examples=1000)
@given(_PATHS)
def test_normalizing_a_normalized_path_changes_nothing(raw):
    # Holds unless decoding produced a new "%" or "?" (decoding is done once, on purpose).
    result = normalize_path(raw)
    if isinstance(result, NormalizedPath) and not set(result.path) & {"%", "?"}:
        assert normalize_path(result.path) == result


def test_a_backslash_is_an_ordinary_character_not_a_separator():
    assert norm("/app\\..\\x") == "/app\\..\\x"
