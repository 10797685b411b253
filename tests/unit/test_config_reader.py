"""workers.properties → WorkersConfig: mod_jk's rules, and the errors pyjk adds (reference §1–2)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from balancer.config import load_workers, parse_workers, summary
from balancer.config.errors import ConfigError, Problem
from balancer.config.model import (
    Activation,
    BalancerSettings,
    Location,
    Method,
    WorkersConfig,
)

ROOT = Path(__file__).resolve().parents[2]
FILE = "w.properties"

BASE = """\
worker.list=lb
worker.lb.type=lb
worker.lb.balance_workers=n1,n2
worker.n1.type=http
worker.n1.port=8101
worker.n2.type=http
worker.n2.port=8102
"""


def load(text: str, environ: dict[str, str] | None = None) -> tuple[WorkersConfig, list[Problem]]:
    return parse_workers(text, FILE, environ or {})


def config(text: str, environ: dict[str, str] | None = None) -> WorkersConfig:
    return load(text, environ)[0]


def warnings(text: str) -> list[str]:
    return [str(w) for w in load(text)[1]]


def errors(text: str, environ: dict[str, str] | None = None) -> list[Problem]:
    with pytest.raises(ConfigError) as info:
        load(text, environ)
    return list(info.value.problems)


def only_error(text: str) -> str:
    (problem,) = errors(text)
    return str(problem)


# --- the shipped example ------------------------------------------------------------------


def test_shipped_workers_properties_loads_without_warnings():
    cfg, found = load_workers(ROOT / "conf" / "workers.properties", environ={})
    assert found == []
    assert cfg.worker_list == ("lb", "jkstatus")
    lb = cfg.lbs["lb"]
    assert lb.sticky_session is True
    members = cfg.lb_members(lb)
    assert [(m.name, m.type, m.host, m.port, m.route, m.lbfactor) for m in members] == [
        ("node1", "http", "127.0.0.1", 8101, "node1", 1),
        ("node2", "http", "127.0.0.1", 8102, "node2", 1),
        ("node3", "http", "127.0.0.1", 8103, "node3", 2),
    ]
    assert all(m.socket_connect_timeout == 2000 for m in members)  # from the template
    assert "jkstatus" in cfg.statuses
    assert "worker.node1.host" in cfg.properties  # inherited keys are in the dump map
    assert "node3" in summary(cfg)


# --- basics and defaults ------------------------------------------------------------------


def test_route_defaults_to_the_name_and_domain_to_the_route_before_its_first_dot():
    cfg = config(BASE + "worker.n2.route=n2.dc1.x\n")
    assert cfg.members["n1"].route == "n1"
    assert cfg.members["n1"].domain == ""
    assert cfg.members["n2"].domain == "n2"
    assert (
        config(BASE + "worker.n2.route=a.b\nworker.n2.domain=zone\n").members["n2"].domain == "zone"
    )


def test_default_type_is_ajp13_as_in_mod_jk():
    cfg = config("worker.list=a\nworker.a.port=8009\n")
    assert cfg.members["a"].type == "ajp13"
    assert cfg.members["a"].host == "localhost"


def test_a_single_http_worker_can_be_listed_directly():
    cfg = config("worker.list=app\nworker.app.type=http\nworker.app.port=8101\n")
    assert cfg.lbs == {}
    assert cfg.members["app"].port == 8101
    assert cfg.worker("app") is cfg.members["app"]


def test_missing_worker_list_defaults_to_ajp13_with_a_warning():
    cfg, found = load("worker.ajp13.port=8009\n")
    assert cfg.worker_list == ("ajp13",)
    assert any("worker.list" in str(w) and "ajp13" in str(w) for w in found)


def test_missing_worker_list_and_no_ajp13_worker_is_an_error():
    problem = only_error("worker.n1.port=8009\n")
    assert "worker.list" in problem and "'ajp13' is not defined" in problem


def test_worker_list_and_balance_workers_append_across_lines():
    cfg = config(
        BASE.replace("balance_workers=n1,n2", "balance_workers=n1\nworker.lb.balance_workers=n2")
    )
    assert cfg.lbs["lb"].balance_workers == ("n1", "n2")
    cfg = config(BASE + "worker.list=n1\n")
    assert cfg.worker_list == ("lb", "n1")


def test_a_repeated_unique_directive_overrides_with_a_warning():
    cfg, found = load(BASE + "worker.n1.port=9101\n")
    assert cfg.members["n1"].port == 9101
    assert any("overrides the one on line 5" in str(w) for w in found)


def test_worker_listed_twice_warns():
    assert any("more than once" in w for w in warnings(BASE + "worker.list=lb\n"))


def test_inline_comment_is_stripped():
    assert config(BASE + "worker.n1.lbfactor=2 # two\n").members["n1"].lbfactor == 2


def test_worker_name_is_everything_up_to_the_last_dot_and_a_dot_warns():
    text = "worker.list=a.b\nworker.a.b.type=http\nworker.a.b.port=8101\n"
    cfg, found = load(text)
    assert cfg.members["a.b"].port == 8101
    assert any("'.'" in str(w) for w in found)


def test_invalid_worker_name_is_an_error_reported_once():
    text = "worker.list=ok\nworker.ok.port=1\nworker.n/1.port=2\nworker.n/1.host=x\n"
    (problem,) = errors(text)
    assert problem.line == 3
    assert "A-Z a-z 0-9" in problem.message


def test_worker_name_over_63_characters_is_an_error():
    name = "n" * 64
    problems = errors(f"worker.list={name}\nworker.{name}.port=1\n")
    assert [p.line for p in problems] == [1, 2]
    assert all("at most 63" in p.message for p in problems)


# --- unknown things, with suggestions ------------------------------------------------------


def test_unknown_directive_names_file_line_key_and_the_nearest_directive():
    text = BASE + "worker.n1.hots=example\n"
    problem = only_error(text)
    assert problem.startswith("w.properties:8: worker.n1.hots:")
    assert "did you mean worker.n1.host?" in problem


def test_unknown_global_directive_suggests_worker_list():
    assert "did you mean worker.list?" in only_error(BASE + "worker.lists=x\n")


def test_directive_without_a_worker_name_is_an_error():
    assert "worker.NAME.port" in only_error(BASE + "worker.port=1\n")


def test_global_directive_under_a_worker_points_at_the_global_form():
    assert "write worker.list" in only_error(BASE + "worker.lb.list=x\n")


def test_unknown_type_suggests_the_nearest():
    problem = only_error(BASE.replace("n1.type=http", "n1.type=htp"))
    assert "unknown type 'htp'" in problem and "did you mean 'http'?" in problem


def test_obsolete_types_are_named_as_unsupported():
    assert "'ajp12' is not supported" in only_error(BASE.replace("n1.type=http", "n1.type=ajp12"))


def test_directive_of_another_worker_type_is_an_error():
    problem = only_error(BASE + "worker.lb.port=1\n")
    assert "does not apply to lb worker 'lb'; it applies to: ajp13, http" in problem


def test_secret_does_not_apply_to_http_members():
    assert "does not apply to http worker 'n1'" in only_error(BASE + "worker.n1.secret=s\n")


def test_health_checks_are_member_directives():
    cfg = config(BASE + "worker.n1.health_check_interval=2000\nworker.n1.slow_start=30\n")
    assert cfg.members["n1"].health_check_interval == 2000
    assert cfg.members["n1"].slow_start == 30
    assert cfg.members["n2"].health_check_interval == 0
    assert "does not apply to lb" in only_error(BASE + "worker.lb.health_check_interval=1\n")


def test_bad_value_names_line_directive_and_mod_jks_fallback():
    problem = only_error(BASE.replace("n1.port=8101", "n1.port=abc"))
    assert problem.startswith("w.properties:5: worker.n1.port:")
    assert "silently use the default" in problem


def test_port_zero_is_an_error():
    assert "Stopped" in only_error(BASE.replace("n1.port=8101", "n1.port=0"))


def test_all_problems_are_reported_at_once_in_line_order():
    text = BASE + "worker.n1.hots=x\nworker.lb.method=X\nworker.n2.port=-1\n"
    problems = errors(text)
    assert [p.line for p in problems] == [8, 9, 10]
    assert [p.directive for p in problems] == [
        "worker.n1.hots",
        "worker.lb.method",
        "worker.n2.port",
    ]


# --- lb rules ----------------------------------------------------------------------------


def test_lb_without_members_is_an_error():
    problem = only_error("worker.list=lb\nworker.lb.type=lb\n")
    assert "has no members" in problem and "worker.lb.balance_workers" in problem


def test_member_named_but_not_defined_is_an_error_not_a_localhost_member():
    problem = only_error(BASE.replace("balance_workers=n1,n2", "balance_workers=n1,n2,n11"))
    assert problem.startswith("w.properties:3: worker.lb.balance_workers:")
    assert "'n11' is not defined" in problem and "localhost:8009" in problem
    assert "did you mean 'n1'?" in problem


def test_listed_but_undefined_worker_is_an_error():
    problem = only_error(BASE.replace("worker.list=lb", "worker.list=lb,jkstatus"))
    assert (
        problem.startswith("w.properties:1: worker.list:")
        and "'jkstatus' is not defined" in problem
    )


def test_member_listed_twice_in_one_lb_is_an_error():
    assert "listed twice" in only_error(BASE.replace("n1,n2", "n1,n2,n1"))


@pytest.mark.parametrize("wtype", ["lb", "status"])
def test_member_that_is_an_lb_or_status_worker_is_an_error(wtype):
    text = (
        BASE.replace("n1,n2", "n1,n2,x") + f"worker.x.type={wtype}\nworker.x.balance_workers=n1\n"
    )
    problems = [str(p) for p in errors(text)]
    assert any(f"'x' is a {wtype} worker" in p for p in problems)


def test_duplicate_route_within_one_lb_is_an_error():
    problem = only_error(BASE + "worker.n2.route=n1\n")
    assert "route 'n1' of member 'n2' is also the route of 'n1'" in problem
    assert problem.startswith("w.properties:8:")


def test_same_route_in_two_lbs_is_fine():
    text = BASE + "worker.list=lb2\nworker.lb2.type=lb\nworker.lb2.balance_workers=n1\n"
    assert config(text).lbs["lb2"].balance_workers == ("n1",)


def test_error_escalation_time_defaults_to_half_the_recover_time():
    assert config(BASE + "worker.lb.recover_time=10\n").lbs["lb"].error_escalation_time == 5
    assert config(BASE).lbs["lb"].error_escalation_time == 30
    explicit = BASE + "worker.lb.recover_time=10\nworker.lb.error_escalation_time=0\n"
    assert config(explicit).lbs["lb"].error_escalation_time == 0


def test_lb_values_are_typed():
    lb = config(BASE + "worker.lb.method=B\nworker.lb.sticky_session=off\n").lbs["lb"]
    assert lb.method is Method.BUSYNESS
    assert lb.sticky_session is False


def test_set_session_cookie_warns_about_the_lost_session_hazard():
    assert any("lose the session" in w for w in warnings(BASE + "worker.lb.set_session_cookie=1\n"))


def test_lb_secret_is_inherited_by_ajp13_members_without_one():
    text = BASE.replace("n1.type=http", "n1.type=ajp13") + (
        "worker.list=lb2\nworker.lb2.type=lb\nworker.lb2.balance_workers=a,b\n"
        "worker.lb2.secret=s3cr3t\nworker.a.type=ajp13\nworker.b.type=ajp13\nworker.b.secret=own\n"
        "worker.b.port=8010\n"
    )
    cfg = config(text)
    assert cfg.members["a"].secret == "s3cr3t"
    assert cfg.members["b"].secret == "own"
    assert cfg.members["n1"].secret == ""


def test_redirect_must_name_a_route_of_the_lb():
    assert config(BASE + "worker.n1.redirect=n2\n").members["n1"].redirect == "n2"
    assert "(routes: n1, n2)" in only_error(BASE + "worker.n1.redirect=n3\n")
    assert "own route" in only_error(BASE + "worker.n1.redirect=n1\n")


def test_member_only_directive_on_a_worker_in_no_lb_warns():
    text = "worker.list=app\nworker.app.type=http\nworker.app.lbfactor=3\n"
    assert any("not a member of any lb" in w for w in warnings(text))


def test_unused_worker_warns():
    assert any(
        "'spare' is not in worker.list" in w for w in warnings(BASE + "worker.spare.port=1\n")
    )


# --- derived defaults ----------------------------------------------------------------------


def test_connect_timeout_follows_socket_timeout_unless_set():
    assert config(BASE).members["n1"].socket_connect_timeout == 5000
    assert (
        config(BASE + "worker.n1.socket_timeout=3\n").members["n1"].socket_connect_timeout == 3000
    )
    text = BASE + "worker.n1.socket_timeout=3\nworker.n1.socket_connect_timeout=700\n"
    assert config(text).members["n1"].socket_connect_timeout == 700


def test_pool_minsize_and_acquire_timeout_are_derived():
    text = (
        BASE
        + "worker.n1.connection_pool_size=10\nworker.n1.retries=3\nworker.n1.retry_interval=50\n"
    )
    member = config(text).members["n1"]
    assert member.connection_pool_minsize == 5
    assert member.connection_acquire_timeout == 150


def test_pool_minsize_above_size_is_lowered_with_a_warning():
    text = BASE + "worker.n1.connection_pool_size=4\nworker.n1.connection_pool_minsize=9\n"
    cfg, found = load(text)
    assert cfg.members["n1"].connection_pool_minsize == 4
    assert any("larger than connection_pool_size" in str(w) for w in found)


def test_ping_mode_derivations():
    member = config(BASE + "worker.n1.ping_mode=A\nworker.n1.ping_timeout=2000\n").members["n1"]
    assert (member.ping_mode, member.connect_timeout, member.prepost_timeout) == ("CPI", 2000, 2000)
    assert member.connection_ping_interval == 20
    member = config(BASE + "worker.n1.connect_timeout=500\n").members["n1"]
    assert member.ping_mode == "C" and member.connect_timeout == 500


# --- status workers -----------------------------------------------------------------------


def test_status_worker_with_allow_and_token():
    text = BASE + (
        "worker.list=jk\nworker.jk.type=status\nworker.jk.allow=10.0.0.1/8\n"
        "worker.jk.allow=192.0.2.0/24\nworker.jk.token=0123456789abcdef0123\nworker.jk.bad=s\n"
    )
    status = config(text).statuses["jk"]
    assert status.allow == ("10.0.0.0/8", "192.0.2.0/24")
    assert status.token == "0123456789abcdef0123"
    assert status.bad == ("s",)
    assert status.good == ("a.o", "a.i", "a.b", "a.r")


def test_short_status_token_warns():
    text = BASE + "worker.list=jk\nworker.jk.type=status\nworker.jk.token=abc\n"
    assert any("guessable" in w for w in warnings(text))


# --- aliases and ignored keys -------------------------------------------------------------


def test_deprecated_alias_is_renamed_with_a_warning():
    text = BASE.replace("lb.balance_workers", "lb.balanced_workers") + (
        "worker.n1.cachesize=7\nworker.n2.jvm_route=r2\n"
    )
    cfg, found = load(text)
    assert cfg.members["n1"].connection_pool_size == 7
    assert cfg.lbs["lb"].balance_workers == ("n1", "n2")
    assert cfg.members["n2"].route == "r2"
    assert sum("deprecated" in str(w) for w in found) == 3


def test_directive_wins_over_its_alias():
    text = BASE + "worker.n1.connection_pool_size=9\nworker.n1.cachesize=7\n"
    cfg, found = load(text)
    assert cfg.members["n1"].connection_pool_size == 9
    assert any("ignored: connection_pool_size is also set" in str(w) for w in found)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("worker.n1.stopped=true\n", Activation.STOPPED),
        ("worker.n1.disabled=1\n", Activation.DISABLED),
        ("worker.n1.disabled=on\nworker.n1.stopped=yes\n", Activation.STOPPED),
        ("worker.n1.disabled=false\n", Activation.ACTIVE),
        ("worker.n1.activation=A\nworker.n1.stopped=true\n", Activation.ACTIVE),
    ],
)
def test_disabled_and_stopped_booleans_set_activation(extra, expected):
    assert config(BASE + extra).members["n1"].activation is expected


def test_bad_disabled_boolean_is_an_error():
    assert "expected a boolean" in only_error(BASE + "worker.n1.disabled=maybe\n")


def test_jni_era_keys_are_ignored_with_a_warning():
    assert any("JNI-era" in w for w in warnings(BASE + "worker.n1.cmd_line=java\n"))


def test_case_sensitive_worker_key_is_a_variable_with_a_warning():
    assert any("read as a variable" in w for w in warnings(BASE + "Worker.n1.port=1\n"))


# --- mount -----------------------------------------------------------------------------


def test_mounts_of_listed_workers_are_collected_with_their_location():
    cfg = config(BASE + "worker.lb.mount=/app/* /api,/x\nworker.lb.mount=/y\n")
    assert [(p, w) for p, w, _ in cfg.mounts] == [
        ("/app/*", "lb"),
        ("/api", "lb"),
        ("/x", "lb"),
        ("/y", "lb"),
    ]
    assert cfg.mounts[0][2] == Location(FILE, 8)
    assert cfg.mounts[3][2] == Location(FILE, 9)


def test_mount_of_an_unlisted_worker_is_ignored_with_a_warning():
    cfg, found = load(BASE + "worker.n1.mount=/n1/*\n")
    assert cfg.mounts == ()
    assert any("not in worker.list" in str(w) for w in found)


# --- loading from disk ----------------------------------------------------------------------


def test_load_workers_reads_a_file_and_names_it(tmp_path):
    path = tmp_path / "workers.properties"
    path.write_text(BASE, encoding="utf-8")
    cfg, _ = load_workers(path, environ={})
    assert cfg.file == str(path)
    assert cfg.members["n2"].location == Location(str(path), 6)


def test_unreadable_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_workers(tmp_path / "missing.properties", environ={})


# --- globals and the dump map -----------------------------------------------------------------


def test_maintain_defaults_to_60_and_may_be_0():
    assert config(BASE).maintain == 60
    assert config(BASE + "worker.maintain=0\n").maintain == 0
    assert "expected a whole number" in only_error(BASE + "worker.maintain=often\n")


def test_properties_map_uses_canonical_names_and_keeps_variables():
    cfg = config("h=127.0.0.1\n" + BASE + "worker.n1.cachesize=7\nworker.n1.host=$(h)\n")
    assert cfg.properties["h"] == "127.0.0.1"
    assert cfg.properties["worker.n1.connection_pool_size"] == "7"
    assert "worker.n1.cachesize" not in cfg.properties
    assert cfg.properties["worker.n1.host"] == "127.0.0.1"
    assert cfg.properties["worker.list"] == "lb"
    assert cfg.properties["worker.lb.balance_workers"] == "n1,n2"


# --- pyjk's edge limits: worker.max_body_size, ... (BalancerSettings) ------------------------


def test_edge_limits_default_to_the_models_when_the_file_sets_none():
    cfg, found = load(BASE)
    assert cfg.balancer == BalancerSettings()
    assert found == []


def test_every_edge_limit_is_read_into_balancer_settings():
    text = BASE + (
        "worker.trusted_proxies=10.1.2.3/8, 192.0.2.7\n"
        "worker.trusted_proxies=::1\n"
        "worker.max_head_size=32k\n"
        "worker.max_headers=50\n"
        "worker.header_timeout=5\n"
        "worker.keepalive_timeout=15\n"
        "worker.body_timeout=20\n"
        "worker.max_body_size=0\n"
        "worker.max_connections=500\n"
        "worker.max_connections_per_ip=0\n"
        "worker.underscores_in_headers=Drop\n"
        "worker.mount_reload=0\n"
        "worker.shutdown_timeout=3\n"
    )
    cfg, found = load(text)
    assert found == []
    assert cfg.balancer == BalancerSettings(
        trusted_proxies=("10.0.0.0/8", "192.0.2.7/32", "::1/128"),
        max_head_size=32768,
        max_headers=50,
        header_timeout=5,
        keepalive_timeout=15,
        body_timeout=20,
        max_body_size=0,
        max_connections=500,
        max_connections_per_ip=0,
        underscores_in_headers="drop",
        mount_reload=0,
        shutdown_timeout=3,
    )


def test_a_repeated_edge_limit_overrides_with_a_warning():
    cfg, found = load(BASE + "worker.body_timeout=20\nworker.body_timeout=30\n")
    assert cfg.balancer.body_timeout == 30
    assert any("overrides the one on line 8" in str(w) for w in found)


def test_edge_limit_trailing_text_warns_with_the_unit():
    cfg, found = load(BASE + "worker.header_timeout=5s\n")
    assert cfg.balancer.header_timeout == 5
    assert any("reads as 5 s" in str(w) for w in found)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("worker.header_timeout=0", "must be at least 1, found 0"),
        ("worker.keepalive_timeout=0", "must be at least 1, found 0"),
        ("worker.body_timeout=0", "must be at least 1, found 0"),
        ("worker.shutdown_timeout=0", "must be at least 1, found 0"),
        ("worker.max_headers=0", "must be at least 1, found 0"),
        ("worker.max_connections=0", "must be at least 1, found 0"),
        ("worker.max_head_size=1000", "must be at least 1024, found 1000"),
        ("worker.mount_reload=-1", "must not be negative"),
        ("worker.max_body_size=-1", "must not be negative"),
        ("worker.max_connections_per_ip=-5", "must not be negative"),
        ("worker.max_body_size=lots", "expected a whole number"),
        ("worker.underscores_in_headers=deny", "expected reject, drop or allow"),
        ("worker.trusted_proxies=10.0.0.0/8 proxy.local", "expected a network"),
    ],
)
def test_an_edge_limit_out_of_range_is_an_error_naming_file_line_and_directive(line, message):
    problem = only_error(BASE + line + "\n")
    key = line.split("=", 1)[0]
    assert problem.startswith(f"w.properties:8: {key}:"), problem
    assert message in problem


def test_every_bad_edge_limit_is_reported_at_once():
    text = BASE + "worker.header_timeout=0\nworker.max_headers=0\nworker.max_body_size=x\n"
    assert [p.line for p in errors(text)] == [8, 9, 10]


@pytest.mark.parametrize(
    ("line", "suggestion"),
    [
        ("worker.max_body_sise=1m", "worker.max_body_size"),
        ("worker.keepalive=5", "worker.keepalive_timeout"),
        ("worker.trusted_proxy=10.0.0.0/8", "worker.trusted_proxies"),
        ("worker.underscores_in_header=allow", "worker.underscores_in_headers"),
    ],
)
def test_a_misspelt_edge_limit_is_an_unknown_global_with_the_nearest_suggested(line, suggestion):
    problem = only_error(BASE + line + "\n")
    assert "unknown global directive" in problem
    assert f"did you mean {suggestion}?" in problem


def test_an_edge_limit_under_a_worker_points_at_the_global_form():
    problem = only_error(BASE + "worker.n1.max_body_size=1m\n")
    assert problem.startswith("w.properties:8: worker.n1.max_body_size:")
    assert "write worker.max_body_size" in problem


def test_shipped_files_commented_edge_limits_show_the_defaults():
    text = (ROOT / "conf" / "workers.properties").read_text(encoding="utf-8")
    commented = re.findall(r"(?m)^#(worker\.[a-z_]+=.*)$", text)
    assert len(commented) >= 2
    cfg = config(BASE + "\n".join(commented) + "\n")
    assert cfg.balancer == BalancerSettings()
    assert {line.split("=", 1)[0] for line in commented} <= set(cfg.properties)


def test_dump_map_has_only_the_edge_limits_the_file_sets_in_canonical_form():
    cfg = config(BASE)
    globals_ = {k for k in cfg.properties if k.startswith("worker.") and k.count(".") == 1}
    assert globals_ == {"worker.list", "worker.maintain"}
    cfg = config(
        BASE + "worker.max_body_size=2m\nworker.underscores_in_headers=a\n"
        "worker.trusted_proxies=10.1.0.0/16\nworker.trusted_proxies=192.0.2.1\n"
    )
    assert cfg.properties["worker.max_body_size"] == str(2 * 1024 * 1024)
    assert cfg.properties["worker.underscores_in_headers"] == "allow"
    assert cfg.properties["worker.trusted_proxies"] == "10.1.0.0/16,192.0.2.1/32"
    assert "worker.header_timeout" not in cfg.properties


def test_summary_lists_lbs_members_and_status_workers():
    text = BASE + "worker.list=jk\nworker.jk.type=status\nworker.n2.activation=D\n"
    lines = summary(config(text)).splitlines()
    assert lines[1].startswith("lb lb: sticky")
    assert "n2  http localhost:8102  route=n2" in lines[3] and "activation=DIS" in lines[3]
    assert lines[4].startswith("status jk: read-write")
