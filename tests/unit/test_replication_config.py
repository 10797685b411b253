"""cluster.toml: the shipped file, defaults and units, errors with suggestions, the key file."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from balancer.config.errors import ConfigError
from replication.config import (
    DIRECTIVES,
    load_cluster_config,
    parse_cluster_config,
    render_reference,
)
from replication.keyfile import KeyFileError, load_or_create_key, parse_key
from worker.__main__ import parse_args

ROOT = Path(__file__).resolve().parents[2]


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_cluster_config(text, "/etc/pyjk/cluster.toml")
    return [str(p) for p in info.value.problems]


def test_the_shipped_config_loads_and_keeps_multicast_on_loopback():
    cfg = load_cluster_config(ROOT / "conf" / "cluster.toml")
    assert (cfg.group, cfg.mcast_port, cfg.interface) == ("228.0.0.4", 45564, "127.0.0.1")
    assert cfg.ttl in (0, 1) and cfg.receiver_host == "127.0.0.1" and cfg.receiver_port == 0
    assert cfg.send_mode == "sync" and not cfg.insecure
    assert cfg.key_file == ROOT / "conf" / "cluster.key"


def test_the_shipped_redis_config_loads_and_names_one_loopback_server():
    cfg = load_cluster_config(ROOT / "conf" / "cluster-redis.toml")
    assert (cfg.store_kind, cfg.store_url, cfg.store_nodes) == (
        "redis",
        "redis://127.0.0.1:6379",
        (),
    )
    assert (cfg.store_wait_replicas, cfg.store_timeout, cfg.store_password_file) == (0, 1.0, None)
    assert load_cluster_config(ROOT / "conf" / "cluster.toml").store_kind == "cluster"


def test_a_redis_store_takes_a_url_or_cluster_nodes_and_a_password_file_beside_it():
    cfg = parse_cluster_config(
        '[store]\nkind = "redis"\nnodes = ["127.0.0.1:7000", "redis-a:7001"]\n'
        'wait_replicas = 1\npassword_file = "redis.pw"\ntimeout = 250\n',
        "/etc/pyjk/cluster.toml",
    )
    assert cfg.store_nodes == (("127.0.0.1", 7000), ("redis-a", 7001))
    assert cfg.store_password_file == Path("/etc/pyjk/redis.pw")
    assert (cfg.store_wait_replicas, cfg.store_timeout) == (1, 0.25)


def test_the_redis_password_comes_from_a_file_or_the_environment_never_the_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from replication.redis_store import StoreSetupError, read_password

    def config(line: str):
        text = f'[store]\nkind = "redis"\nurl = "redis://127.0.0.1:6379"\n{line}\n'
        return parse_cluster_config(text, str(tmp_path / "cluster.toml"))

    (tmp_path / "redis.pw").write_text("s3cret\n")
    assert read_password(config('password_file = "redis.pw"')) == "s3cret"
    monkeypatch.setenv("PYJK_TEST_REDIS_PW", "from-env")
    assert read_password(config('password_env = "PYJK_TEST_REDIS_PW"')) == "from-env"
    monkeypatch.delenv("PYJK_TEST_REDIS_PW")
    with pytest.raises(StoreSetupError, match=r"\$PYJK_TEST_REDIS_PW is not set"):
        read_password(config('password_env = "PYJK_TEST_REDIS_PW"'))
    with pytest.raises(StoreSetupError, match=r"missing\.pw"):
        read_password(config('password_file = "missing.pw"'))
    assert read_password(config("")) is None


@pytest.mark.parametrize(
    ("store", "tls"),
    [
        ('url = "redis://127.0.0.1:6379"\ntls = true', True),
        ('url = "rediss://127.0.0.1:6379"', True),
        ('url = "redis://127.0.0.1:6379"', False),
        ('nodes = ["127.0.0.1:7000"]\ntls = true', True),
        ('nodes = ["127.0.0.1:7000"]', False),
    ],
)
def test_tls_true_makes_the_redis_client_connect_with_tls(store: str, tls: bool) -> None:
    # on the old code `tls = true` with a redis:// url built a client that connected in clear
    from redis.asyncio.cluster import RedisCluster
    from redis.asyncio.connection import SSLConnection

    from replication.redis_store import make_client

    config = parse_cluster_config(f'[store]\nkind = "redis"\n{store}\n', "/tmp/cluster.toml")
    client = make_client(config)
    if isinstance(client, RedisCluster):
        kind = client.nodes_manager.connection_kwargs.get("connection_class")
    else:
        kind = client.connection_pool.connection_class
    assert (kind is SSLConnection) is tls


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('[store]\nkind = "redis"\n', 'store.url: kind = "redis" needs url'),
        ('[store]\nkind = "redis"\nurl = "redis://h:1"\nnodes = ["h:2"]\n', "not both"),
        ('[store]\nkind = "redis"\nurl = "redis://u:secret@h:1"\n', "no password in the url"),
        ('[store]\nkind = "redis"\nurl = "http://h:1"\n', "expected redis://"),
        # redis-py lets options in the query string override the keywords it is given
        ('[store]\nkind = "redis"\nurl = "redis://h:1/0?password=x"\n', "no 'password' in"),
        ('[store]\nkind = "redis"\nurl = "rediss://h:1?ssl_cert_reqs=none"\n', "(only db=N)"),
        (
            '[store]\nkind = "redis"\nurl = "rediss://h:1?db=1&ssl_check_hostname=false"\n',
            "no 'ssl_check_hostname' in",
        ),
        ('[store]\nkind = "redis"\nurl = "redis://h:1?db=x"\n', "expected a number"),
        ('[store]\nkind = "redis"\nnodes = ["h"]\n', 'expected "HOST:PORT"'),
        ('[store]\nkind = "redis"\nurl = "redis://h:1"\nwait_replicas = 2\n', "expected 0..1"),
        ('[store]\nkind = "memcached"\n', "expected one of cluster, redis"),
        ('[store]\nurl = "redis://h:1"\n', 'store.url: only for kind = "redis"'),
    ],
)
def test_a_store_section_that_cannot_work_is_refused(text, says):
    assert any(says in m for m in problems(text)), problems(text)


def test_a_redis_url_takes_db_in_its_query_string_and_no_other_option():
    cfg = parse_cluster_config('[store]\nkind = "redis"\nurl = "redis://h:1?db=2"\n', "/c.toml")
    assert cfg.store_url == "redis://h:1?db=2"
    (problem,) = problems('[store]\nkind = "redis"\n\nurl = "rediss://h:1/0?password=x"\n')
    assert problem.startswith("/etc/pyjk/cluster.toml:4:") and "store.url" in problem


def test_an_empty_file_gives_tomcat_defaults_in_seconds():
    cfg = parse_cluster_config("", "/etc/pyjk/cluster.toml")
    assert (cfg.frequency, cfg.drop_time, cfg.ack_timeout) == (0.5, 3.0, 3.0)
    assert cfg.state_transfer_timeout == 60.0 and cfg.name == "pyjk"
    assert cfg.key_file == Path("/etc/pyjk/cluster.key")


def test_values_are_read_per_section_and_durations_are_milliseconds():
    cfg = parse_cluster_config(
        'name = "c1"\n[membership]\nfrequency = 250\nstatic_members = ["127.0.0.1:4001"]\n'
        '[replication]\nsend_mode = "async"\n[security]\nkey_file = "/k/x.key"\n'
        "[exactly_once]\nttl = 1000\n"
    )
    assert cfg.name == "c1" and cfg.frequency == 0.25 and cfg.send_mode == "async"
    assert cfg.static_members == (("127.0.0.1", 4001),) and cfg.key_file == Path("/k/x.key")
    assert cfg.dedup_ttl == 1.0


def test_an_unknown_key_names_file_and_key_and_suggests_the_nearest():
    (message,) = problems("[membership]\ndroptime = 100\n")
    assert message.startswith("/etc/pyjk/cluster.toml:2: membership.droptime: unknown key")
    assert "did you mean 'membership.drop_time'?" in message


def test_an_unknown_section_and_a_misplaced_key_are_errors():
    found = problems("[replicaton]\nsend_mode = 'sync'\nfrequency = 5\n")
    assert any("[replicaton]" in p and "'replication'" in p for p in found)
    assert problems("frequency = 500\n")[0].endswith("did you mean 'membership.frequency'?")


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("[membership]\nfrequency = 0.5\n", "expected an integer (milliseconds)"),
        ("[membership]\nfrequency = 5\n", "expected 10..60000"),
        ("[membership]\ngroup = '10.0.0.1'\n", "not a multicast address"),
        ("[membership]\ninterface = 'lo'\n", "expected an IPv4 address"),
        ("[receiver]\nhost = '0.0.0.0'\n", "cannot be advertised"),
        ("[membership]\nstatic_members = ['nohost']\n", 'expected "HOST:PORT"'),
        ("[replication]\nsend_mode = 'maybe'\n", "expected one of sync, async"),
        ("[security]\ninsecure = 'yes'\n", "expected true or false"),
        ("name = 'has space'\n", "expected 1-64"),
        ("[receiver]\nport = 70000\n", "expected 0..65535"),
        ("x = [", "not valid TOML"),
    ],
)
def test_bad_values_are_refused_with_what_was_expected(text, fragment):
    assert any(fragment in p for p in problems(text))


def test_every_problem_is_reported_at_once():
    assert len(problems("[membership]\nttl = 300\nport = 0\n[receiver]\nmax_frame = 1\n")) == 3


def test_the_docs_reference_table_is_generated_from_the_directive_table():
    docs = (ROOT / "docs" / "cluster.md").read_text()
    assert render_reference() in docs
    assert len(DIRECTIVES) == render_reference().count("\n") - 2


def test_a_missing_key_file_is_created_private_with_64_hex_characters(tmp_path):
    path = tmp_path / "cluster.key"
    key = load_or_create_key(path)
    assert len(key) == 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() == key.hex()
    assert load_or_create_key(path) == key  # reused, not replaced
    assert [p.name for p in tmp_path.iterdir()] == ["cluster.key"]  # no temp file left


def test_key_files_accept_base64_and_refuse_anything_else(tmp_path):
    path = tmp_path / "k.key"
    assert parse_key("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", path) == bytes(range(32))
    path.write_text("too short")
    with pytest.raises(KeyFileError, match=r"k\.key: expected 32 bytes"):
        load_or_create_key(path)


def test_a_key_file_that_cannot_be_created_is_an_error_naming_the_file(tmp_path):
    with pytest.raises(KeyFileError, match=r"missing/cluster.key: cannot read or create"):
        load_or_create_key(tmp_path / "missing" / "cluster.key")


def test_gitignore_keeps_key_files_out_of_the_repository():
    assert "*.key" in (ROOT / ".gitignore").read_text().split()


def test_the_worker_cli_takes_a_cluster_file_and_refuses_a_bad_one(tmp_path):
    assert parse_args(["--route", "n1", "--cluster", "conf/cluster.toml"]).cluster == (
        "conf/cluster.toml"
    )
    bad = tmp_path / "cluster.toml"
    bad.write_text("[replication]\nack_timout = 5\n")
    result = subprocess.run(
        [sys.executable, "-m", "worker", "--route", "n1", "--listen", "127.0.0.1:0",
         "--cluster", str(bad)],
        cwd=ROOT, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 2
    assert "replication.ack_timout: unknown key; did you mean 'replication.ack_timeout'?" in (
        result.stderr
    )


def test_replication_mode_and_owners_default_to_all_to_all_and_two():
    config = parse_cluster_config("", "/etc/pyjk/cluster.toml")
    assert (config.mode, config.owners) == ("replicated", 2)
    config = parse_cluster_config(
        '[replication]\nmode = "distributed"\nowners = 3\n', "/etc/pyjk/cluster.toml"
    )
    assert (config.mode, config.owners) == ("distributed", 3)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('mode = "partitioned"',
         "cluster.toml:4: replication.mode: expected one of replicated, distributed"),
        ("owners = 0", "cluster.toml:4: replication.owners: expected 1..64, found 0"),
        ('owners = "2"', "cluster.toml:4: replication.owners: expected an integer"),
    ],
)  # fmt: skip
def test_a_bad_mode_or_owners_names_file_line_and_directive(body: str, expected: str):
    (message,) = problems(f'name = "x"\n\n[replication]\n{body}\n')
    assert message.startswith(f"/etc/pyjk/{expected}"), message


def test_distributed_sessions_need_the_built_in_store():
    text = '[replication]\nmode = "distributed"\n[store]\nkind = "redis"\nurl = "redis://h:1"\n'
    (message,) = problems(text)
    assert message.startswith("/etc/pyjk/cluster.toml:2: replication.mode: distributed needs")


def test_every_problem_names_its_line_even_in_later_sections():
    found = problems('[membership]\nfrequency = 5\n\n[security]\ninsecure = "yes"\n[bogus]\n')
    assert [m.split(" ", 1)[0] for m in found] == [
        "/etc/pyjk/cluster.toml:2:", "/etc/pyjk/cluster.toml:5:", "/etc/pyjk/cluster.toml:6:",
    ]  # fmt: skip


def test_a_redis_worker_announcing_itself_refuses_a_missing_key_file(tmp_path: Path) -> None:
    """A key made by the worker would seal heartbeats no balancer can open: every one of them
    dropped without a word. The file must exist (made by the balancer, or copied)."""
    from replication.announcer import Announcer

    config = tmp_path / "cluster.toml"
    config.write_text(
        '[store]\nkind = "redis"\nurl = "redis://127.0.0.1:1"\n'
        '[membership]\ninterface = "127.0.0.1"\n'
    )
    cfg = load_cluster_config(config)
    with pytest.raises(KeyFileError, match=r"cluster\.key: no cluster key file"):
        Announcer(cfg, "node1")
    assert not (tmp_path / "cluster.key").exists()
    load_or_create_key(tmp_path / "cluster.key")  # as the balancer does at its start
    assert Announcer(cfg, "node1").key == load_or_create_key(tmp_path / "cluster.key")
