"""Behaviour of the proxy race's parts (run: .venv/bin/python -m pytest bench/).

Config tests ask the real nginx/haproxy binaries to validate the generated files when they are
installed (bench/setup.sh), and skip otherwise.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import backend
import bare_relay
import proxy_race
import pytest
import race_configs as cfg
import race_tls
from race_checks import find_binary
from race_procs import Supervisor, cpu_seconds, cpu_times, descendants
from race_report import Run, crowded, format_ratios, format_table, ratios, summarise
from race_wrk import WrkError, parse_report, wrk_argv

REPO = Path(__file__).resolve().parent.parent
MEMBERS = cfg.members_for([18001, 18002, 18003])


def _run(
    scenario: str,
    peer: str,
    rps: float,
    p99: int,
    cpu: float | None,
    rnd: int = 1,
    user_share: float = 0.5,
) -> Run:
    return Run(
        round=rnd,
        scenario=scenario,
        peer=peer,
        requests=int(rps * 10),
        duration_s=10.0,
        rps=rps,
        p50_us=p99 // 2,
        p90_us=p99,
        p99_us=p99,
        p999_us=p99,
        errors=0,
        non_2xx=0,
        proxy_cpu_s=None if cpu is None else cpu * rps * 10 / 1e6,
        cpu_us_per_req=cpu,
        proxy_cpu_pct=None if cpu is None else 90.0,
        proxy_core_pct=95.0,
        load_core_pct=60.0,
        user_us_per_req=None if cpu is None else cpu * user_share,
        sys_us_per_req=None if cpu is None else cpu * (1 - user_share),
    )


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan waits for init to reap it, which may take a while)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


# -- pyjk's config files -----------------------------------------------------------------------


def test_workers_properties_is_one_lb_over_http_members_in_mod_jk_keys() -> None:
    sys.path.insert(0, str(REPO))
    from balancer.config.properties import read_properties

    props = read_properties(cfg.workers_properties(MEMBERS), "gen", environ={})
    assert props.problems == []
    m = props.merged
    assert m["worker.list"] == "lb"
    assert m["worker.lb.type"] == "lb"
    assert m["worker.lb.balance_workers"] == "node1,node2,node3"
    for i, port in enumerate((18001, 18002, 18003), 1):
        assert m[f"worker.node{i}.type"] == "http"
        assert m[f"worker.node{i}.host"] == "127.0.0.1"
        assert m[f"worker.node{i}.port"] == str(port)
        assert m[f"worker.node{i}.route"] == f"node{i}"


def test_uriworkermap_mounts_everything_on_the_lb() -> None:
    lines = [ln for ln in cfg.uriworkermap().splitlines() if not ln.startswith("#")]
    assert lines == ["/*=lb"]


# -- templates -----------------------------------------------------------------------------------


def test_render_names_the_missing_placeholder() -> None:
    with pytest.raises(ValueError, match=r"peers/x: no value for placeholder @PORT@"):
        cfg.render("listen @PORT@;", {}, source="peers/x")


@pytest.mark.parametrize(
    "text",
    [
        cfg.nginx_conf(MEMBERS, port=18000, workdir=Path("/tmp/x")),
        cfg.haproxy_cfg(MEMBERS, port=18000),
        backend.backend_conf(MEMBERS, workdir=Path("/tmp/x")),
    ],
    ids=["nginx", "haproxy", "backend"],
)
def test_rendered_configs_have_no_placeholders_left_and_bind_loopback_only(text: str) -> None:
    assert re.search(r"@[A-Z0-9_]+@", text) is None
    binds = re.findall(r"(?:listen|bind)\s+(\S+)", text)
    assert binds and all(b.startswith("127.0.0.1:") for b in binds)


def test_nginx_route_map_follows_the_route_after_the_first_dot() -> None:
    text = cfg.nginx_conf(MEMBERS, port=18000, workdir=Path("/tmp/x"))
    patterns = {
        name: re.compile(pat) for pat, name in re.findall(r"~(\S+) (node\d);", text)
    }  # nginx map regexes are PCRE; these simple ones read the same in Python
    assert set(patterns) == {"node1", "node2", "node3"}
    assert patterns["node2"].search("abc.node2")
    assert not patterns["node2"].search("abc.node22")
    assert not patterns["node2"].search("abc.dc1.node2")  # mod_jk's route would be dc1.node2
    assert not patterns["node1"].search("abc.node2")


def test_nginx_accepts_its_generated_config(tmp_path: Path) -> None:
    nginx = find_binary("nginx") or pytest.skip("nginx not installed (bench/setup.sh)")
    (tmp_path / "nginx-tmp").mkdir()
    conf = tmp_path / "nginx.conf"
    conf.write_text(cfg.nginx_conf(MEMBERS, port=18000, workdir=tmp_path))
    proc = subprocess.run(
        [*backend.nginx_argv(nginx, conf, tmp_path), "-t"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr


def test_nginx_accepts_the_backend_config(tmp_path: Path) -> None:
    nginx = find_binary("nginx") or pytest.skip("nginx not installed (bench/setup.sh)")
    conf = backend.write_backend(MEMBERS, tmp_path)
    proc = subprocess.run(
        [*backend.nginx_argv(nginx, conf, tmp_path), "-t"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "www" / "64k").stat().st_size == 65536


def test_haproxy_accepts_its_generated_config(tmp_path: Path) -> None:
    haproxy = find_binary("haproxy") or pytest.skip("haproxy not installed (bench/setup.sh)")
    conf = tmp_path / "haproxy.cfg"
    conf.write_text(cfg.haproxy_cfg(MEMBERS, port=18000))
    proc = subprocess.run([haproxy, "-c", "-f", str(conf)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_nginx_and_haproxy_accept_their_tls_listeners(tmp_path: Path) -> None:
    nginx = find_binary("nginx") or pytest.skip("nginx not installed (bench/setup.sh)")
    haproxy = find_binary("haproxy") or pytest.skip("haproxy not installed (bench/setup.sh)")
    cert = race_tls.make_cert(tmp_path)
    (tmp_path / "nginx-tmp").mkdir()
    conf = tmp_path / "nginx.conf"
    server = race_tls.nginx_server(18443, cert)
    conf.write_text(cfg.nginx_conf(MEMBERS, port=18000, workdir=tmp_path, tls_server=server))
    proc = subprocess.run(
        [*backend.nginx_argv(nginx, conf, tmp_path), "-t"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert "listen 127.0.0.1:18443 ssl" in conf.read_text()
    conf = tmp_path / "haproxy.cfg"
    conf.write_text(
        cfg.haproxy_cfg(MEMBERS, port=18000, tls_bind=race_tls.haproxy_bind(18443, cert))
    )
    proc = subprocess.run([haproxy, "-c", "-f", str(conf)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"bind 127.0.0.1:18443 ssl crt {cert.combined}" in conf.read_text()


def test_pyjk_checks_the_race_certificate(tmp_path: Path) -> None:
    cert = race_tls.make_cert(tmp_path)
    workers = tmp_path / "workers.properties"
    workers.write_text(cfg.workers_properties(MEMBERS))
    args = ["--check", "--workers", str(workers), *race_tls.pyjk_args(18443, cert)]
    proc = subprocess.run(
        [sys.executable, "-m", "balancer", *args], cwd=REPO, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert f"{cert.cert} (default): localhost; expires" in proc.stdout


def test_backend_bodies_have_the_advertised_sizes() -> None:
    assert len(backend.BODY_100) == 100
    assert len(backend.BODY_64K) == 65536
    assert b'"' not in backend.BODY_100 and b"\\" not in backend.BODY_100  # safe in `return`


# -- wrk -----------------------------------------------------------------------------------------

REPORT = (
    "Running 3s test @ http://127.0.0.1:1/100\n"
    "PYJK-RACE requests=30000 duration_us=3000000 bytes=9000000 err_connect=1 err_read=2 "
    "err_write=0 err_status=4 err_timeout=3 p50_us=800 p90_us=1500 p99_us=4000 p999_us=9000 "
    "max_us=12000 mean_us=950.5\n"
)


def test_wrk_report_line_gives_rate_percentiles_and_all_errors() -> None:
    r = parse_report(REPORT)
    assert r.rps == pytest.approx(10000.0)
    assert (r.p50_us, r.p99_us, r.p999_us) == (800, 4000, 9000)
    assert r.errors == 10 and r.non_2xx == 4


def test_wrk_output_without_report_line_is_an_error_showing_the_output() -> None:
    with pytest.raises(WrkError, match="unable to connect"):
        parse_report("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_wrk_argv_is_one_thread_with_headers_and_report_script() -> None:
    argv = wrk_argv(
        "wrk", "http://127.0.0.1:1/100", duration_s=3, connections=50, headers=["Connection: close"]
    )
    assert argv[:4] == ["wrk", "-t1", "-c50", "-d3s"]
    assert argv[argv.index("-H") + 1] == "Connection: close"
    assert Path(argv[argv.index("-s") + 1]).name == "wrk_report.lua"
    assert argv[-1] == "http://127.0.0.1:1/100"


# -- summary and ratios --------------------------------------------------------------------------


def test_summary_takes_the_median_over_rounds_and_keeps_the_spread() -> None:
    runs = [_run("ka", "nginx", rps, 1000, 10.0, rnd) for rnd, rps in enumerate((9, 30, 10), 1)]
    (row,) = summarise(runs, ["nginx"])
    assert (row.rps, row.rps_min, row.rps_max, row.rounds) == (10, 9, 30, 3)


def test_ratios_put_pyjk_over_each_peer() -> None:
    rows = summarise(
        [
            _run("ka", "pyjk", 5000, 4000, 40.0),
            _run("ka", "nginx", 20000, 1000, 10.0),
            _run("ka", "direct", 50000, 500, None),
        ],
        ["pyjk", "nginx", "direct"],
    )
    (vs_nginx, vs_direct) = ratios(rows, others=["nginx", "direct"])
    assert (vs_nginx.rps, vs_nginx.p99, vs_nginx.cpu_per_req) == (0.25, 4.0, 4.0)
    assert vs_direct.cpu_per_req is None  # no proxy process to charge


def test_no_ratios_without_pyjk() -> None:
    rows = summarise([_run("ka", "nginx", 20000, 1000, 10.0)], ["nginx"])
    assert ratios(rows, others=["nginx"]) == []


def test_crowded_flags_a_core_busier_than_its_proxy() -> None:
    quiet = _run("ka", "nginx", 20000, 1000, 10.0)
    rows = summarise([quiet], ["nginx"])
    assert crowded(rows) == []  # 95% core, 90% proxy
    assert crowded(rows, slack=1.0) == rows


def test_summary_keeps_the_user_sys_split_and_the_table_shows_it() -> None:
    runs = [
        _run("ka", "relay", 20000, 1000, 20.0, 1, user_share=0.25),
        _run("ka", "relay", 21000, 1000, 22.0, 2, user_share=0.5),
        _run("ka", "relay", 19000, 1000, 30.0, 3, user_share=0.2),
        _run("ka", "direct", 50000, 500, None),
    ]
    relay, direct = summarise(runs, ["relay", "direct"])
    assert (relay.user_us_per_req, relay.sys_us_per_req) == (6.0, 15.0)  # medians of each
    assert (direct.user_us_per_req, direct.sys_us_per_req) == (None, None)
    header, _, relay_line, direct_line = format_table([relay, direct]).splitlines()
    end = header.index("user/sys µs") + len("user/sys µs")  # cells are right-aligned to here
    assert relay_line[:end].split()[-1] == "6.0/15.0"
    assert direct_line[:end].split()[-1] == "-"  # no proxy process: no split


def test_ratios_include_pyjk_against_the_bare_relay() -> None:
    rows = summarise(
        [_run("ka", "pyjk", 10000, 4000, 40.0), _run("ka", "relay", 25000, 1000, 20.0)],
        ["pyjk", "relay"],
    )
    (vs_relay,) = ratios(rows, others=["relay"])
    assert (vs_relay.other, vs_relay.rps, vs_relay.cpu_per_req) == ("relay", 0.4, 2.0)
    assert format_ratios([vs_relay]).splitlines()[-1].split() == [
        "ka",
        "relay",
        "0.40",
        "4.00",
        "2.00",
    ]
    # and the race compares pyjk with every peer that proxies: both relays too, not "direct"
    order = ["pyjk", "relay", "relay-headers", "nginx", "direct"]
    assert proxy_race.ratio_peers(order) == ["relay", "relay-headers", "nginx"]


# -- the bare relay as a peer --------------------------------------------------------------------


def test_relays_are_peers_but_not_default_ones() -> None:
    defaults = proxy_race.parse_args([]).peers
    assert "relay" not in defaults and "relay-headers" not in defaults
    assert proxy_race.parse_args(["--peers", "pyjk,relay,relay-headers,nginx"]).peers == [
        "pyjk",
        "relay",
        "relay-headers",
        "nginx",
    ]
    # they skip tls-* as "direct" does
    assert {"relay", "relay-headers"} <= set(proxy_race.NO_TLS)


def test_relay_command_runs_bare_relay_with_pyjk_python_over_the_members_in_order(
    tmp_path: Path,
) -> None:
    args = proxy_race.parse_args(["--peers", "relay", "--pyjk-python", "/venv/bin/python"])
    race = proxy_race.Race(
        args=args,
        bins={},
        sup=Supervisor(taskset=None),
        workdir=tmp_path,
        proxy_cpu=None,
        proxy_cpus=[],
        load_cpu=None,
        cores=[],
    )
    argv = proxy_race.peer_argv(race, "relay", MEMBERS, 18000)
    assert argv[:2] == ["/venv/bin/python", str(REPO / "bench" / "bare_relay.py")]
    # and the relay reads that command line back as the race meant it
    relay_args = bare_relay.parse_args(argv[2:])
    assert relay_args.listen == ("127.0.0.1", 18000)
    assert relay_args.upstream == [("127.0.0.1", p) for p in (18001, 18002, 18003)]
    assert relay_args.routes == [m.route.encode() for m in MEMBERS]
    assert not relay_args.read_headers
    # relay-headers: the same relay, reading headers (and routing by the members' routes)
    headers_argv = proxy_race.peer_argv(race, "relay-headers", MEMBERS, 18000)
    headers_args = bare_relay.parse_args(headers_argv[2:])
    assert headers_args.read_headers and headers_args.upstream == relay_args.upstream
    assert headers_args.routes == relay_args.routes
    assert list(tmp_path.iterdir()) == []  # no config file: everything is on the command line


# -- processes -----------------------------------------------------------------------------------


def test_stop_all_kills_the_whole_process_group(tmp_path: Path) -> None:
    sup = Supervisor(taskset=None)
    child = sup.start(
        "sh", ["sh", "-c", "sleep 30 & sleep 30 & wait"], cpu=None, log=tmp_path / "log"
    )
    deadline = time.monotonic() + 5
    while len(descendants(child.pid)) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    family = descendants(child.pid)
    assert len(family) == 3
    sup.stop_all()
    assert sup.children == []
    # SIGKILL to the group is delivered asynchronously: poll, with a deadline
    deadline = time.monotonic() + 5
    while any(_running(pid) for pid in family) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [pid for pid in family if _running(pid)] == []


def test_cpu_seconds_counts_a_busy_child(tmp_path: Path) -> None:
    sup = Supervisor(taskset=None)
    try:
        child = sup.start(
            "spin",
            [
                sys.executable,
                "-c",
                "import time\nt=time.process_time()\n"
                "while time.process_time() - t < 0.3: pass\ntime.sleep(30)",
            ],
            cpu=None,
            log=tmp_path / "log",
        )
        deadline = time.monotonic() + 10
        while cpu_seconds(child.pid) < 0.3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert cpu_seconds(child.pid) >= 0.3
    finally:
        sup.stop_all()


@pytest.mark.parametrize(
    ("work", "mostly"),
    [
        # the interpreter's own work (process_time() itself is a syscall: rarely)
        ("while time.process_time() - t < 0.5: sum(range(100000))", "user"),
        # zero-filling 4 MiB per read is the kernel's work, charged to the caller as stime
        (
            "f=open('/dev/zero','rb',buffering=0)\n"
            "while time.process_time() - t < 0.5: f.readinto(buf)",
            "sys",
        ),
    ],
    ids=["user", "sys"],
)
def test_cpu_times_split_user_from_kernel_time(tmp_path: Path, work: str, mostly: str) -> None:
    sup = Supervisor(taskset=None)
    code = f"import time\nbuf=bytearray(1<<22)\nt=time.process_time()\n{work}\ntime.sleep(30)"
    try:
        child = sup.start("work", [sys.executable, "-c", code], cpu=None, log=tmp_path / "log")
        deadline = time.monotonic() + 15
        while sum(cpu_times(child.pid)) < 0.5 and time.monotonic() < deadline:
            time.sleep(0.05)
        user, system = cpu_times(child.pid)
        assert user + system >= 0.5
        assert user + system == pytest.approx(cpu_seconds(child.pid), abs=0.05)
        assert (user > system) == (mostly == "user"), (user, system)
    finally:
        sup.stop_all()
