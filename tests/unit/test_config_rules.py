"""RuleExtensions (balancer/config/rules.py): the value the frozen dataclass was, compiled or
not (scripts/test.sh runs this file on the sources too, PYJK_PURE=1)."""

from __future__ import annotations

import copy
from dataclasses import FrozenInstanceError

import pytest

from balancer.config import rules
from balancer.config.model import Activation, RuleExtensions


def test_the_defaults_say_use_the_workers():
    rule = RuleExtensions()
    assert rule.reply_timeout is None
    assert rule.sticky_ignore is False and rule.stateless is False
    assert rule.activation == {}
    assert rule.fail_on_status is None and rule.use_server_errors is None
    assert rule.session_cookie is None and rule.session_path is None
    assert rule.set_session_cookie is None and rule.session_cookie_path is None


def test_arguments_by_position_follow_the_field_order():
    values = (500, True, True, {"n1": Activation.DISABLED}, (503,), 500, "C", ";p", True, "/x")
    rule = RuleExtensions(*values)
    assert tuple(getattr(rule, name) for name in rules.FIELDS) == values
    assert rule == RuleExtensions(**dict(zip(rules.FIELDS, values, strict=True)))


def test_rules_compare_by_fields():
    assert RuleExtensions(stateless=True) == RuleExtensions(stateless=True)
    assert RuleExtensions(stateless=True) != RuleExtensions()
    assert RuleExtensions(activation={"n1": Activation.STOPPED}) != RuleExtensions()
    assert RuleExtensions() != object()
    assert copy.deepcopy(RuleExtensions(reply_timeout=7)) == RuleExtensions(reply_timeout=7)


def test_a_rule_cannot_be_changed():
    rule = RuleExtensions(stateless=True)
    with pytest.raises(FrozenInstanceError):
        rule.stateless = False  # type: ignore[misc]
    with pytest.raises(FrozenInstanceError):
        rule.session_cookie = "X"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del rule.reply_timeout  # type: ignore[misc]
    assert rule.stateless is True and rule.session_cookie is None


def test_a_rule_is_not_hashable_as_before():
    with pytest.raises(TypeError):
        hash(RuleExtensions())


def test_repr_names_every_field():
    text = repr(RuleExtensions(session_path=";s"))
    assert text.startswith("RuleExtensions(")
    assert all(f"{name}=" in text for name in rules.FIELDS)
    assert "session_path=';s'" in text
