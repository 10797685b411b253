"""Proxy race: pyjk against nginx and HAProxy on the same backends, same core, same load.

    python bench/proxy_race.py                      # all peers, 10 s per run, 1 round
    python bench/proxy_race.py --quick              # 3 s per run
    python bench/proxy_race.py --peers nginx,haproxy --rounds 3 --json race.json
    python bench/proxy_race.py --quick --scenarios tls-keepalive-100B,tls-close-100B

Each proxy runs pinned to one core (--proxy-cpu, default 0); the backends (one nginx worker on
three ports), wrk and this script share the other (--load-cpu, default 1). Peers take turns
within each scenario, and the order rotates every round, so drift of the machine hits every
peer alike. Nothing is installed here: bench/setup.sh installs nginx, haproxy and wrk. Every
process started here is killed at exit. docs/benchmarks.md says what the columns mean.

The ``tls-*`` scenarios send the same requests over HTTPS: every peer terminates TLS itself
with one certificate made for the run (race_tls.py) and the same settings; ``tls-close-100B``
opens a new connection (a full handshake, no resumption) per request, so its req/s is the
peer's handshakes per second. The ``direct`` and ``relay`` peers have no TLS and skip them.

The ``relay`` peer (not in the default ``--peers``; ask for it: ``--peers pyjk,relay,nginx``) is
bench/bare_relay.py, the smallest keep-alive proxy on pyjk's own stack (uvloop + httptools,
Python callbacks) run with pyjk's python: the floor of that stack, measured in the same run.
``relay-headers`` is the same relay with ``--read-headers``: it also reads the URL, Host and
Cookie in Python, routes sticky sessions and arms a deadline per request — the floor of any
balancer on the stack, not only of moving bytes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import backend
import bare_relay
import race_configs as cfg
import race_syscalls
import race_tls
from race_checks import (
    STICKY_COOKIE_VALUE,
    find_binary,
    machine_info,
    quiet_check,
    smoke_check,
    wait_until_quiet,
)
from race_procs import (
    Child,
    StartError,
    Supervisor,
    core_times,
    cpu_times,
    descendants,
    free_ports,
    wait_http_ready,
)
from race_report import (
    Run,
    as_json,
    crowded,
    format_ratios,
    format_table,
    ratios,
    summarise,
)
from race_wrk import WrkError, run_wrk, wrk_argv

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
DEFAULT_PEERS = ("pyjk", "nginx", "haproxy", "direct")
RELAYS = ("relay", "relay-headers")  # bench/bare_relay.py, without and with --read-headers
ALL_PEERS = (*DEFAULT_PEERS, *RELAYS)
NO_TLS = ("direct", *RELAYS)  # peers that skip the tls-* scenarios
PYJK_CMD = (
    "{python} -m balancer --workers {workers} --mounts {mounts} --listen {listen} "
    "--processes {processes}"
)


@dataclass(frozen=True)
class Scenario:
    name: str
    path: str
    headers: tuple[str, ...]
    tls: bool = False  # to the peer's HTTPS port


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("keepalive-100B", "/100", ()),
        Scenario("keepalive-64KiB", "/64k", ()),
        Scenario("close-100B", "/100", ("Connection: close",)),
        Scenario("close-64KiB", "/64k", ("Connection: close",)),
        Scenario("sticky-100B", "/100", (f"Cookie: {STICKY_COOKIE_VALUE}",)),
        Scenario("sticky-64KiB", "/64k", (f"Cookie: {STICKY_COOKIE_VALUE}",)),
        Scenario("tls-keepalive-100B", "/100", (), tls=True),
        Scenario("tls-close-100B", "/100", ("Connection: close",), tls=True),
    )
}


@dataclass
class Peer:
    name: str
    port: int
    child: Child | None  # None for "direct": wrk straight at backend node1, no proxy
    smoke: list[str] = field(default_factory=list)
    tls_port: int | None = None  # its HTTPS listener ("direct" and "relay" have none)

    def alive(self) -> bool:
        return self.child is None or self.child.popen.poll() is None


@dataclass
class Race:
    """What every step needs: options, binaries, the supervisor and the scratch directory."""

    args: argparse.Namespace
    bins: dict[str, str | None]
    sup: Supervisor
    workdir: Path
    proxy_cpu: int | None  # None: not pinned
    proxy_cpus: list[int]  # every core of the proxy (--processes N > 1: N of them)
    load_cpu: int | None
    cores: list[int]  # the cores watched for other load
    cert: race_tls.RaceCert | None = None  # when a tls-* scenario runs

    def wrk_cmd(self, url: str, seconds: int, headers: Sequence[str]) -> list[str]:
        argv = wrk_argv(
            str(self.bins["wrk"]),
            url,
            duration_s=seconds,
            connections=self.args.connections,
            headers=headers,
        )
        if self.load_cpu is not None and self.bins["taskset"]:
            argv = [str(self.bins["taskset"]), "-c", str(self.load_cpu), *argv]
        return argv


def relay_argv(
    python: str, port: int, members: Sequence[cfg.Member], *, read_headers: bool = False
) -> list[str]:
    """bench/bare_relay.py on pyjk's python, round robin over the members in their order (and,
    reading headers, sticky by their routes)."""
    upstreams = [(m.route, m.host, m.port) for m in members]
    return bare_relay.command(python, (HOST, port), upstreams, read_headers=read_headers)


def peer_argv(
    race: Race, name: str, members: Sequence[cfg.Member], port: int, tls_port: int | None = None
) -> list[str]:
    workdir = race.workdir
    cert = race.cert if tls_port is not None else None
    if name == "nginx":
        (workdir / "nginx-tmp").mkdir(exist_ok=True)
        conf = workdir / "nginx.conf"
        tls_server = race_tls.nginx_server(tls_port, cert) if cert and tls_port else ""
        conf.write_text(
            cfg.nginx_conf(
                members,
                port=port,
                workdir=workdir,
                tls_server=tls_server,
                processes=race.args.processes,
            )
        )
        return backend.nginx_argv(str(race.bins["nginx"]), conf, workdir)
    if name == "haproxy":
        conf = workdir / "haproxy.cfg"
        tls_bind = race_tls.haproxy_bind(tls_port, cert) if cert and tls_port else ""
        conf.write_text(
            cfg.haproxy_cfg(members, port=port, tls_bind=tls_bind, processes=race.args.processes)
        )
        return [str(race.bins["haproxy"]), "-db", "-f", str(conf)]
    if name == "pyjk":
        workers = workdir / "workers.properties"
        mounts = workdir / "uriworkermap.properties"
        workers.write_text(cfg.workers_properties(members))
        mounts.write_text(cfg.uriworkermap())
        values = {
            "python": race.args.pyjk_python,
            "workers": workers,
            "mounts": mounts,
            "listen": f"{HOST}:{port}",
            "processes": race.args.processes,
        }
        argv = [token.format(**values) for token in shlex.split(race.args.pyjk_cmd)]
        if cert and tls_port:
            argv += race_tls.pyjk_args(tls_port, cert)
        return argv
    if name in RELAYS:
        return relay_argv(
            race.args.pyjk_python, port, members, read_headers=name == "relay-headers"
        )
    raise ValueError(f"unknown peer {name!r}")


def start_peers(race: Race, members: Sequence[cfg.Member]) -> tuple[list[Peer], dict[str, str]]:
    """Start each peer; one that fails is reported and left out, the others still race."""
    peers: list[Peer] = []
    failures: dict[str, str] = {}
    n = len(race.args.peers)
    ports = free_ports(2 * n)
    for name, port, tls_port in zip(race.args.peers, ports[:n], ports[n:], strict=True):
        if name == "direct":
            peer = Peer("direct", members[0].port, None)
        else:
            tls = tls_port if race.cert is not None and name not in NO_TLS else None
            try:
                argv = peer_argv(race, name, members, port, tls)
                log = race.workdir / f"{name}.log"
                cpus = ",".join(str(c) for c in race.proxy_cpus) if race.proxy_cpus else None
                child = race.sup.start(name, argv, cpu=cpus, log=log, cwd=REPO)
                wait_http_ready(child, HOST, port, "/100", race.args.start_timeout)
            except (StartError, OSError, ValueError) as exc:
                failures[name] = str(exc)
                print(f"!! {name} failed to start: {exc}", flush=True)
                continue
            peer = Peer(name, port, child, tls_port=tls)
        # the relay balances round robin but has no stickiness: that check does not apply
        # (relay-headers routes by the cookie: it does)
        peer.smoke = smoke_check(peer.port, balanced=peer.child is not None, sticky=name != "relay")
        if peer.tls_port is not None:
            peer.smoke += race_tls.smoke(peer.tls_port)
        for problem in peer.smoke:
            print(f"!! {name} smoke check: {problem}", flush=True)
        peers.append(peer)
    return peers, failures


def measure(race: Race, peer: Peer, scenario: Scenario, round_no: int) -> Run:
    """Warm up, then one measured wrk run with the proxy's CPU time read around it."""
    args = race.args
    if scenario.tls:
        url = f"https://{HOST}:{peer.tls_port}{scenario.path}"
    else:
        url = f"http://{HOST}:{peer.port}{scenario.path}"
    if args.warmup > 0:
        run_wrk(race.wrk_cmd(url, args.warmup, scenario.headers), duration_s=args.warmup)
    cores = sorted({*race.proxy_cpus, *([race.load_cpu] if race.load_cpu is not None else [])})
    pid = peer.child.pid if peer.child else None
    counter = race_syscalls.SyscallCounter(descendants(pid)) if pid and args.syscalls else None
    if counter is not None:
        counter.start()  # before the CPU reading: attaching costs perf's time, not the peer's
    user0, sys0 = cpu_times(pid) if pid else (0.0, 0.0)
    cores0 = core_times(cores)
    result, _ = run_wrk(
        race.wrk_cmd(url, args.duration, scenario.headers), duration_s=args.duration
    )
    cores1 = core_times(cores)
    user1, sys1 = cpu_times(pid) if pid else (0.0, 0.0)
    calls = counter.stop() if counter is not None else None
    cpu = (user1 - user0) + (sys1 - sys0) if pid else None

    def per_request(seconds: float) -> float | None:
        return seconds * 1e6 / result.requests if pid and result.requests else None

    def busy(core: int | None) -> float:
        if core is None:
            return 0.0
        (b0, t0), (b1, t1) = cores0.get(core, (0, 0)), cores1.get(core, (0, 0))
        return 100.0 * (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0

    return Run(
        round=round_no,
        scenario=scenario.name,
        peer=peer.name,
        requests=result.requests,
        duration_s=result.duration_s,
        rps=result.rps,
        p50_us=result.p50_us,
        p90_us=result.p90_us,
        p99_us=result.p99_us,
        p999_us=result.p999_us,
        errors=result.errors,
        non_2xx=result.non_2xx,
        proxy_cpu_s=cpu,
        cpu_us_per_req=cpu * 1e6 / result.requests if cpu is not None and result.requests else None,
        user_us_per_req=per_request(user1 - user0),
        sys_us_per_req=per_request(sys1 - sys0),
        syscalls_per_req=race_syscalls.per_request(calls, result.requests) if calls else None,
        proxy_cpu_pct=100.0 * cpu / result.duration_s if cpu is not None else None,
        # summed over the proxy's cores, as its CPU % is over its processes
        proxy_core_pct=sum(busy(c) for c in race.proxy_cpus),
        load_core_pct=busy(race.load_cpu),
    )


def race_rounds(race: Race, peers: Sequence[Peer]) -> list[Run]:
    runs: list[Run] = []
    for round_no in range(1, race.args.rounds + 1):
        for scenario_name in race.args.scenarios:
            # Rotate the order every round so no peer always runs first (or right after another).
            shift = (round_no - 1) % max(1, len(peers))
            for peer in [*peers[shift:], *peers[:shift]]:
                if not peer.alive() or (SCENARIOS[scenario_name].tls and peer.tls_port is None):
                    continue
                quiet = None
                if race.args.wait_quiet > 0:
                    quiet, busy, busiest = wait_until_quiet(race.cores, race.args.wait_quiet)
                    if not quiet:
                        cores = ", ".join(f"core {c} {b:.0f}%" for c, b in busy.items())
                        who = "; ".join(busiest) or "short-lived processes"
                        print(
                            f"!! still busy after --wait-quiet ({cores}: {who}); measuring anyway"
                        )
                try:
                    run = measure(race, peer, SCENARIOS[scenario_name], round_no)
                    run = dataclasses.replace(run, quiet_before=quiet)
                except WrkError as exc:
                    print(f"!! {peer.name} {scenario_name}: {exc}", flush=True)
                    continue
                runs.append(run)
                print(
                    f"  round {round_no} {scenario_name:16} {peer.name:13}"
                    f"{run.rps:>10,.0f} req/s  p99 {run.p99_us / 1000:7.3f} ms  "
                    f"errors {run.errors}",
                    flush=True,
                )
                if peer.child and not peer.alive():
                    print(f"!! {peer.name} died during {scenario_name}:", flush=True)
                    print(peer.child.log_tail(), flush=True)
    return runs


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = p.add_argument
    add(
        "--peers",
        default=",".join(DEFAULT_PEERS),
        help=f"from {','.join(ALL_PEERS)} (default %(default)s)",
    )
    add("--scenarios", default=",".join(SCENARIOS), help=f"from {','.join(SCENARIOS)}")
    add("--duration", type=int, default=10, help="seconds per measured run (default 10)")
    add("--warmup", type=int, default=1, help="unmeasured seconds before each run (default 1)")
    add("--rounds", type=int, default=1, help="how many times every peer runs every scenario")
    add("--quick", action="store_true", help="3 s runs, 1 s warm-up, 1 round")
    add("--connections", type=int, default=50, help="wrk -c (default 50; wrk always -t1)")
    add("--proxy-cpu", type=int, default=0, help="core of the proxy under test (default 0)")
    add(
        "--processes",
        type=int,
        default=1,
        help="pyjk --processes N vs nginx worker_processes N vs HAProxy nbthread N (default 1); "
        "the proxy gets N cores other than --load-cpu when the machine has them, else runs "
        "unpinned",
    )
    add("--load-cpu", type=int, default=1, help="core of backends, wrk, harness (default 1)")
    add("--pyjk-python", default=str(_default_python()), help="python for {python}")
    add("--pyjk-cmd", default=PYJK_CMD, help="pyjk's command line (default: %(default)s)")
    add("--start-timeout", type=float, default=20.0, help="seconds a peer has to come up")
    add(
        "--wait-quiet",
        type=float,
        default=0.0,
        help="before the race and each run, wait up to this many s for idle cores (shared hosts)",
    )
    add(
        "--syscalls",
        action="store_true",
        help="also count each peer's system calls per request (perf stat; bench/race_syscalls.py)",
    )
    add("--json", type=Path, help="also write machine, runs, summary and ratios here")
    add("--keep-dir", action="store_true", help="keep generated configs and logs")
    args = p.parse_args(argv)
    if args.quick:
        args.duration, args.warmup, args.rounds = 3, 1, 1
    args.peers = list(dict.fromkeys(x for x in args.peers.split(",") if x))
    args.scenarios = list(dict.fromkeys(x for x in args.scenarios.split(",") if x))
    for bad in [x for x in args.peers if x not in ALL_PEERS]:
        p.error(f"unknown peer {bad!r}; choose from {','.join(ALL_PEERS)}")
    for bad in [x for x in args.scenarios if x not in SCENARIOS]:
        p.error(f"unknown scenario {bad!r}; choose from {','.join(SCENARIOS)}")
    if not (1 <= args.duration <= 600 and 0 <= args.warmup <= 60 and 1 <= args.rounds <= 50):
        p.error("need 1 <= --duration <= 600, 0 <= --warmup <= 60, 1 <= --rounds <= 50")
    if not 1 <= args.processes <= 63:
        p.error("need 1 <= --processes <= 63")
    if not 0 <= args.wait_quiet <= 3600:
        p.error("need 0 <= --wait-quiet <= 3600")
    return args


def proxy_cores(args: argparse.Namespace, cores: set[int]) -> list[int]:
    """--proxy-cpu, plus cores other than --load-cpu up to --processes of them; [] (unpinned)
    when the machine has too few: N processes pinned to fewer cores would measure contention."""
    if args.processes == 1:
        return [args.proxy_cpu]
    spare = [c for c in sorted(cores) if c not in (args.proxy_cpu, args.load_cpu)]
    chosen = [args.proxy_cpu, *spare][: args.processes]
    if len(chosen) < args.processes:
        print(
            f"!! --processes {args.processes}: {len(cores)} cores leave {len(chosen)} for the "
            "proxy besides --load-cpu; the proxies run unpinned and share cores with wrk"
        )
        return []
    return chosen


def _default_python() -> Path:
    venv = REPO / ".venv" / "bin" / "python"
    return venv if venv.exists() else Path(sys.executable)


def ratio_peers(order: Sequence[str]) -> list[str]:
    """The peers pyjk is compared with: every proxy (both bare relays too), not "direct"."""
    return [n for n in order if n not in ("pyjk", "direct")]


def report(
    race: Race,
    peers: Sequence[Peer],
    runs: Sequence[Run],
    failures: dict[str, str],
    extra: dict[str, object],
) -> None:
    order = [p.name for p in peers]
    rows = summarise(runs, order)
    compared = ratios(rows, others=ratio_peers(order))
    print()
    print(format_table(rows))
    for row in crowded(rows):
        print(
            f"!! {row.scenario} {row.peer}: the proxy core was {row.proxy_core_pct:.0f}% busy but "
            f"the proxy used {row.proxy_cpu_pct:.0f}%: something else ran on it"
        )
    if race.args.syscalls:
        print()
        print(race_syscalls.format_table(runs, order))
    print()
    if "pyjk" in order:
        print(format_ratios(compared) if compared else "no ratios: no peer to compare with")
    else:
        failure = failures.get("pyjk")
        why = failure.splitlines()[0] if failure else "not in --peers"
        print(f"ratios skipped: pyjk not measured ({why})")
    if race.args.json:
        data = {
            **extra,
            "start_failures": failures,
            "settings": {k: str(v) for k, v in vars(race.args).items()},
            "smoke": {p.name: p.smoke for p in peers},
            "runs": as_json(runs),
            "summary": as_json(rows),
            "ratios": as_json(compared),
        }
        race.args.json.write_text(json.dumps(data, indent=2) + "\n")
        print(f"wrote {race.args.json}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    bins = {name: find_binary(name) for name in ("nginx", "haproxy", "wrk", "taskset")}
    needed = {"nginx", "wrk"} | ({"haproxy"} if "haproxy" in args.peers else set())
    missing = sorted(n for n in needed if bins[n] is None)
    if missing:
        print(
            f"proxy_race: missing {', '.join(missing)}. Install them with\n"
            "    apt-get install -y nginx haproxy wrk     (or: bench/setup.sh)",
            file=sys.stderr,
        )
        return 2
    cores = os.sched_getaffinity(0)
    pin = bool(bins["taskset"]) and args.proxy_cpu != args.load_cpu
    pin = pin and {args.proxy_cpu, args.load_cpu} <= cores
    proxy_cpus = proxy_cores(args, cores) if pin else []
    if pin:
        os.sched_setaffinity(0, {args.load_cpu})  # keep the harness itself off the proxy's core
    else:
        print(f"!! not pinning (cores {sorted(cores)}, taskset {bins['taskset']}): less reliable")
    if args.syscalls and (why := race_syscalls.available()) is not None:
        print(f"!! --syscalls: {why}; the race goes on without it")
        args.syscalls = False
    if args.syscalls:
        print(
            "!! --syscalls: counting costs the traced peers time on every system call, so "
            "this race's CPU and req/s columns are not comparable with a race without it"
        )
    info = machine_info(bins)
    print("machine: " + "; ".join(f"{k} {v}" for k, v in info.items()))
    n_runs = len(args.scenarios) * len(args.peers) * args.rounds
    print(
        f"plan: {n_runs} runs of {args.duration} s (+{args.warmup} s warm-up), wrk -t1 "
        f"-c{args.connections}; about {n_runs * (args.duration + args.warmup + 1)} s",
        flush=True,
    )
    for name in (r for r in RELAYS if args.processes > 1 and r in args.peers):
        print(f"!! {name} is one process on one event loop, whatever --processes {args.processes}")
    watched = sorted({*proxy_cpus, args.load_cpu}) if pin else sorted(cores)
    quiet = [quiet_check("before the race", watched, wait=args.wait_quiet)]

    workdir = Path(tempfile.mkdtemp(prefix="pyjk-race-"))
    sup = Supervisor(bins["taskset"] if pin else None)
    sup.install_signal_handlers()
    race = Race(
        args=args,
        bins=bins,
        sup=sup,
        workdir=workdir,
        proxy_cpu=args.proxy_cpu if pin else None,
        proxy_cpus=proxy_cpus,
        load_cpu=args.load_cpu if pin else None,
        cores=watched,
    )
    if any(SCENARIOS[s].tls for s in args.scenarios):
        race.cert = race_tls.make_cert(workdir)
    try:
        members = cfg.members_for(free_ports(3))
        conf = backend.write_backend(members, workdir)
        argv_backend = backend.nginx_argv(str(bins["nginx"]), conf, workdir)
        back = sup.start("backends", argv_backend, cpu=race.load_cpu, log=workdir / "backends.log")
        for m in members:
            wait_http_ready(back, m.host, m.port, "/100", 10.0)
        peers, failures = start_peers(race, members)
        runs = race_rounds(race, peers)
        sup.stop_all()
        quiet.append(quiet_check("after the race", watched))
        report(race, peers, runs, failures, {"machine": info, "quiet": quiet})
    except KeyboardInterrupt:
        print("\ninterrupted: stopping everything the race started", file=sys.stderr)
        return 130
    finally:
        sup.stop_all()
        if args.keep_dir:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
