"""Rule extensions: ``pattern=worker;ext=val`` (balancer/mounts.py; modjk.md §4.5)."""

from __future__ import annotations

import pytest

from balancer.config.model import Activation, RuleExtensions
from balancer.mounts import EXTENSIONS, Mapped
from tests.unit.test_mounts import FILE, errors_of, uri_map, warnings_of


def extensions(value: str) -> RuleExtensions:
    m = uri_map(f"/app/*={value}")
    decision = m.match("/app/x")
    assert isinstance(decision, Mapped)
    return decision.rule.extensions


def test_a_rule_without_extensions_overrides_nothing():
    assert extensions("lb") == RuleExtensions()


def test_extensions_apply_to_both_rules_of_a_bar():
    m = uri_map("/app|/*=lb;stateless=1")
    assert all(r.extensions.stateless for r in m.rules)


@pytest.mark.parametrize(
    ("text", "expected"), [("5000", 5000), ("0", 0), ("-1", None), ("2147483647", 2**31 - 1)]
)
def test_reply_timeout_is_milliseconds_and_minus_one_means_the_workers(text, expected):
    assert extensions(f"lb;reply_timeout={text}").reply_timeout == expected


@pytest.mark.parametrize("text", ["-2", "5s", "abc", "1.5", "2147483648", "99999999999999999999"])
def test_a_bad_reply_timeout_is_an_error_at_its_line(text):
    (error,) = errors_of(f"\n/app/*=lb;reply_timeout={text}")
    assert error.startswith(f"{FILE}:2: /app/*: reply_timeout:")


@pytest.mark.parametrize("name", ["sticky_ignore", "stateless"])
def test_integer_flags_are_on_when_non_zero(name):
    assert getattr(extensions(f"lb;{name}=1"), name) is True
    assert getattr(extensions(f"lb;{name}=2"), name) is True
    assert getattr(extensions(f"lb;{name}=0"), name) is False
    (error,) = errors_of(f"/app/*=lb;{name}=yes")
    assert "whole number" in error


def test_activation_lists_map_each_member_to_its_activation():
    ext = extensions("lb;active=node1;disabled=node2, node3")
    assert ext.activation == {
        "node1": Activation.ACTIVE,
        "node2": Activation.DISABLED,
        "node3": Activation.DISABLED,
    }
    assert extensions("lb;stopped=node1 node2").activation == {
        "node1": Activation.STOPPED,
        "node2": Activation.STOPPED,
    }


def test_an_activation_naming_a_member_the_lb_lacks_is_an_error():
    (error,) = errors_of("/app/*=lb;disabled=node4")
    assert "'node4' is not a member of lb 'lb'" in error
    assert "node1, node2, node3" in error


def test_an_activation_on_a_worker_that_is_not_an_lb_is_an_error():
    for worker in ("jkstatus", "node1"):
        errors = errors_of(f"/app/*={worker};stopped=node1")
        assert any("need an lb worker" in e for e in errors), errors


def test_one_member_with_two_activations_is_an_error():
    (error,) = errors_of("/app/*=lb;active=node1;stopped=node1")
    assert "two activations" in error


@pytest.mark.parametrize("name", sorted(EXTENSIONS))
def test_every_extension_may_be_given_only_once(name):
    value = {"active": "node1", "disabled": "node1", "stopped": "node1"}.get(name, "1")
    errors = errors_of(f"/app/*=lb;{name}={value};{name}={value}")
    assert any(f"{name} is given twice" in e for e in errors), errors


def test_fail_on_status_is_a_list_of_codes_with_minus_for_soft():
    assert extensions("lb;fail_on_status=503,-404 500").fail_on_status == (503, -404, 500)


@pytest.mark.parametrize("text", ["99", "600", "5xx", "-700"])
def test_fail_on_status_rejects_what_is_not_a_status(text):
    (error,) = errors_of(f"/app/*=lb;fail_on_status=503,{text}")
    assert "fail_on_status:" in error


@pytest.mark.parametrize(("text", "expected"), [("500", 500), ("400", 400), ("0", None)])
def test_use_server_errors_is_a_status_threshold(text, expected):
    assert extensions(f"lb;use_server_errors={text}").use_server_errors == expected


