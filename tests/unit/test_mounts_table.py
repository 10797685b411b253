"""The rule-extension table drives the checks against the target worker; the status page's map
list is ``UriMap.rules_for``; the rule's fail_on_status reads like the worker's; the map file is
read through the config's one reader (balancer/mounts/; modjk.md §4, §5.2)."""

from __future__ import annotations

from pathlib import Path

import pytest

import balancer.mounts as mounts
from balancer.config import rules
from balancer.config.errors import ConfigError
from balancer.config.model import RuleExtensions
from balancer.config.values import BadValue, parse_status_list
from balancer.mounts import EXTENSIONS, Mapped, load_mounts, parse_mounts
from balancer.mounts.extensions import Scope
from tests.unit.test_mounts import FILE, errors_of, uri_map, warnings_of, workers_config
from tests.unit.test_status_kit import Kit, prop_map

# A value each extension accepts, for the table-driven tests below.
SAMPLE = {
    "reply_timeout": "5000",
    "sticky_ignore": "1",
    "stateless": "1",
    "active": "node1",
    "disabled": "node1",
    "stopped": "node1",
    "fail_on_status": "503",
    "use_server_errors": "500",
    "session_cookie": "APP",
    "session_path": "app",
    "set_session_cookie": "true",
    "session_cookie_path": "/app",
}


def test_every_extension_of_the_table_has_a_sample_here():
    assert set(SAMPLE) == set(EXTENSIONS)


def test_the_public_import_path_keeps_every_name_callers_use():
    for name in ("UriMap", "Mapped", "Unmapped", "Rejected", "MountRule", "RuleSource"):
        assert hasattr(mounts, name), name
    assert callable(mounts.parse_mounts) and callable(mounts.load_mounts)


@pytest.mark.parametrize("name", sorted(EXTENSIONS))
def test_each_extension_is_accepted_on_an_lb_without_a_warning(name):
    assert warnings_of(f"/app/*=lb;{name}={SAMPLE[name]}") == []


@pytest.mark.parametrize(
    "name",
    sorted(n for n, e in EXTENSIONS.items() if e.scope is Scope.LB and e.field != "activation"),
)
def test_an_lb_only_extension_on_a_member_is_a_warning_naming_it(name):
    (warning,) = warnings_of(f"/app/*=node1;{name}={SAMPLE[name]}", worker_list=("lb", "node1"))
    assert f"{name} has no effect: 'node1' is not an lb" in warning


@pytest.mark.parametrize(
    "name", sorted(n for n, e in EXTENSIONS.items() if e.scope is Scope.NOT_STATUS)
)
def test_an_extension_without_effect_on_a_status_worker_is_a_warning_there(name):
    (warning,) = warnings_of(f"/jk=jkstatus;{name}={SAMPLE[name]}")
    assert f"{name} has no effect on status worker 'jkstatus'" in warning
    assert warnings_of(f"/app/*=node1;{name}={SAMPLE[name]}", worker_list=("lb", "node1")) == []


@pytest.mark.parametrize("name", ["active", "disabled", "stopped"])
def test_an_activation_list_on_a_status_worker_is_an_error(name):
    (error,) = errors_of(f"/jk=jkstatus;{name}=node1")
    assert "need an lb worker" in error


@pytest.mark.parametrize("text", ["503", "-404,500", "0503", "+503", "5xx", "99", "-700", "1e3"])
def test_a_rules_fail_on_status_reads_like_the_workers_directive(text):
    try:
        expected: tuple[int, ...] | None = parse_status_list(text)
    except BadValue:
        expected = None
    if expected is None:
        (error,) = errors_of(f"/app/*=lb;fail_on_status={text}")
        assert "fail_on_status:" in error
    else:
        decision = uri_map(f"/app/*=lb;fail_on_status={text}").match("/app/x")
        assert isinstance(decision, Mapped)
        assert decision.rule.extensions.fail_on_status == expected


def test_a_fail_on_status_of_separators_only_is_an_error():
    (error,) = errors_of("/app/*=lb;fail_on_status=,")
    assert "expected a list of HTTP status codes" in error


def test_the_table_fills_every_field_of_rule_extensions():
    fields = {e.field for e in EXTENSIONS.values()}
    assert fields == set(rules.FIELDS)
    # and those are the rule's attributes, compiled or not
    rule = RuleExtensions()
    assert all(hasattr(rule, name) for name in rules.FIELDS)


# --- the status page's map list ---------------------------------------------------------------


def test_rules_for_includes_the_exclusions_for_every_worker():
    m = uri_map("/app|/*=lb\n/jk=jkstatus\n!/app/xy=lb\n!/*.secret=*")
    assert [str(r) for r in m.rules_for("lb")] == [
        "!/app/xy=lb",
        "/app/*=lb",
        "!/*.secret=*",
        "/app=lb",
    ]
    assert [str(r) for r in m.rules_for("jkstatus")] == ["!/*.secret=*", "/jk=jkstatus"]


def test_the_status_page_lists_and_counts_a_workers_maps_with_the_every_worker_exclusion():
    kit = Kit()
    text = "/app|/*=lb\n!/*.secret=*\n/jkmanager|/*=jkstatus\n"
    rules, _ = parse_mounts(text, FILE, kit.workers)
    kit.worker.update_sources(uri_map=rules)
    props = prop_map(kit.get("mime=prop"))
    listed = [props[f"worker.lb.map.{i}.uri"][0] for i in (1, 2, 3)]
    assert listed == [r.pattern for r in rules.rules_for("lb")]
    assert "/*.secret" in listed and "worker.lb.map.4.uri" not in props
    assert props["worker.lb.map_count"] == ["3"]


# --- reading the file -------------------------------------------------------------------------


def test_a_map_file_that_is_not_utf8_is_an_error_naming_the_file(tmp_path: Path):
    path = tmp_path / FILE
    path.write_bytes(b"/caf\xe9=lb\n")
    with pytest.raises(ConfigError) as caught:
        load_mounts(path, workers_config(), environ={})
    (problem,) = caught.value.problems
    assert problem.file == str(path) and problem.line is None
    assert problem.message == "cannot read the URI map: not UTF-8 text"


def test_problems_are_reported_in_file_order_across_both_files():
    from balancer.config.model import Location

    mounts_rule = (("/m", "nobody", Location("workers.properties", 3)),)
    errors = errors_of("/a=lb\n/b=nobody\n", mounts=mounts_rule)
    assert [e.split(":")[0] for e in errors] == ["uriworkermap.properties", "workers.properties"]
