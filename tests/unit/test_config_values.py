"""Value parsing of workers.properties (mod_jk reference §1.2), and where pyjk is stricter."""

from __future__ import annotations

import pytest

from balancer.config.directives import AJP13, GLOBAL, HTTP, LB, directive_for
from balancer.config.model import Activation, Lock, Method
from balancer.config.values import (
    BadValue,
    parse_address,
    parse_bool,
    parse_host,
    parse_int,
    parse_name,
    parse_networks,
    parse_path,
    parse_ping_mode,
    parse_ratings,
    parse_status_list,
    parse_token,
    parse_value,
    parse_word,
    split_list,
    worker_name_problems,
)


def value(name: str, text: str, wtype: str = HTTP) -> object:
    directive = directive_for(name, wtype)
    assert directive is not None
    return parse_value(directive, text).value


def warnings_of(name: str, text: str, wtype: str = HTTP) -> list[str]:
    directive = directive_for(name, wtype)
    assert directive is not None
    return parse_value(directive, text).warnings


@pytest.mark.parametrize("text", ["on", "ON", "On", "1", "true", "True", "yes", "Y", "t", "yup"])
def test_boolean_true_spellings(text):
    assert parse_bool(text) is True


@pytest.mark.parametrize("text", ["off", "OFF", "0", "false", "FALSE", "no", "N", "f", "nope"])
def test_boolean_false_spellings(text):
    assert parse_bool(text) is False


@pytest.mark.parametrize("text", ["maybe", "10", "2", "", "-", "enabled", "oui"])
def test_unknown_boolean_is_an_error_not_the_default(text):
    with pytest.raises(BadValue, match="expected a boolean"):
        parse_bool(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8009", (8009, "")),
        ("1k", (1024, "")),
        ("2K", (2048, "")),
        ("1m", (1048576, "")),
        ("3M", (3 * 1048576, "")),
        ("60s", (60, "s")),
        ("1kb", (1024, "b")),
        ("1.5", (1, ".5")),
        ("+5", (5, "")),
        ("-3", (-3, "")),
    ],
)
def test_integers_take_k_and_m_and_ignore_trailing_text(text, expected):
    assert parse_int(text) == expected


@pytest.mark.parametrize("text", ["abc", "k1", "", " 5", "$(NOPE)", "٣", "x10"])
def test_value_not_starting_with_a_number_is_an_error(text):
    with pytest.raises(BadValue, match="expected a whole number"):
        parse_int(text)


@pytest.mark.parametrize("text", ["3000000000", "4096m", "2097152k"])
def test_integers_beyond_a_c_int_are_an_error(text):
    with pytest.raises(BadValue, match="too large"):
        parse_int(text)


def test_ignored_trailing_text_warns_with_the_unit():
    assert value("socket_connect_timeout", "5s") == 5
    (warning,) = warnings_of("socket_connect_timeout", "5s")
    assert "5 ms" in warning
    assert "'s'" in warning


def test_clean_integer_has_no_warning():
    assert warnings_of("port", "8101") == []


@pytest.mark.parametrize(
    ("name", "wtype", "text"),
    [
        ("lbfactor", HTTP, "0"),
        ("lbfactor", HTTP, "-3"),
        ("retries", HTTP, "0"),
        ("retries", LB, "0"),
        ("lb_retries", LB, "-1"),
        ("recover_time", LB, "0"),
    ],
)
def test_values_below_one_are_raised_to_one_with_a_warning(name, wtype, text):
    assert value(name, text, wtype) == 1
    assert "minimum" in warnings_of(name, text, wtype)[0]


def test_negative_value_without_a_minimum_is_an_error():
    with pytest.raises(BadValue, match="negative"):
        value("socket_timeout", "-1")


def test_port_zero_is_an_error_that_mentions_mod_jks_silent_stop():
    with pytest.raises(BadValue, match="Stopped"):
        value("port", "0")


def test_port_above_65535_is_an_error():
    with pytest.raises(BadValue, match="between 1 and 65535"):
        value("port", "70000")