@pytest.mark.parametrize("text", ["42", "1000", "-500"])
def test_use_server_errors_rejects_a_non_status(text):
    (error,) = errors_of(f"/app/*=lb;use_server_errors={text}")
    assert "use_server_errors:" in error


def test_session_cookie_takes_a_cookie_name():
    assert extensions("lb;session_cookie=APPSESSION").session_cookie == "APPSESSION"
    (error,) = errors_of("/app/*=lb;session_cookie=a b")
    assert "cookie name" in error


def test_session_path_takes_the_next_token_when_written_with_its_semicolon():
    # mod_jk quirk kept: "session_path=;name" reads as an empty value plus the token "name".
    assert extensions("lb;session_path=;appsession").session_path == ";appsession"


def test_session_path_gets_its_leading_semicolon_when_written_without_it():
    assert extensions("lb;session_path=appsession").session_path == ";appsession"


def test_session_path_rejects_a_name_that_is_not_a_token():
    (error,) = errors_of("/app/*=lb;session_path=a/b")
    assert "session_path:" in error


@pytest.mark.parametrize(
    ("text", "expected"), [("true", True), ("on", True), ("1", True), ("no", False)]
)
def test_set_session_cookie_is_a_boolean(text, expected):
    assert extensions(f"lb;set_session_cookie={text}").set_session_cookie is expected


def test_set_session_cookie_rejects_a_non_boolean():
    (error,) = errors_of("/app/*=lb;set_session_cookie=maybe")
    assert "set_session_cookie:" in error


def test_session_cookie_path_is_a_path_or_empty_for_none():
    assert extensions("lb;session_cookie_path=/app").session_cookie_path == "/app"
    assert extensions("lb;session_cookie_path=").session_cookie_path == ""
    (error,) = errors_of("/app/*=lb;session_cookie_path=app")
    assert "starting with '/'" in error


def test_an_unknown_extension_is_an_error_naming_the_nearest_known_one():
    (error,) = errors_of("/app/*=lb;reply_timout=100")
    assert error.startswith(f"{FILE}:1: /app/*: unknown rule extension 'reply_timout'")
    assert "did you mean 'reply_timeout'?" in error


def test_an_unknown_extension_far_from_any_lists_the_known_ones():
    (error,) = errors_of("/app/*=lb;zzz=1")
    assert "known: reply_timeout, sticky_ignore" in error


@pytest.mark.parametrize("token", ["stateless", "reply_timeout="])
def test_an_extension_without_a_value_is_an_error(token):
    (error,) = errors_of(f"/app/*=lb;{token}")
    assert "needs a value" in error


def test_empty_tokens_between_semicolons_are_ignored():
    assert extensions("lb;;stateless=1;").stateless is True


def test_lb_only_extensions_on_a_member_warn_that_they_do_nothing():
    warnings = warnings_of("/n/*=node1;stateless=1;session_cookie=X")
    assert any("stateless has no effect: 'node1' is not an lb" in w for w in warnings)
    assert any("session_cookie has no effect: 'node1' is not an lb" in w for w in warnings)
    assert warnings_of("/app/*=other;sticky_ignore=1") == []


def test_backend_extensions_on_the_status_worker_warn_that_they_do_nothing():
    warnings = warnings_of("/jk/*=jkstatus;reply_timeout=10;fail_on_status=503")
    assert any("reply_timeout has no effect on status worker" in w for w in warnings)
    assert any("fail_on_status has no effect on status worker" in w for w in warnings)


def test_extensions_on_an_exclusion_warn_that_they_do_nothing():
    (warning,) = warnings_of("/app/*=lb\n!/app/x=lb;stateless=1")
    assert warning.startswith(f"{FILE}:2: ")
    assert "exclusion" in warning


def test_errors_in_extensions_drop_the_rule_but_the_others_are_still_checked():
    errors = errors_of("/a/*=lb;stateless=x\n/b/*=lb;reply_timeout=y\n/c/*=lb;bogus=1")
    assert [e.split(":")[1] for e in errors] == ["1", "2", "3"]
