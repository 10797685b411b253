"""Real Tomcat 10 instances for the interop tests: one CATALINA_BASE each, AJP only, always stopped.

Each instance gets its own CATALINA_BASE under the test's tmp directory: conf/server.xml (an
AJP connector on 127.0.0.1:<free port> with a secret, no HTTP connector, no shutdown port, the
Engine's jvmRoute = the node name; optionally the Cluster of conf/cluster.xml), a minimal
conf/web.xml, console logging, and the test webapp as ROOT. It runs in the foreground
(``catalina.sh run``) from the Debian package ``tomcat10`` (CATALINA_HOME /usr/share/tomcat10),
and is ready when it answers an AJP CPing — the connector starts accepting only after the
webapp has started.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.integration.conftest import Stack
from tests.support.procs import Proc, ProcGroup, free_port

HERE = Path(__file__).resolve().parent
CATALINA_HOME = Path(os.environ.get("PYJK_CATALINA_HOME", "/usr/share/tomcat10"))
CATALINA_SH = CATALINA_HOME / "bin" / "catalina.sh"
SECRET = "pyjk-test-secret"
JAVA_OPTS = (
    "-Djava.net.preferIPv4Stack=true -Xmx256m -Xss512k -XX:+UseSerialGC "
    "-XX:TieredStopAtLevel=1 -Djava.security.egd=file:/dev/./urandom"
)
START_TIMEOUT = 60.0  # s; a cold JVM plus JSP compilation takes a few seconds

# The first instance compiles the webapp's JSPs at startup (WEB-INF/web.xml loads them all);
# later instances start from a copy of its work directory, and Jasper, finding classes newer
# than the pages, compiles nothing: about 3 s instead of 9 s per start.
_compiled: Path | None = None


def missing() -> str | None:
    """Why Tomcat tests cannot run here, or None when they can."""
    if not CATALINA_SH.exists():
        return f"{CATALINA_SH} not found (Debian package tomcat10; scripts/test.sh installs it)"
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        return "no java on PATH (tomcat10 pulls in a JRE)"
    return None


def free_udp_port() -> int:
    """A UDP port on 127.0.0.1 that was free a moment ago (for the cluster's multicast)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cping(port: int, timeout: float = 1.0) -> bool:
    """Whether an AJP connector on 127.0.0.1:port answers CPing with CPong in time."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(b"\x12\x34\x00\x01\x0a")
            got = b""
            while len(got) < 5:
                data = s.recv(5 - len(got))
                if not data:
                    return False
                got += data
            return got == b"AB\x00\x01\x09"
    except OSError:
        return False


@dataclass
class ClusterPorts:
    """Shared by the members of one test cluster."""

    mcast_port: int


class Tomcat:
    """One Tomcat instance (node ``node``); ``start()``, ``wait_ready()``, ``stop()``."""

    def __init__(
        self, tmp: Path, node: str, *, cluster: ClusterPorts | None = None, secret: str = SECRET
    ) -> None:
        self.node = node
        self.base = tmp / f"tomcat-{node}"
        self.secret = secret
        self.cluster = cluster
        self.ajp_port = free_port()
        self.receiver_port = free_port() if cluster else 0
        self.proc: Proc | None = None
        self.log_path = self.base / "logs" / f"tomcat-{node}.log"  # the console output
        self._prepare()

    def _prepare(self) -> None:
        base = self.base
        for sub in ("conf", "logs", "temp", "work", "webapps"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        server = (HERE / "conf" / "server.xml").read_text()
        if self.cluster is not None:
            server = server.replace("<!--CLUSTER-->", (HERE / "conf" / "cluster.xml").read_text())
        (base / "conf" / "server.xml").write_text(server)
        for name in ("web.xml", "logging.properties"):
            shutil.copy(HERE / "conf" / name, base / "conf" / name)
        root = base / "webapps" / "ROOT"
        if root.exists():
            shutil.rmtree(root)
        shutil.copytree(HERE / "webapp", root)
        work = base / "work" / "Catalina"
        if _compiled is not None and not work.exists():
            shutil.copytree(_compiled, work)

    def start(self, group: ProcGroup | None = None) -> Tomcat:
        """Start in the background; ``group`` (if given) stops it and shows its log on failure."""
        props = [
            f"-Dpyjk.ajp.port={self.ajp_port}",
            f"-Dpyjk.secret={self.secret}",
            f"-Dpyjk.node={self.node}",
        ]
        if self.cluster is not None:
            props += [
                f"-Dpyjk.mcast.port={self.cluster.mcast_port}",
                f"-Dpyjk.receiver.port={self.receiver_port}",
            ]
        env = {
            "CATALINA_HOME": str(CATALINA_HOME),
            "CATALINA_BASE": str(self.base),
            "CATALINA_TMPDIR": str(self.base / "temp"),
            "JAVA_OPTS": JAVA_OPTS + " " + " ".join(props),
        }
        for var in ("CATALINA_OPTS", "CATALINA_PID", "LOGGING_CONFIG"):
            env[var] = ""
        self.proc = Proc([str(CATALINA_SH), "run"], self.log_path, env)
        if group is not None:
            group.procs.append(self.proc)
        return self

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.proc.alive():
                raise AssertionError(f"tomcat {self.node} exited:\n{self.output()[-4000:]}")
            if cping(self.ajp_port):
                self._keep_compiled()
                return
            time.sleep(0.1)
        log = self.output()[-4000:]
        raise AssertionError(f"tomcat {self.node} not ready in {timeout}s:\n{log}")

    def _keep_compiled(self) -> None:
        global _compiled
        work = self.base / "work" / "Catalina"
        if _compiled is None and work.exists():
            keep = Path(tempfile.mkdtemp(prefix="pyjk-tomcat-work-"))
            atexit.register(shutil.rmtree, keep, True)
            shutil.copytree(work, keep / "Catalina")
            _compiled = keep / "Catalina"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.alive()

    def output(self) -> str:
        log = self.log_path
        return log.read_text(errors="replace") if log.exists() else ""

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (a clean shutdown, cluster goodbye included), SIGKILL after ``timeout``.

        The log stays open: a test that stopped a Tomcat still shows its log if it fails."""
        proc = self.proc
        if proc is None or not proc.alive():
            return
        proc.signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)

    def worker_lines(self, name: str | None = None, **extra: object) -> list[str]:
        """workers.properties lines for this node as an ajp13 member called ``name``."""
        name = name or self.node
        lines = [
            f"worker.{name}.type=ajp13",
            f"worker.{name}.host=127.0.0.1",
            f"worker.{name}.port={self.ajp_port}",
            f"worker.{name}.route={self.node}",
        ]
        lines += [f"worker.{name}.{k}={v}" for k, v in extra.items()]
        return lines