@pytest.mark.parametrize(("text", "expected"), [("9000", 9216), ("100000", 65536), ("100", 8192)])
def test_max_packet_size_is_rounded_and_clamped(text, expected):
    assert value("max_packet_size", text, AJP13) == expected
    assert warnings_of("max_packet_size", text, AJP13)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("R", Method.REQUEST),
        ("request", Method.REQUEST),
        ("Traffic", Method.TRAFFIC),
        ("b", Method.BUSYNESS),
        ("Sessions", Method.SESSIONS),
        ("N", Method.NEXT),
        ("0", Method.REQUEST),
        ("2", Method.BUSYNESS),
        ("4", Method.NEXT),
    ],
)
def test_method_by_first_letter_or_digit(text, expected):
    assert value("method", text, LB) is expected


@pytest.mark.parametrize("text", ["X", "5", "-", "Zebra"])
def test_unknown_method_letter_is_an_error_listing_the_choices(text):
    with pytest.raises(BadValue, match=r"R \(Request\).*N \(Next\).*0-4"):
        value("method", text, LB)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("O", Lock.OPTIMISTIC), ("pessimistic", Lock.PESSIMISTIC), ("1", Lock.PESSIMISTIC)],
)
def test_lock_by_first_letter_or_digit(text, expected):
    assert value("lock", text, LB) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Active", Activation.ACTIVE),
        ("d", Activation.DISABLED),
        ("Stopped", Activation.STOPPED),
        ("0", Activation.ACTIVE),
        ("1", Activation.DISABLED),
        ("2", Activation.STOPPED),
    ],
)
def test_activation_by_first_letter_or_digit(text, expected):
    assert value("activation", text) is expected


def test_unknown_activation_is_an_error():
    with pytest.raises(BadValue, match=r"A \(Active\)"):
        value("activation", "enabled")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("A", "CPI"), ("cp", "CP"), ("PC", "CP"), ("I", "I"), ("C,P", "CP"), ("a", "CPI")],
)
def test_ping_mode_letters_are_canonical(text, expected):
    assert parse_ping_mode(text) == expected


def test_unknown_ping_mode_letter_is_an_error():
    with pytest.raises(BadValue, match="'X'"):
        parse_ping_mode("CX")


def test_lists_split_on_runs_of_space_tab_and_comma():
    assert split_list("a b,c\t,,d  ") == ["a", "b", "c", "d"]
    assert split_list(",") == []


def test_fail_on_status_reads_codes_and_soft_codes():
    assert parse_status_list("503, -404 500") == (503, -404, 500)


@pytest.mark.parametrize("text", ["abc", "5030", "99", "503x", "--404", "600"])
def test_fail_on_status_refuses_what_is_not_a_status(text):
    with pytest.raises(BadValue, match="HTTP status codes"):
        parse_status_list(text)


def test_rating_rules_are_lowercased():
    assert parse_ratings("a.o,D.I e") == ("a.o", "d.i", "e")


@pytest.mark.parametrize("text", ["x", "a.x", "o.a", "ao"])
def test_unknown_rating_rule_is_an_error(text):
    with pytest.raises(BadValue, match="rating rules"):
        parse_ratings(text)


def test_networks_are_normalised():
    assert parse_networks("10.1.2.3/8 192.0.2.7, ::1/128") == (
        "10.0.0.0/8",
        "192.0.2.7/32",
        "::1/128",
    )


@pytest.mark.parametrize("text", ["300.0.0.0/8", "10.0.0.0/33", "localhost"])
def test_bad_network_is_an_error(text):
    with pytest.raises(BadValue, match="expected a network"):
        parse_networks(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("localhost", "localhost"), ("127.0.0.1", "127.0.0.1"), ("[::1]", "::1"), ("::1", "::1")],
)
def test_host_names_and_ip_literals(text, expected):
    assert parse_host(text) == expected


def test_host_with_port_is_refused_with_a_pointer_to_port():
    with pytest.raises(BadValue, match="set the port directive"):
        parse_host("backend:8080")


