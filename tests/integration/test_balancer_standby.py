"""The active/standby balancer pair (issue 17) with real processes: three workers replicating
over loopback multicast, an active balancer and a standby (``--standby --cluster``), both with
two data-plane processes. kill -9 of the active (supervisor and processes) → the standby binds
the port and serves the same session on the same worker, with the member disabled on the
active's status page still disabled. Forged balancer heartbeats change nothing."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest

from replication import codec
from replication.codec import BalancerBeat
from replication.keyfile import create_key
from replication.seal import Kind, Sealer
from tests.integration.conftest import Stack, http_get
from tests.integration.test_cluster_kit import Cluster, session_cookie
from tests.support.procs import Proc, free_port, wait_for

pytestmark = pytest.mark.integration

TOKEN = "t0k3n-for-the-standby-tests-0123456789"
PROCS = ("--processes", "2")


def fields(line: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in line.split()[1:] if "=" in part)


def lines(stack: Stack, kind: str) -> list[dict[str, str]]:
    return [fields(x) for x in stack.status_txt().splitlines() if x.startswith(kind + ":")]


def member(stack: Stack, name: str) -> dict[str, str]:
    [row] = [m for m in lines(stack, "Member") if m["name"] == name]
    return row


def disable(stack: Stack, name: str) -> None:
    update(stack, sw=name, vwa="d")


def update(stack: Stack, **params: str) -> None:
    """A status-page edit of lb ``lb`` (``sw``: of one of its members) by POST with the token."""
    form = urlencode({"cmd": "update", "w": "lb", **params, "mime": "txt"})
    conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=10)
    try:
        conn.request("POST", "/jkmanager", body=form, headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Authorization": f"Bearer {TOKEN}",
        })  # fmt: skip
        resp = conn.getresponse()
        assert resp.status == 200, resp.read()
    finally:
        conn.close()


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def gone(pid: int) -> bool:
    """Exited: no such process, or a zombie (its sockets are closed by then)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("Z", "X")


def kill9_all(proc: Proc) -> None:
    """The supervisor and its data-plane processes, all at once (a machine's death); returns
    once every one has exited (their listening sockets closed)."""
    pids = [*children(proc.pid), proc.pid]
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    proc.wait(10)
    wait_for(lambda: all(gone(pid) for pid in pids), 10, what="the killed processes gone")


