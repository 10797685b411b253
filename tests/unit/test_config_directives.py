"""The directive table: in step with the model, with mod_jk's list/clamp rules, and the docs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from balancer.config import directives as dt
from balancer.config.docs import render
from balancer.config.model import BalancerSettings, LbConfig, MemberConfig, StatusConfig
from balancer.mounts.extensions import EXTENSIONS

NOT_DIRECTIVES = {"name", "extra", "location", "type", "origin", "joined_at"}
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("cls", "types"),
    [(MemberConfig, (dt.HTTP, dt.AJP13)), (LbConfig, (dt.LB,)), (StatusConfig, (dt.STATUS,))],
)
def test_model_fields_and_table_entries_match_with_equal_defaults(cls, types):
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in NOT_DIRECTIVES}
    table = {d.name: d for t in types for d in dt.directives_for_type(t) if d.stored}
    assert set(fields) == set(table)
    for name, f in fields.items():
        assert f.default == table[name].default, name


def test_pyjk_only_globals_are_the_balancer_settings_with_equal_defaults():
    defaults = BalancerSettings()
    names = {f.name for f in dataclasses.fields(BalancerSettings)}
    table = {d.name: d for d in dt.directives_for_type(dt.GLOBAL) if d.pyjk_only}
    assert names == set(table)
    for name, d in table.items():
        assert getattr(defaults, name) == d.default, name
        assert d.types == {dt.GLOBAL}, name
        assert d.elsewhere, f"{name}: name the httpd/nginx equivalent for the docs"


def test_mod_jk_globals_are_not_balancer_settings():
    assert {d.name for d in dt.directives_for_type(dt.GLOBAL) if not d.pyjk_only} == {
        "list", "maintain"
    }  # fmt: skip


def test_list_directives_are_mod_jks_plus_allow_and_trusted_proxies():
    listed = {d.name for d in dt.DIRECTIVES if d.is_list}
    assert listed == {
        "list", "balance_workers", "mount", "user", "good", "bad", "fail_on_status", "allow",
        "trusted_proxies", "cluster_allow",
    }  # fmt: skip
    assert dt.is_list_key("worker.trusted_proxies")


def test_a_name_used_twice_covers_disjoint_worker_types():
    seen: dict[str, frozenset[str]] = {}
    for d in dt.DIRECTIVES:
        assert not (seen.get(d.name, frozenset()) & d.types), d.name
        seen[d.name] = seen.get(d.name, frozenset()) | d.types


def test_mod_jk_clamps_below_one():
    for name, wtype in [
        ("lbfactor", dt.HTTP),
        ("retries", dt.HTTP),
        ("retries", dt.LB),
        ("lb_retries", dt.LB),
        ("recover_time", dt.LB),
    ]:
        directive = dt.directive_for(name, wtype)
        assert directive is not None and directive.minimum == 1


def test_pyjk_only_directives():
    assert {d.name for d in dt.DIRECTIVES if d.pyjk_only} == {
        "health_check_path", "health_check_interval", "health_check_rise",
        "health_check_fall", "slow_start", "allow", "token", "cluster", "cluster_template",
        "cluster_allow",
    } | {f.name for f in dataclasses.fields(BalancerSettings)}  # fmt: skip


def test_member_only_directives():
    assert {d.name for d in dt.DIRECTIVES if d.member_only} == {
        "route", "domain", "redirect", "distance", "activation", "lbfactor"
    }  # fmt: skip


def test_aliases_point_at_directives_their_types_accept():
    for alias in dt.ALIASES:
        assert alias.name not in dt.WORKER_DIRECTIVE_NAMES
        for wtype in alias.types:
            assert dt.directive_for(alias.target, wtype) is not None, alias.name


def test_ignored_keys_are_not_directives():
    assert not dt.IGNORED & dt.WORKER_DIRECTIVE_NAMES
    assert not dt.IGNORED & set(dt.ALIAS_BY_NAME)


def test_every_directive_is_documented_with_a_known_unit():
    for d in dt.DIRECTIVES:
        assert d.doc.endswith("."), d.name
        assert d.unit in ("", "ms", "s", "bytes", "count"), d.name
        if d.name.endswith("_timeout") or d.name.endswith("_interval"):
            assert d.unit in ("ms", "s"), d.name


def test_list_keys_include_aliases_of_list_directives():
    assert dt.is_list_key("worker.list")
    assert dt.is_list_key("worker.lb.balance_workers")
    assert dt.is_list_key("worker.lb.balanced_workers")
    assert dt.is_list_key("worker.a.b.mount")
    assert not dt.is_list_key("worker.n1.port")
    assert not dt.is_list_key("pyjk.list")


def test_sensitive_keys_are_secrets_and_tokens():
    assert dt.is_sensitive_key("worker.n1.secret")
    assert dt.is_sensitive_key("worker.jkstatus.token")
    assert not dt.is_sensitive_key("worker.n1.host")
    assert not dt.is_sensitive_key("secret")


def test_global_names_do_not_clash_with_worker_directives():
    assert not dt.GLOBAL_NAMES & dt.WORKER_DIRECTIVE_NAMES
    assert not dt.GLOBAL_NAMES & set(dt.ALIAS_BY_NAME)


def test_suggestion_finds_the_nearest_directive():
    assert dt.suggest("hots", dt.WORKER_DIRECTIVE_NAMES) == "host"
    assert dt.suggest("sticky_sesion", dt.WORKER_DIRECTIVE_NAMES) == "sticky_session"
    assert dt.suggest("zzzzzz", dt.WORKER_DIRECTIVE_NAMES) is None


def test_types_accepting_names_the_worker_types():
    assert dt.types_accepting("sticky_session") == {dt.LB}
    assert dt.types_accepting("retries") == {dt.LB, dt.HTTP, dt.AJP13}
    assert dt.types_accepting("cachesize") == dt.MEMBER


def test_committed_configuration_reference_is_the_generated_one():
    committed = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert committed == render(), "run: python -m balancer.config.docs > docs/configuration.md"


def test_reference_page_has_the_balancer_section_with_httpd_and_nginx_equivalents():
    page = render()
    section = page.split("## Balancer (global, pyjk only)", 1)[1].split("\n## ", 1)[0]
    for d in dt.directives_for_type(dt.GLOBAL):
        assert (f"| `worker.{d.name}` |" in section) == d.pyjk_only, d.name
    for name in (
        "LimitRequestBody",
        "RequestReadTimeout",
        "KeepAliveTimeout",
        "client_max_body_size",
        "set_real_ip_from",
        "JkMountFileReload",
    ):
        assert name in section, name


def test_reference_page_names_every_directive_alias_and_ignored_key():
    page = render()
    for name in {d.name for d in dt.DIRECTIVES} | set(dt.ALIAS_BY_NAME) | dt.IGNORED:
        assert f"`{name}`" in page or f"`worker.{name}`" in page, name


def test_reference_page_has_a_row_for_every_rule_extension_from_its_table():
    page = render()
    section = page.split("## Rule extensions", 1)[1]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == list(EXTENSIONS)
    for row, ext in zip(rows, EXTENSIONS.values(), strict=True):
        assert f"| {ext.scope.value} |" in row and ext.default in row, ext.name
    for name in ("use_server_errors", "sticky_ignore", "stateless"):
        assert f"`{name}`" in (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