@pytest.mark.parametrize("text", ["http://x", "a b", "x" * 254])
def test_malformed_host_is_an_error(text):
    with pytest.raises(BadValue, match="host name"):
        parse_host(text)


def test_source_must_be_an_ip_address():
    assert parse_address("127.0.0.1") == "127.0.0.1"
    with pytest.raises(BadValue, match="IP address"):
        parse_address("localhost")


def test_route_names_allow_dots_and_at_most_63_characters():
    assert parse_name("node1.dc1") == "node1.dc1"
    assert parse_name("r" * 63) == "r" * 63
    for bad in ("r" * 64, "a b", "a;b"):
        with pytest.raises(BadValue, match="63 characters"):
            parse_name(bad)


def test_paths_must_be_absolute_without_spaces():
    assert parse_path("/-/ready") == "/-/ready"
    for bad in ("ready", "/a b"):
        with pytest.raises(BadValue, match="absolute path"):
            parse_path(bad)


def test_cookie_name_must_be_a_token():
    assert parse_token("JSESSIONID") == "JSESSIONID"
    for bad in ("a;b", "a=b", "a b"):
        with pytest.raises(BadValue, match="cookie name"):
            parse_token(bad)


def test_worker_names():
    assert worker_name_problems("node-1_x") == ([], [])
    errors, warnings = worker_name_problems("a.b")
    assert errors == []
    assert "'.'" in warnings[0]
    assert worker_name_problems("a/b")[0]
    assert worker_name_problems("n" * 63) == ([], [])
    assert "64 characters" in worker_name_problems("n" * 64)[0][0]


# --- pyjk's edge limits (global): words and one-sided bounds ----------------------------------

UNDERSCORES = {"reject": "reject", "drop": "drop", "allow": "allow"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [("reject", "reject"), ("Drop", "drop"), ("ALLOW", "allow"), ("r", "reject"), ("D", "drop")],
)
def test_a_word_is_read_whole_or_by_its_first_letter(text, expected):
    assert parse_word(text, UNDERSCORES) == expected
    assert value("underscores_in_headers", text, GLOBAL) == expected


@pytest.mark.parametrize("text", ["deny", "accept", "rejected", "on", "x", ""])
def test_other_words_are_an_error_listing_the_choices(text):
    with pytest.raises(BadValue, match="expected reject, drop or allow"):
        parse_word(text, UNDERSCORES)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("header_timeout", "0"),
        ("keepalive_timeout", "0"),
        ("body_timeout", "0"),
        ("shutdown_timeout", "0"),
        ("max_headers", "0"),
        ("max_connections", "0"),
        ("max_head_size", "1023"),
    ],
)
def test_edge_limits_below_their_bound_are_errors_not_clamped(name, text):
    directive = directive_for(name, GLOBAL)
    assert directive is not None and directive.bounds is not None
    with pytest.raises(BadValue, match=f"must be at least {directive.bounds[0]}, found {text}"):
        value(name, text, GLOBAL)


@pytest.mark.parametrize(
    "name",
    ["header_timeout", "max_body_size", "max_connections_per_ip", "mount_reload", "max_head_size"],
)
def test_negative_edge_limits_are_errors(name):
    with pytest.raises(BadValue, match="negative"):
        value(name, "-1", GLOBAL)


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("max_head_size", "1024", 1024),
        ("max_head_size", "64k", 65536),
        ("max_body_size", "0", 0),
        ("max_body_size", "10m", 10 * 1024 * 1024),
        ("max_connections_per_ip", "0", 0),
        ("mount_reload", "0", 0),
        ("header_timeout", "1", 1),
        ("max_connections", "1", 1),
    ],
)
def test_edge_limits_at_their_bound_or_with_a_suffix_are_read(name, text, expected):
    assert value(name, text, GLOBAL) == expected
    assert warnings_of(name, text, GLOBAL) == []


def test_an_edge_limit_has_no_upper_bound_below_a_c_int():
    assert value("max_connections", "2147483647", GLOBAL) == 2**31 - 1
