"""Whatever the text, parse_workers returns a config or raises ConfigError — nothing else."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from balancer.config import parse_workers
from balancer.config.directives import ALIAS_BY_NAME, DIRECTIVES, GLOBAL_NAMES, IGNORED
from balancer.config.errors import ConfigError
from balancer.config.model import WorkersConfig

NAMES = ["lb", "n1", "n2", "t", "jk", "a.b", "", "x y", "n/1", "ajp13", "n" * 64]
KNOWN = sorted({d.name for d in DIRECTIVES} | set(ALIAS_BY_NAME) | IGNORED)
DIRECTIVE_NAMES = [*KNOWN, "hots", "", "list.x"]
VALUES = [
    "lb", "http", "ajp13", "status", "ajp12", "n1", "n1,n2", "n1 n2 n1", "worker.t", "worker.n1",
    "t", "worker.lb", "8101", "0", "-1", "1k", "60s", "99999999999", "on", "off", "maybe", "A",
    "D", "S", "X", "CPI", "503,-404", "10.0.0.0/8", "::1", "[::1]", "host:1", "/-/ready", "a.o",
    "$(n)", "$(NOPE)", "$(worker.n1.port)", ";jsessionid", "JSESSIONID", "é", "\x00", "=",
    "reject", "drop", "d", "deny", "1023", "16k",
]  # fmt: skip

values = st.one_of(st.sampled_from(VALUES), st.text(max_size=12))
worker_line = st.builds(
    lambda name, directive, value: f"worker.{name}.{directive}={value}",
    st.sampled_from(NAMES),
    st.sampled_from(DIRECTIVE_NAMES),
    values,
)
global_line = st.builds(
    lambda key, value: f"{key}={value}",
    st.sampled_from(
        ["worker.list", "worker.maintain", "worker.lists", "n", "Worker.list"]
        + [f"worker.{name}" for name in sorted(GLOBAL_NAMES)]
    ),
    values,
)
junk_line = st.sampled_from(
    ["", "# comment", "no equals sign", "=x", "x=", "  worker.n1.port = 8101 # c"]
)
lines = st.lists(st.one_of(worker_line, worker_line, global_line, junk_line), max_size=40)


def check(text: str) -> None:
    try:
        config, warnings = parse_workers(text, "fuzz.properties", {"n": "8101"})
    except ConfigError as exc:
        assert exc.problems, "a ConfigError always carries its problems"
        for problem in exc.problems:
            assert problem.file == "fuzz.properties"
            assert problem.message
        return
    assert isinstance(config, WorkersConfig)
    assert all(w.file == "fuzz.properties" for w in warnings)
    for name in config.worker_list:
        assert config.worker(name) is not None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text())
def test_arbitrary_text_gives_a_config_or_a_config_error(text):
    check(text)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines)
def test_random_directive_lines_give_a_config_or_a_config_error(generated):
    check("\n".join(generated))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(worker_line, max_size=30))
def test_random_lines_after_a_valid_config_never_escape(generated):
    base = (
        "worker.list=lb\nworker.lb.type=lb\nworker.lb.balance_workers=n1,n2\n"
        "worker.n1.type=http\nworker.n1.port=8101\nworker.n2.type=http\nworker.n2.port=8102\n"
    )
    check(base + "\n".join(generated))
