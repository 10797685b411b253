"""`pyjk-cluster scale` behind a dynamic lb, under locust load: 3 → 6 → 2 workers with no
request failed and no session lost (bench/locustfile.py checks every reply)."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import ROOT, Stack, http_get
from tests.integration.test_balancer_dynamic import MOUNTS, counter, dynamic_workers, members
from tests.integration.test_balancer_processes import each_served_more, processes, served_by_each
from tests.integration.test_cluster_kit import Cluster
from tests.support.procs import open_files, tcp_connections_to, udp_sockets, wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        importlib.util.find_spec("locust") is None,
        reason="locust is not installed (pyproject's bench extra)",
    ),
]


def pyjk_cluster(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker.cluster", *args], cwd=ROOT, capture_output=True,
        text=True, timeout=120, check=False,
    )  # fmt: skip


@contextlib.contextmanager
def scaled_balancer(stack: Stack, processes: int, extra: str = "") -> Iterator[Cluster]:
    """A dynamic-lb balancer and its cluster; every worker scale started is stopped."""
    cluster = Cluster(stack.group, stack.tmp)
    config = cluster.default_config
    workers = dynamic_workers(config, extra)
    stack.start_balancer(workers, MOUNTS, args=("--processes", str(processes)))
    try:
        yield cluster
    except BaseException:
        # the workers scale started log beside the cluster file: shown with the failure
        logs = config.parent / f".{config.name}.logs"
        for log in sorted(logs.glob("*")) if logs.is_dir() else []:
            print(
                f"--- {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-40:])
            )
        raise
    finally:
        pyjk_cluster("scale", "0", "--cluster", str(config), "--stop-timeout", "5")
        state = config.parent / f".{config.name}.workers.json"  # what scale 0 could not stop
        for line in state.read_text().splitlines() if state.exists() else []:
            with contextlib.suppress(OSError, ValueError, KeyError):
                os.kill(json.loads(line)["pid"], signal.SIGKILL)


@pytest.fixture
def scaled(stack: Stack) -> Iterator[tuple[Stack, Path]]:
    # one process: its log lines are counted (with --processes N the supervisor hears the cluster)
    with scaled_balancer(stack, 1) as cluster:
        yield stack, cluster.default_config


def scale(config: Path, n: int) -> str:
    done = pyjk_cluster("scale", str(n), "--cluster", str(config), "--drain", "1")
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_scale_lists_and_stops_what_it_started(scaled: tuple[Stack, Path]):
    stack, config = scaled
    out = scale(config, 2)
    assert out.count("started route=w") == 2 and "2 worker(s) running" in out
    wait_for(lambda: len(members(stack)) == 2, 10, what="two members")
    status = pyjk_cluster("status", "--cluster", str(config)).stdout
    assert status.count("state=ready") == 2
    assert {m["origin"] for m in members(stack).values()} == {"cluster"}
    out = scale(config, 0)
    assert out.count("stopped route=w") == 2 and "0 worker(s) running" in out
    wait_for(lambda: members(stack) == {}, 10, what="no members")
    assert http_get(f"{stack.url}/app/counter")[0] == 503
    bad = pyjk_cluster("scale", "2", "--cluster", str(config.parent / "missing.toml"))
    assert bad.returncode == 2 and "no such cluster file" in bad.stderr


def test_scaling_3_6_2_under_locust_load_fails_no_request_and_loses_no_session(
    scaled: tuple[Stack, Path],
):
    stack, config = scaled
    scale(config, 3)
    wait_for(lambda: len(members(stack)) == 3, 10, what="three members")
    prefix, summary = stack.tmp / "locust", stack.tmp / "locust-summary.json"
    locust = stack.group.python(
        "-m", "locust", "-f", str(ROOT / "bench" / "locustfile.py"), "--headless",
        "-u", "4", "-r", "4", "--run-time", "30s", "--stop-timeout", "10", "--host", stack.url,
        "--csv", str(prefix), "--json-file", str(prefix), "--only-summary",
        name="locust",
        env={"PYJK_LOCUST_SUMMARY": str(summary), "PYJK_LOCUST_WAIT": "0.01-0.03"},
    )  # fmt: skip

    def elected() -> int:
        return sum(m["elected"] for m in members(stack).values())

    wait_for(lambda: elected() > 200, 20, what="load on three workers")
    scale(config, 6)
    wait_for(lambda: len(members(stack)) == 6, 10, what="six members")
    wait_for(lambda: all(m["elected"] > 0 for m in members(stack).values()), 15,
             what="new sessions on the new workers")  # fmt: skip
    scale(config, 2)
    wait_for(lambda: len(members(stack)) == 2, 10, what="two members")
    started = elected()
    wait_for(lambda: elected() > started + 100, 15, what="load on the two left")
    code = locust.wait(60)
    output = locust.output()
    assert code == 0, output[-4000:]
    stats = json.loads(Path(f"{prefix}.json").read_text())
    http = [s for s in stats if s["method"] != "FAILOVER"]
    # locust's checks fail a reply on a lost or doubled write or a wrong node, too
    assert sum(s["num_failures"] for s in http) == 0, output[-4000:]
    assert sum(s["num_requests"] for s in http) > 500, output[-4000:]
    log = stack.balancer.output()
    assert log.count("state=JOINED reason=ready") == 6
    assert log.count("state=DIS reason=leaving") == 4
    assert log.count("state=REMOVED reason=shutdown") == 4


def test_with_two_processes_only_the_supervisor_hears_the_cluster_and_every_process_follows(
    stack: Stack,
):
    with scaled_balancer(stack, 2, "worker.cluster_poll_interval=1\n") as cluster:
        config = cluster.default_config
        wait_for(lambda: len(processes(stack)) == 2, 20, what="two data-plane processes")
        assert stack.balancer is not None
        supervisor, dataplane = stack.balancer.pid, [int(p["pid"]) for p in processes(stack)]

        def agreed(count: int) -> set[str] | None:
            """The members, once pages on new connections (both processes answer some) all
            show ``count`` of them and every process serves the same generation."""
            pages = [frozenset(members(stack)) for _ in range(8)]
            generations = {p["generation"] for p in processes(stack)}
            if len(set(pages)) == 1 and len(pages[0]) == count and len(generations) == 1:
                return set(pages[0])
            return None

        seen: list[set[str]] = []  # what satisfied the poll (asked again, a process row may lag)

        def agree(count: int) -> bool:
            found = agreed(count)
            if found is not None:
                seen.append(found)
            return found is not None

        scale(config, 2)
        wait_for(lambda: agree(2), 15, what="both processes with both members")
        names = seen[-1]
        # the Live column, polled by the supervisor, shows on every process's pages
        wait_for(lambda: all(all(m["live_sessions"] is not None for m in members(stack).values())
                             for _ in range(6)), 10, what="the Live column")  # fmt: skip
        # one multicast receiver, the supervisor's; no process polls /cluster-manager itself
        # (checked before any request is proxied: the processes' pools connect to the nodes)
        ports = {m["port"] for m in members(stack).values()}
        assert udp_sockets(cluster.mport) & open_files(supervisor)
        for pid in dataplane:
            assert not udp_sockets(cluster.mport) & open_files(pid), f"process {pid} listens"
            assert not tcp_connections_to(ports) & open_files(pid), f"process {pid} polls"
        assert stack.balancer.output().count("listens to cluster") == 1
        before = served_by_each(stack)
        served = [counter(stack)[1]["node"] for _ in range(60)]  # new sessions and connections
        assert set(served) == names
        each_served_more(stack, before)
        # one set of numbers: every page shows the same elected counts, whoever answers
        pages = [{n: m["elected"] for n, m in members(stack).items()} for _ in range(6)]
        assert all(p == pages[0] for p in pages) and sum(pages[0].values()) == 60, pages
        scale(config, 1)
        wait_for(lambda: agree(1), 20, what="one member left in both processes")
        (kept,) = seen[-1]
        (gone,) = names - {kept}
        # its shared record is freed (reused once no process serves an older generation)
        assert f"lb=lb member={gone} shared record freed generation=" in stack.balancer.output()
        before = served_by_each(stack)
        assert {counter(stack)[1]["node"] for _ in range(40)} == {kept}
        each_served_more(stack, before)