class Forger:
    """Sends balancer heartbeats sealed with a key that is not the cluster's, claiming to be
    an active balancer with member n1 stopped: every one must be dropped (reason auth)."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.stop = threading.Event()
        self.sent = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        sender = os.urandom(16)
        sealer = Sealer(os.urandom(32), sender, int(time.time() * 1000), Kind.HEARTBEAT)
        entry = {"a": "STP", "s": "ERR", "f": 1, "d": 0, "v": 0, "e1": 1.0, "e2": 1.0,
                 "r": "forged", "h": False, "ss": None}  # fmt: skip
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        with sock:
            while not self.stop.wait(0.05):
                beat = BalancerBeat(self.cluster.name, sender.hex(), "active", time.time(),
                                    "127.0.0.1", (), 1, 1, {"lb": {"n1": entry}})  # fmt: skip
                data = sealer.seal(codec.encode(beat), time.time())
                sock.sendto(data, ("228.0.0.4", self.cluster.mport))
                self.sent += 1

    def __enter__(self) -> Forger:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)


def start_standby(
    stack: Stack,
    config: str,
    *extra: str,
    name: str = "standby",
    standby: bool = True,
    host: str = "127.0.0.1",
    processes: str = PROCS[1],
) -> Proc:
    """A second balancer on the stack's port with two processes (``standby=False``: a second
    active, which SO_REUSEPORT lets bind the same port; ``host="127.0.0.2"`` with an
    `other_machine` cluster file: a balancer playing another machine)."""
    assert stack.workers_file is not None and stack.mounts_file is not None
    return stack.group.python(
        "-m", "balancer", "--workers", str(stack.workers_file), "--mounts",
        str(stack.mounts_file), "--listen", f"{host}:{stack.port}", "--processes", processes,
        "--cluster", config, *(("--standby",) if standby else ()), *extra, name=name,
    )  # fmt: skip


def test_the_standby_takes_over_after_kill_9_with_the_same_sessions_and_lb_state(stack: Stack):
    cluster = Cluster(stack.group, stack.tmp)
    config = str(cluster.default_config)
    for name in ("n1", "n2", "n3"):
        stack.start_worker(name, "--cluster", config)
    workers = stack.workers_properties(
        ["n1", "n2", "n3"], f"worker.jkstatus.read_only=false\nworker.jkstatus.token={TOKEN}\n"
    )
    active = stack.start_balancer(workers, args=(*PROCS, "--cluster", config))
    standby = start_standby(stack, config)

    # the active sees its standby; the standby serves nothing meanwhile
    wait_for(lambda: any(p["role"] == "standby" for p in lines(stack, "Peer")), 15,
             what="the standby on the active's status page")  # fmt: skip
    [me] = lines(stack, "Balancer")
    assert me["role"] == "active" and me["takeovers"] == "0"
    assert "listening on" not in standby.output()  # its processes wait, warm (below)

    disable(stack, "n2")
    update(stack, sw="n3", vwr="n1")  # n3's redirect: carried as an edit ("x")
    update(stack, vlm="b", vlr="3")  # the lb's method and retries: its settings entry
    wait_for(lambda: "member=n2 activation=DIS" in standby.output(), 10,
             what="the standby applying the active's lb state")  # fmt: skip

    status, headers, body = http_get(f"{stack.url}/app/counter")
    assert status == 200, body
    cookie = session_cookie(headers)
    first = json.loads(body)
    assert first["node"] in ("n1", "n3")  # n2 is disabled: no new sessions
    status, _, body = http_get(f"{stack.url}/app/counter", {"Cookie": cookie})
    before = json.loads(body)

    with Forger(cluster) as forger:
        killed = time.monotonic()
        kill9_all(active)

        def served() -> bool:
            try:
                return http_get(f"{stack.url}/app/counter", {"Cookie": cookie}, 1)[0] == 200
            except OSError:
                return False

        wait_for(served, 20, what="the standby serving")
        took = time.monotonic() - killed
    print(f"standby served {took:.2f} s after kill -9 of the active (drop_time 1.0 s)")
    assert forger.sent > 10

    status, _, body = http_get(f"{stack.url}/app/counter", {"Cookie": cookie})
    after = json.loads(body)
    assert after["node"] == first["node"]  # sticky: the same worker
    assert after["count"] == before["count"] + 2  # the same session (one more in served())

    assert member(stack, "n2")["activation"] == "DIS"  # set on the active's page
    assert member(stack, "n3")["redirect"].strip('"') == "n1"
    [lb] = [fields(x) for x in stack.status_txt().splitlines() if "type=lb" in x]
    assert (lb["method"].strip('"'), lb["retries"]) == ("Busyness", "3")
    assert member(stack, "n1")["activation"] == "ACT"  # the forged STP did not land
    [me] = lines(stack, "Balancer")
    assert me["role"] == "active" and me["takeovers"] == "1"
    metrics = http_get(f"{stack.url}/jkmanager?mime=prometheus")[2].decode()
    assert "pyjk_balancer_takeovers_total 1.0" in metrics
    assert "pyjk_balancer_active 1.0" in metrics
    log = standby.output()
    assert "balancer=standby state=taking-over reason=active-silent" in log
    assert "balancer pair datagram dropped reason=auth" in log
    for _ in range(6):  # new sessions avoid n2 on the standby too
        status, _, body = http_get(f"{stack.url}/app/counter")
        assert json.loads(body)["node"] != "n2"

    # the workers heard both balancers and made neither a member
    listing = json.loads(
        http_get(f"http://127.0.0.1:{stack.backends['n1'].port}/cluster-manager")[2]
    )
    assert sorted(m["route"] for m in listing["members"]) == ["n1", "n2", "n3"]  # n1: itself
    assert listing["counters"]["balancer_heartbeats_in"] > 0


def start_paired(
    stack: Stack, config: str, port: int, name: str, *extra: str, host: str = "127.0.0.1"
) -> Proc:
    assert stack.workers_file is not None and stack.mounts_file is not None
    return stack.group.python(
        "-m", "balancer", "--workers", str(stack.workers_file), "--mounts",
        str(stack.mounts_file), "--listen", f"{host}:{port}", "--processes", "1",
        "--cluster", config, *extra, name=name,
    )  # fmt: skip


def other_machine(cluster: Cluster, drop_time: int | None = None) -> str:
    """The cluster's file for a balancer on 127.0.0.2 playing a second machine: its heartbeats
    come from that address (the pair compares listens by port alone across machines; on one
    machine 127.0.0.1:P and 127.0.0.2:P are separate sockets)."""
    membership: dict[str, object] = {"interface": "127.0.0.2"}
    if drop_time is not None:
        membership["drop_time"] = drop_time
    return str(cluster.config(membership=membership))


def metric(url: str, name: str) -> float | None:
    _, _, body = http_get(f"{url}/jkmanager?mime=prometheus", timeout=2)
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def test_sigterm_hands_over_at_once_and_actives_of_other_sockets_both_serve(stack: Stack):
    """One process each (no supervisor): SIGTERM of the active → its last heartbeat says so
    and the standby serves without waiting for drop_time; actives started again without
    --standby on sockets of their own (another address, another port) both serve, neither
    steps down nor counts two actives (two on one socket: the warm-standby test below)."""
    cluster = Cluster(stack.group, stack.tmp)
    config = str(cluster.config(membership={"drop_time": 3000}))
    stack.start_worker("n1", "--cluster", config)
    stack.start_balancer(stack.workers_properties(["n1"]),
                         args=("--processes", "1", "--cluster", config))  # fmt: skip
    first = stack.balancer
    assert first is not None
    standby = start_paired(stack, config, stack.port, "standby", "--standby")
    wait_for(lambda: any(p["role"] == "standby" for p in lines(stack, "Peer")), 15,
             what="the standby on the active's status page")  # fmt: skip
    wait_for(lambda: "hears peer=127.0.0.1 role=active" in standby.output(), 10,
             what="the standby hearing the active")  # fmt: skip
    standby.signal(signal.SIGHUP)  # a reload of both balancers reaches the waiting one too
    wait_for(lambda: "reloaded (SIGHUP)" in standby.output(), 10, what="the standby's reload")
    assert standby.alive()

    stopped = time.monotonic()
    first.signal(signal.SIGTERM)
    wait_for(lambda: "state=active reason=ports-free" in standby.output(), 10,
             what="the standby taking over")  # fmt: skip
    took = time.monotonic() - stopped
    wait_for(lambda: http_get(f"{stack.url}/app/counter", timeout=1)[0] == 200, 10,
             what="serving")  # fmt: skip
    print(f"standby took over {took:.2f} s after SIGTERM of the active (drop_time 3 s)")
    assert took < 2.5  # it did not wait for drop_time
    assert "reason=active-shutdown" in standby.output()
    assert first.wait(10) == 0

    # the old active comes back on the same port of another address of this host, without
    # --standby: another socket, not a second active of this one's (before: it stepped down
    # and 127.0.0.2 was served by nobody)
    other = start_paired(stack, config, stack.port, "second-active", host="127.0.0.2")
    wait_for(lambda: "hears peer=127.0.0.1 role=active" in other.output(), 15,
             what="the second one hearing the active")  # fmt: skip
    wait_for(lambda: served(f"http://127.0.0.2:{stack.port}/app/counter"), 15,
             what="the second one serving its address")  # fmt: skip
    # a third active on a port of its own: neither steps down (a port served by nobody)
    port = free_port()
    third = start_paired(stack, config, port, "third-active")
    wait_for(lambda: "hears peer=127.0.0.1 role=active" in third.output(), 15,
             what="the third one hearing the active")  # fmt: skip
    assert http_get(f"http://127.0.0.1:{port}/app/counter", timeout=5)[0] == 200
    wait_for(lambda: standby.output().count("hears peer=127.0.0.1 role=active") >= 2, 15,
             what="the first one hearing both")  # fmt: skip
    for proc in (standby, other, third):
        assert "stepping-down" not in proc.output() and "state=two-actives" not in proc.output()
        assert proc.alive()
    assert metric(stack.url, "pyjk_balancer_two_actives_total") == 0.0
    assert served(f"http://127.0.0.2:{stack.port}/app/counter") and served(
        stack.url + "/app/counter"
    )


def served(url: str) -> bool:
    try:
        return http_get(url, timeout=1)[0] == 200
    except (OSError, http.client.HTTPException):
        return False


def test_the_standby_takes_over_at_its_actives_death_whatever_an_active_of_another_port_does(
    stack: Stack,
):
    """A :P, its standby S :P, and C :Q in one cluster (before: C's beats kept S waiting:
    after A's kill -9, :P was served by nobody for good)."""
    cluster = Cluster(stack.group, stack.tmp)
    config = str(cluster.default_config)  # drop_time 1 s
    stack.start_worker("n1", "--cluster", config)
    first = stack.start_balancer(stack.workers_properties(["n1"]),
                                 args=("--processes", "1", "--cluster", config))  # fmt: skip
    standby = start_paired(stack, config, stack.port, "standby", "--standby")
    wait_for(lambda: "hears peer=127.0.0.1 role=active" in standby.output(), 15,
             what="the standby hearing the active")  # fmt: skip
    port = free_port()
    third = start_paired(stack, config, port, "third-active")
    wait_for(lambda: served(f"http://127.0.0.1:{port}/app/counter"), 15, what="C serving :Q")
    wait_for(lambda: standby.output().count("hears peer=127.0.0.1 role=active") >= 2, 15,
             what="the standby hearing C too")  # fmt: skip
    kill9_all(first)
    killed = time.monotonic()
    wait_for(lambda: served(f"{stack.url}/app/counter"), 15, what="the standby serving :P")
    print(f":P served again {time.monotonic() - killed:.2f} s after kill -9 (drop_time 1 s)")
    assert "state=active reason=ports-free" in standby.output()
    assert third.alive() and served(f"http://127.0.0.1:{port}/app/counter")
    assert "stepping-down" not in third.output()


@pytest.mark.parametrize("processes", ["1", "2"])
def test_sigterm_of_the_active_hands_over_before_its_drain_ends(stack: Stack, processes: str):
    """A slow request in flight on the active: SIGTERM closes its listening sockets and
    sends the shutdown heartbeat at once; the standby serves new requests while the slow one
    is still draining on the active (before: only after the drain)."""
    cluster = Cluster(stack.group, stack.tmp)
    config = str(cluster.config(membership={"drop_time": 3000}))
    backend = stack.start_backend("b1")
    stack.start_balancer(stack.workers_properties(["b1"]),
                         args=("--processes", processes, "--cluster", config))  # fmt: skip
    first = stack.balancer
    assert first is not None
    standby = start_paired(stack, config, stack.port, "standby", "--standby")
    wait_for(lambda: "hears peer=127.0.0.1 role=active" in standby.output(), 15,
             what="the standby hearing the active")  # fmt: skip
    slow: dict[str, float | int] = {}

    def slow_request() -> None:
        status, _, _ = http_get(f"{stack.url}/app/slow?ms=8000", timeout=30)
        slow["status"], slow["ended"] = status, time.monotonic()

    thread = threading.Thread(target=slow_request, daemon=True)
    thread.start()
    try:
        wait_for(lambda: json.loads(http_get(f"http://127.0.0.1:{backend.port}/-/posts")[2])[
            "inflight"] == 1, 10, what="the slow request on the member")  # fmt: skip
        first.signal(signal.SIGTERM)
        wait_for(lambda: "state=active reason=ports-free" in standby.output(), 6,
                 what="the standby taking over during the drain")  # fmt: skip
        wait_for(lambda: http_get(f"{stack.url}/app/x", timeout=1)[0] == 200, 6,
                 what="the standby serving")  # fmt: skip
        served = time.monotonic()
        assert "ended" not in slow, "the standby served only after the active's drain"
        assert "reason=active-shutdown" in standby.output()
    finally:
        thread.join(30)
    assert slow["status"] == 200  # the drain went on: the slow request got its answer
    assert served < slow["ended"]
    assert first.wait(15) == 0


def slow_in_flight(url: str, backend_port: int) -> tuple[threading.Thread, dict[str, object]]:
    """A request of 8 s in flight through ``url`` (its member has it): the balancer that
    has it drains for that long."""
    slow: dict[str, object] = {}

    def run() -> None:
        try:
            slow["status"] = http_get(f"{url}/app/slow?ms=8000", timeout=30)[0]
        except OSError as exc:  # a drain cut short
            slow["error"] = exc
        slow["ended"] = time.monotonic()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    wait_for(lambda: json.loads(http_get(f"http://127.0.0.1:{backend_port}/-/posts")[2])[
        "inflight"] == 1, 10, what="the slow request on the member")  # fmt: skip
    return thread, slow


def test_sigterm_of_an_active_started_after_its_standby_ends_in_an_exit(stack: Stack):
    """The active started after the standby (e.g. the standby was restarted first). SIGTERM
    of the active: the standby takes over and beats as active while the active drains a
    slow request. Before: the draining one heard an older active, stepped down and, after
    the drain, restarted itself as a standby instead of exiting (a stop that hung until
    SIGKILL, and a false two-actives error)."""
    cluster = Cluster(stack.group, stack.tmp)
    config = str(cluster.config(membership={"drop_time": 5000}))
    create_key(stack.tmp / "cluster.key")  # the operator's copy: the standby starts first
    backend = stack.start_backend("b1")
    stack.workers_file = stack.tmp / "workers.properties"
    stack.mounts_file = stack.tmp / "uriworkermap.properties"
    stack.workers_file.write_text(stack.workers_properties(["b1"]))
    stack.mounts_file.write_text("/app|/*=lb\n/jkmanager|/*=jkstatus\n")
    stack.port = free_port()
    standby = start_paired(stack, config, stack.port, "standby", "--standby")
    wait_for(lambda: "balancer=standby waits" in standby.output(), 15,
             what="the standby waiting")  # fmt: skip
    active = start_paired(stack, config, stack.port, "active")
    wait_for(lambda: "hears peer=127.0.0.1 role=active" in standby.output(), 15,
             what="the standby hearing the active")  # fmt: skip
    wait_for(lambda: http_get(f"{stack.url}/app/x", timeout=1)[0] == 200, 10,
             what="the active serving")  # fmt: skip
    thread, slow = slow_in_flight(stack.url, backend.port)
    try:
        active.signal(signal.SIGTERM)
        wait_for(lambda: "state=active reason=ports-free" in standby.output(), 6,
                 what="the standby taking over during the drain")  # fmt: skip
        # the standby beats as active now, while the stopping one drains
        assert active.wait(20) == 0
    finally:
        thread.join(30)
    assert slow.get("status") == 200
    log = active.output()
    assert "stepping-down" not in log and "restarting as a standby" not in log
    assert "two-actives" not in log


def pids_answering(stack: Stack, tries: int = 8) -> set[int]:
    """The data-plane pids on the status pages answered over ``tries`` new connections (each
    page lists every process of the balancer that answered)."""
    seen: set[int] = set()
    for _ in range(tries):
        seen |= {int(row["pid"]) for row in lines(stack, "Process")}
    return seen


def refused(port: int, host: str = "127.0.0.1") -> bool:
    try:
        socket.create_connection((host, port), timeout=0.5).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.mark.parametrize("accept", ["reuseport", "inherit"])
def test_a_warm_standby_loads_its_processes_early_and_accepts_nothing_until_the_takeover(
    stack: Stack, accept: str
):
    """--processes 2 on both: the standby's data-plane processes run before the takeover,
    follow its SIGHUP and are restarted when they die, yet no connection reaches them while
    the active lives, and the port is refused between the active's kill -9 and the takeover;
    the takeover lets the same processes accept. SIGTERM of a waiting standby stops them.
    ``--accept inherit``: the supervisor hands its unbound sockets down at the start and binds
    and listens on them at the takeover (the processes hold the same open socket)."""
    cluster = Cluster(stack.group, stack.tmp)
    config = str(cluster.default_config)  # heartbeat 100 ms, drop_time 1 s
    stack.start_backend("b1")
    paired = (*PROCS, "--accept", accept, "--cluster", config)
    active = stack.start_balancer(stack.workers_properties(["b1"]), args=paired)
    standby = start_standby(stack, config, "--accept", accept)
    wait_for(lambda: standby.output().count("waits (standby)") == 2, 30,
             what="the standby's two processes loaded and waiting")  # fmt: skip
    wait_for(lambda: "hears peer=127.0.0.1 role=active" in standby.output(), 10,
             what="the standby hearing the active")  # fmt: skip
    waiting = set(children(standby.pid))
    assert len(waiting) == 2
    assert pids_answering(stack) == set(children(active.pid))  # the active's only

    standby.signal(signal.SIGHUP)  # the waiting processes load the new generation
    wait_for(lambda: "processes=2 generation=2" in standby.output(), 15,
             what="both waiting processes on the standby's generation 2")  # fmt: skip

    victim = sorted(waiting)[0]
    os.kill(victim, signal.SIGKILL)  # a waiting process dies: it is started again, waiting
    wait_for(lambda: standby.output().count("waits (standby)") == 3, 30,
             what="the dead waiting process replaced")  # fmt: skip
    waiting = set(children(standby.pid))
    assert len(waiting) == 2 and victim not in waiting
    assert pids_answering(stack) == set(children(active.pid))

    killed = time.monotonic()
    kill9_all(active)
    # the last heartbeat was at most 100 ms before the kill: no takeover for 0.9 s
    while time.monotonic() - killed < 0.6:
        assert refused(stack.port), "a connection was accepted before the takeover"
        time.sleep(0.05)
    wait_for(lambda: http_get(f"{stack.url}/app/x", timeout=1)[0] == 200, 15,
             what="the standby serving")  # fmt: skip
    took = time.monotonic() - killed
    print(f"warm standby served {took:.2f} s after kill -9 of the active (drop_time 1.0 s)")
    assert "state=taking-over reason=active-silent" in standby.output()
    wait_for(lambda: standby.output().count("accepts (takeover)") == 2, 5,
             what="both waiting processes accepting")  # fmt: skip
    assert pids_answering(stack) == waiting  # the processes that waited, not new ones

    # a new standby behind it, stopped while it waits: its processes go with it
    second = start_standby(stack, config, "--accept", accept, name="standby-2")
    wait_for(lambda: second.output().count("waits (standby)") == 2, 30,
             what="the second standby's processes waiting")  # fmt: skip
    its = children(second.pid)
    second.signal(signal.SIGTERM)
    assert second.wait(15) == 0
    assert second.output().count("stopped while waiting") == 2
    assert not [pid for pid in its if Path(f"/proc/{pid}").exists()]
    assert pids_answering(stack) == waiting


def test_two_actives_on_one_port_the_later_steps_down_and_is_a_warm_standby(stack: Stack):
    """Two balancers started as actives on one port, --processes 2 each: SO_REUSEPORT would
    let both bind it and the kernel split the traffic. The one started later hears the first
    (here before it binds: its first heartbeats), steps down and restarts itself as a standby
    in the same process; every connection reaches the first; it takes over at the first's
    kill -9 and counts the step-down."""
    cluster = Cluster(stack.group, stack.tmp)
    config = str(cluster.default_config)
    stack.start_backend("b1")
    first = stack.start_balancer(stack.workers_properties(["b1"]),
                                 args=(*PROCS, "--cluster", config))  # fmt: skip
    wait_for(lambda: "data-plane processes accept" not in first.output() and
             first.output().count("listening on") == 2, 20,
             what="the first one's processes listening")  # fmt: skip
    second = start_standby(stack, config, name="second", standby=False)
    # SIGHUP from the restart's log line on, through the exec (a logrotate, a reload): before,
    # the exec's default action ended the process until the new image handled it
    hups = threading.Event()

    def hup() -> None:
        while not hups.wait(0.1):
            if "restarting as a standby" in second.output() and second.alive():
                os.kill(second.pid, signal.SIGHUP)

    thread = threading.Thread(target=hup, daemon=True)
    thread.start()
    try:
        wait_for(lambda: "state=stepping-down reason=two-actives" in second.output(), 20,
                 what="the later one stepping down")  # fmt: skip
        wait_for(lambda: second.output().count("waits (standby)") >= 2 or not second.alive(),
                 30, what="the later one's processes waiting as a standby")  # fmt: skip
    finally:
        hups.set()
        thread.join(5)
    assert second.alive()  # the same process: it restarted itself
    assert "restarting as a standby" in second.output()
    assert "stepping-down" not in first.output()
    assert pids_answering(stack, 12) == set(children(first.pid))  # no split any more
    assert metric(stack.url, "pyjk_balancer_two_actives_total") == 1.0

    kill9_all(first)
    wait_for(lambda: http_get(f"{stack.url}/app/x", timeout=1)[0] == 200, 15,
             what="the stepped-down one taking over")  # fmt: skip
    wait_for(lambda: metric(stack.url, "pyjk_balancer_takeovers_total") == 1.0, 5,
             what="the takeover counted")  # fmt: skip
    assert metric(stack.url, "pyjk_balancer_step_downs_total") == 1.0
    assert pids_answering(stack) == set(children(second.pid))


def test_a_standby_that_took_over_during_a_partition_steps_down_when_the_old_active_is_back(
    stack: Stack,
):
    """The active stops being heard (SIGSTOP: a partition, or a hung machine) while holding
    its port; the standby, on the same port of another address here (and heartbeating from it:
    another machine to the pair), takes over and serves.
    The old active comes back (SIGCONT): two actives serve. The standby started later: it
    stops serving (its listeners close, its processes drain), restarts itself as a standby
    and waits warm, while the old active keeps serving throughout."""
    cluster = Cluster(stack.group, stack.tmp)
    config = str(cluster.default_config)
    stack.start_backend("b1")
    first = stack.start_balancer(stack.workers_properties(["b1"]),
                                 args=("--processes", "1", "--cluster", config))  # fmt: skip
    standby = start_standby(stack, other_machine(cluster), host="127.0.0.2")
    wait_for(lambda: standby.output().count("waits (standby)") == 2, 30,
             what="the standby's processes waiting")  # fmt: skip
    wait_for(lambda: "hears peer=127.0.0.1 role=active" in standby.output(), 10,
             what="the standby hearing the active")  # fmt: skip
    own = f"http://127.0.0.2:{stack.port}"

    first.signal(signal.SIGSTOP)
    try:
        wait_for(lambda: http_get(f"{own}/app/x", timeout=1)[0] == 200, 15,
                 what="the standby serving during the partition")  # fmt: skip
    finally:
        first.signal(signal.SIGCONT)
    wait_for(lambda: "state=stepping-down reason=two-actives" in standby.output(), 15,
             what="the standby (started later) stepping down")  # fmt: skip
    wait_for(lambda: standby.output().count("waits (standby)") == 4, 30,
             what="the stepped-down balancer waiting warm again")  # fmt: skip
    assert refused(stack.port, "127.0.0.2")  # it serves nothing any more
    assert standby.alive() and "restarting as a standby" in standby.output()
    assert "stepping-down" not in first.output()
    assert http_get(f"{stack.url}/app/x", timeout=5)[0] == 200  # the old active serves
    wait_for(lambda: metric(stack.url, "pyjk_balancer_two_actives_total") == 1.0, 10,
             what="the episode counted on the old active")  # fmt: skip
    assert metric(stack.url, "pyjk_balancer_other_active") == 0.0


@pytest.mark.parametrize(
    ("then", "processes"), [("sigterm", "2"), ("active-dies", "2"), ("active-dies", "1")]
)
def test_a_step_down_draining_a_slow_request_exits_on_sigterm_and_takes_over_if_the_active_dies(
    stack: Stack, then: str, processes: str
):
    """The standby took over during a partition and has a slow request in flight when the
    old active is back: it steps down and drains. SIGTERM then: it exits 0 (before: ignored,
    it restarted as a standby). The old active killed then: the draining one ends its drain
    and takes over at once (before: nobody served until its drain ended, it restarted and
    waited drop_time again)."""
    cluster = Cluster(stack.group, stack.tmp)
    config = str(cluster.config(membership={"drop_time": 2000}))
    backend = stack.start_backend("b1")
    first = stack.start_balancer(stack.workers_properties(["b1"]),
                                 args=("--processes", "1", "--cluster", config))  # fmt: skip
    standby = start_standby(
        stack, other_machine(cluster, drop_time=2000), host="127.0.0.2", processes=processes
    )
    wait_for(lambda: "hears peer=127.0.0.1 role=active" in standby.output(), 20,
             what="the standby hearing the active")  # fmt: skip
    own = f"http://127.0.0.2:{stack.port}"
    first.signal(signal.SIGSTOP)
    try:
        wait_for(lambda: http_get(f"{own}/app/x", timeout=1)[0] == 200, 15,
                 what="the standby serving during the partition")  # fmt: skip
        thread, _ = slow_in_flight(own, backend.port)
    finally:
        first.signal(signal.SIGCONT)
    try:
        wait_for(lambda: "state=stepping-down reason=two-actives" in standby.output(), 15,
                 what="the standby stepping down with the slow request in flight")  # fmt: skip
        if then == "sigterm":
            standby.signal(signal.SIGTERM)
            assert standby.wait(20) == 0
            assert "restarting as a standby" not in standby.output()
            return
        wait_for(lambda: "hears peer=127.0.0.1 role=active" in standby.output(), 5,
                 what="the draining one hearing the active")  # fmt: skip
        killed = time.monotonic()
        kill9_all(first)
        wait_for(lambda: http_get(f"{own}/app/x", timeout=1)[0] == 200, 15,
                 what="the stepped-down one serving again")  # fmt: skip
        took = time.monotonic() - killed
        print(f"served {took:.2f} s after the active's kill -9 (drop_time 2 s, drain 8 s)")
        log = standby.output()
        assert "the drain ends now" in log and "--peer-silent" in log
        assert "reason=no-active" in log  # at once: the silence was decided before the exec
        # the lb state it had heard crossed the exec: applied at the takeover (before: 0)
        assert "members_applied=1" in log.rsplit("--peer-silent", 1)[1]
        assert took < 8.0  # not after the 8 s drain, its restart and drop_time again
        # the draining processes were killed and reaped before the exec: no zombie under it
        assert not [pid for pid in children(standby.pid) if gone(pid)]
        assert standby.alive()
    finally:
        thread.join(30)
