"""reference (templates) and $(variables) in workers.properties (reference §1.3, §1.6)."""

from __future__ import annotations

import pytest

from balancer.config import parse_workers
from balancer.config.errors import ConfigError, Problem
from balancer.config.model import WorkersConfig

FILE = "w.properties"
LB = "worker.list=lb\nworker.lb.type=lb\nworker.lb.balance_workers=n1\n"


def config(text: str, environ: dict[str, str] | None = None) -> WorkersConfig:
    return parse_workers(text, FILE, environ or {})[0]


def errors(text: str, environ: dict[str, str] | None = None) -> list[Problem]:
    with pytest.raises(ConfigError) as info:
        parse_workers(text, FILE, environ or {})
    return list(info.value.problems)


TEMPLATE = "worker.t.type=http\nworker.t.host=10.0.0.9\nworker.t.port=8100\nworker.t.lbfactor=3\n"


# --- references -------------------------------------------------------------------------


def test_reference_copies_what_the_worker_does_not_set():
    member = config(LB + TEMPLATE + "worker.n1.reference=worker.t\nworker.n1.port=8101\n").members[
        "n1"
    ]
    assert (member.type, member.host, member.port, member.lbfactor) == ("http", "10.0.0.9", 8101, 3)


def test_explicit_setting_wins_even_when_written_before_the_reference():
    text = LB + "worker.n1.port=8101\n" + TEMPLATE + "worker.n1.reference=worker.t\n"
    assert config(text).members["n1"].port == 8101


def test_reference_chains_resolve_the_target_first():
    text = (
        LB
        + TEMPLATE
        + (
            "worker.mid.reference=worker.t\nworker.mid.port=8200\n"
            "worker.n1.reference=worker.mid\nworker.n1.lbfactor=5\n"
        )
    )
    member = config(text).members["n1"]
    assert (member.host, member.port, member.lbfactor) == ("10.0.0.9", 8200, 5)


def test_reference_copies_list_directives_only_when_not_set():
    text = LB + TEMPLATE + "worker.t.fail_on_status=503\nworker.n1.reference=worker.t\n"
    assert config(text).members["n1"].fail_on_status == (503,)
    text += "worker.n1.fail_on_status=500\n"
    assert config(text).members["n1"].fail_on_status == (500,)


def test_templates_are_not_reported_as_unused():
    _, found = parse_workers(LB + TEMPLATE + "worker.n1.reference=worker.t\n", FILE, {})
    assert not any("not used" in str(w) for w in found)


def test_reference_loop_is_one_error_naming_the_loop():
    text = (
        LB
        + "worker.n1.reference=worker.a\nworker.a.reference=worker.b\nworker.b.reference=worker.a\n"
    )
    (problem,) = errors(text)
    assert "reference loop: a -> b -> a" in str(problem)


def test_self_reference_is_a_loop():
    (problem,) = errors(LB + "worker.n1.type=http\nworker.n1.reference=worker.n1\n")
    assert "reference loop: n1 -> n1" in str(problem)


def chain(hops: int) -> str:
    lines = [f"worker.w{i}.reference=worker.w{i + 1}" for i in range(hops)]
    lines.append(f"worker.w{hops}.type=http")
    lines.append(f"worker.w{hops}.port=8101")
    return "worker.list=w0\n" + "\n".join(lines) + "\n"


def test_twenty_levels_of_reference_resolve():
    assert config(chain(20)).members["w0"].port == 8101


def test_twenty_one_levels_of_reference_are_an_error():
    (problem,) = errors(chain(21))
    assert "deeper than 20 levels" in str(problem)
    assert problem.directive == "worker.w0.reference"


def test_reference_to_a_worker_without_keys_suggests_the_nearest():
    problem = str(errors(LB + TEMPLATE + "worker.n1.reference=worker.tt\n")[0])
    assert "'worker.tt' has no keys" in problem and "did you mean worker.t?" in problem


def test_reference_value_must_be_the_full_prefix():
    problem = str(errors(LB + TEMPLATE + "worker.n1.reference=t\n")[0])
    assert "full prefix" in problem and "did you mean worker.t?" in problem


def test_bad_value_in_a_template_points_at_the_template_line_once():
    text = (
        "worker.list=lb\nworker.lb.type=lb\nworker.lb.balance_workers=n1,n2\n"
        "worker.t.type=http\nworker.t.port=abc\n"
        "worker.n1.reference=worker.t\nworker.n2.reference=worker.t\nworker.n2.route=r2\n"
    )
    (problem,) = errors(text)
    assert (problem.line, problem.directive) == (5, "worker.t.port")


def test_inherited_directive_the_type_does_not_accept_says_so():
    text = LB + TEMPLATE + "worker.t.sticky_session=1\nworker.n1.reference=worker.t\n"
    (problem,) = errors(text)
    assert "inherited through reference" in str(problem)


# --- variables ----------------------------------------------------------------------------


MEMBER = "worker.n1.type=http\nworker.n1.port=8101\n"


def test_variable_defined_earlier_is_substituted():
    cfg = config("pyjk.host=127.0.0.2\n" + LB + MEMBER + "worker.n1.host=$(pyjk.host)\n")
    assert cfg.members["n1"].host == "127.0.0.2"
    assert cfg.properties["pyjk.host"] == "127.0.0.2"


def test_earlier_worker_keys_are_variables_too():
    text = LB + MEMBER + "worker.n1.host=127.0.0.3\nworker.list=n2\nworker.n2.type=http\n"
    text += "worker.n2.host=$(worker.n1.host)\nworker.n2.port=8102\n"
    assert config(text).members["n2"].host == "127.0.0.3"


def test_environment_resolves_what_the_file_does_not_define():
    cfg = config(LB + MEMBER + "worker.n1.host=$(BACKEND)\n", {"BACKEND": "10.1.1.1"})
    assert cfg.members["n1"].host == "10.1.1.1"


def test_file_definition_beats_the_environment():
    text = "BACKEND=10.2.2.2\n" + LB + MEMBER + "worker.n1.host=$(BACKEND)\n"
    assert config(text, {"BACKEND": "10.1.1.1"}).members["n1"].host == "10.2.2.2"


def test_unresolved_variable_is_an_error_with_line_and_directive():
    # one error for the line, not a second one saying "$(NOPE)" is not a number
    (problem,) = errors(LB + "worker.n1.type=http\nworker.n1.port=$(NOPE)\n")
    assert (problem.line, problem.directive) == (5, "worker.n1.port")
    assert "$(NOPE) is not defined" in problem.message


def test_variable_used_before_its_definition_is_an_error():
    problems = errors(LB + MEMBER + "worker.n1.host=$(later)\nlater=127.0.0.1\n")
    assert any("$(later) is not defined" in p.message for p in problems)


def test_substitution_is_not_recursive():
    text = (
        "inner=x\n" + LB + MEMBER + "worker.list=jk\nworker.jk.type=status\nworker.jk.css=$(CSS)\n"
    )
    assert config(text, {"CSS": "$(inner)"}).statuses["jk"].css == "$(inner)"
