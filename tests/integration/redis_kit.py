"""Real redis-server processes for the Redis store tests: one server, or a Redis Cluster of
3 masters and 3 replicas made by `redis-cli --cluster create`. Loopback ports only; every
process is stopped at teardown (ProcGroup), whatever the test did.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.procs import Proc, ProcGroup, free_port, port_open, wait_for

REDIS_SERVER = shutil.which("redis-server")
REDIS_CLI = shutil.which("redis-cli")

needs_redis = pytest.mark.skipif(
    REDIS_SERVER is None or REDIS_CLI is None,
    reason="redis-server not installed (scripts/test.sh installs Debian's redis-server)",
)


def cli(port: int, *args: str, timeout: float = 10.0) -> str:
    assert REDIS_CLI is not None
    done = subprocess.run(
        [REDIS_CLI, "-h", "127.0.0.1", "-p", str(port), *args],
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    return done.stdout + done.stderr


@dataclass
class RedisServer:
    """One redis-server; `restart()` keeps its port, directory and (AOF) data."""

    group: ProcGroup
    dir: Path
    port: int
    extra: tuple[str, ...] = ()
    proc: Proc | None = None

    def start(self) -> RedisServer:
        assert REDIS_SERVER is not None
        self.dir.mkdir(parents=True, exist_ok=True)
        args = [
            REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
            "--save", "", "--appendonly", "yes", "--appendfsync", "always",
            "--daemonize", "no", *self.extra,
        ]  # fmt: skip
        self.proc = Proc(args, self.dir / f"redis-{self.port}.log")
        self.group.procs.append(self.proc)
        auth = (
            ["-a", self.extra[self.extra.index("--requirepass") + 1], "--no-auth-warning"]
            if ("--requirepass" in self.extra)
            else []
        )
        wait_for(lambda: "PONG" in cli(self.port, *auth, "ping"), 15, what=f"redis on {self.port}")
        return self

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.stop()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.signal(signal.SIGKILL)
        self.proc.wait(10)

    def restart(self) -> RedisServer:
        wait_for(lambda: not port_open(self.port), 10, what=f"redis {self.port} closed")
        return self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"


@dataclass
class RedisClusterKit:
    """Three masters and three replicas on loopback; node timeout 1 s for quick failovers."""

    group: ProcGroup
    dir: Path
    servers: list[RedisServer] = field(default_factory=list)

    def start(self) -> RedisClusterKit:
        for i in range(6):
            port = free_port()
            # the bus port is not port + 10000 (a free port may be above 55535)
            extra = (
                "--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf",
                "--cluster-node-timeout", "1000", "--cluster-port", str(free_port()),
            )  # fmt: skip
            self.servers.append(RedisServer(self.group, self.dir / f"n{i}", port, extra).start())
        out = cli(
            self.servers[0].port, "--cluster", "create",
            *(f"127.0.0.1:{s.port}" for s in self.servers),
            "--cluster-replicas", "1", "--cluster-yes", timeout=60,
        )  # fmt: skip
        assert "All 16384 slots covered" in out, out
        for s in self.servers:
            wait_for(lambda s=s: "cluster_state:ok" in cli(s.port, "cluster", "info"), 30,
                     what=f"cluster state ok on {s.port}")  # fmt: skip
        # every replica synced with its master: a WAIT 1 before that waits in vain
        wait_for(lambda: sum("master_link_status:up" in cli(s.port, "info", "replication")
                             for s in self.servers) == 3, 30, what="replicas in sync")  # fmt: skip
        return self

    @property
    def nodes(self) -> list[str]:
        return [f"127.0.0.1:{s.port}" for s in self.servers]

    def master_of(self, key: str) -> RedisServer:
        """The live master serving `key`'s slot, as a live node sees the cluster."""
        asked = next(s for s in self.servers if s.proc is not None and s.proc.alive())
        slot = int(cli(asked.port, "cluster", "keyslot", key).strip())
        for line in cli(asked.port, "cluster", "nodes").splitlines():
            parts = line.split()
            if "master" not in parts[2] or "fail" in parts[2]:
                continue
            for span in parts[8:]:
                low, _, high = span.partition("-")
                if low.isdigit() and int(low) <= slot <= int(high or low):
                    port = int(parts[1].split(":")[1].split("@")[0])
                    return next(s for s in self.servers if s.port == port)
        raise AssertionError(f"no master serves slot {slot}")


def redis_server(group: ProcGroup, tmp: Path) -> RedisServer:
    return RedisServer(group, tmp / "redis", free_port()).start()