def start_all(tomcats: list[Tomcat], group: ProcGroup | None = None) -> None:
    """Start several instances at once and wait for each (stops them all if one fails)."""
    for t in tomcats:
        t.start(group)
    try:
        for t in tomcats:
            t.wait_ready()
    except BaseException:
        for t in tomcats:
            t.stop(timeout=5)
        raise


def workers_properties(
    tomcats: list[Tomcat],
    *,
    member: dict[str, object] | None = None,
    lb: dict[str, object] | None = None,
    extra: tuple[str, ...] = (),
) -> str:
    """An lb ``lb`` over the instances (routes = node names, the secret set on the lb and
    inherited by its members, as a mod_jk config would) and a status worker ``jkstatus``."""
    lines = [
        "worker.list=lb,jkstatus",
        "worker.maintain=1",
        "worker.lb.type=lb",
        f"worker.lb.balance_workers={','.join(t.node for t in tomcats)}",
        f"worker.lb.secret={tomcats[0].secret}",
        "worker.lb.recover_time=1",
        *(f"worker.lb.{k}={v}" for k, v in (lb or {}).items()),
    ]
    for t in tomcats:
        lines += t.worker_lines(**(member or {}))
    lines += ["worker.jkstatus.type=status", *extra]
    return "\n".join(lines) + "\n"


MOUNTS = "/*=lb\n/jkmanager|/*=jkstatus\n"


@dataclass
class TomcatStack(Stack):
    """Tomcats and a balancer in front of them; every process is in ``group``, so it is
    stopped at teardown and its log is attached to a failed test's report (conftest hook)."""

    tomcats: dict[str, Tomcat] = field(default_factory=dict)

    def start_tomcats(self, *nodes: str, cluster: bool = False) -> list[Tomcat]:
        ports = ClusterPorts(free_udp_port()) if cluster else None
        started = [Tomcat(self.tmp, node, cluster=ports) for node in nodes]
        if cluster:
            # one after the other: two DeltaManagers that start together each wait for the
            # other's session state and stall until stateTransferTimeout
            for t in started:
                start_all([t], self.group)
        else:
            start_all(started, self.group)
        self.tomcats.update((t.node, t) for t in started)
        return started

    def start_pyjk(
        self,
        *,
        member: dict[str, object] | None = None,
        lb: dict[str, object] | None = None,
        extra: tuple[str, ...] = (),
        mounts: str = MOUNTS,
        worker_list: str = "lb,jkstatus",
    ) -> None:
        workers = workers_properties(list(self.tomcats.values()), member=member, lb=lb, extra=extra)
        workers = workers.replace("worker.list=lb,jkstatus", f"worker.list={worker_list}")
        self.start_balancer(workers, mounts=mounts)
