"""`pyjk-cluster scale N --cluster FILE` and `pyjk-cluster status --cluster FILE`.

What `docker-compose up --scale worker=N` does for a compose file, for local pyjk workers:
start or stop worker processes of one cluster until N run. New workers pick their own port
and route (`--listen HOST:0 --route auto`), join the cluster (`--cluster FILE`) and so join
every balancer lb that names the same cluster (`worker.<lb>.cluster`) once they are ready;
the command returns when they are. Stopping is graceful and newest first: SIGTERM (the worker
announces it is leaving, the balancer gives it no new sessions, sticky requests drain), then
the command waits for the process to exit (SIGKILL only past --stop-timeout).

The processes this command started are listed in a state file beside the cluster file
(`.<cluster file name>.workers.json`, one line per worker: pid, route, URL, log file), guarded
by a lock so two scale commands do not race. Workers started by other means (a demo's fixed
nodes) are not counted and never stopped. Logs go to `.<cluster file name>.logs/`.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from .server import DEFAULT_APP

# the worker logs "worker listening route=R url=http://H:P" (text) once it listens
LISTENING = re.compile(r"worker listening route=(\S+) url=(http://[^\s\"]+)")
START_TIMEOUT = 60.0  # s for a new worker to listen and become ready (state transfer included)


@dataclass(frozen=True, slots=True)
class Running:
    pid: int
    route: str
    url: str
    log: str
    started: float


class ScaleError(Exception):
    """The cluster cannot be scaled as asked; says why."""


class Workers:
    """The workers this command started for one cluster file, as its state file lists them."""

    def __init__(self, cluster: Path) -> None:
        self.cluster = cluster.resolve()
        stem = f".{self.cluster.name}"
        self.state = self.cluster.parent / f"{stem}.workers.json"
        self.logs = self.cluster.parent / f"{stem}.logs"

    @contextlib.contextmanager
    def locked(self) -> Iterator[list[Running]]:
        """The live workers (dead ones pruned) under the lock; written back on exit."""
        lock_path = self.state.with_suffix(".lock")
        with open(lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            running = [w for w in self._read() if _is_our_worker(w.pid, self.cluster)]
            try:
                yield running
            finally:
                self._write(running)

    def _read(self) -> list[Running]:
        try:
            lines = self.state.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            with contextlib.suppress(ValueError, TypeError):
                out.append(Running(**json.loads(line)))
        return out

    def _write(self, running: list[Running]) -> None:
        tmp = self.state.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(asdict(w)) + "\n" for w in running), encoding="utf-8")
        tmp.replace(self.state)

    # -- starting and stopping ------------------------------------------------------------
    def start(self, app: str, host: str, extra: list[str]) -> tuple[subprocess.Popen[bytes], Path]:
        self.logs.mkdir(exist_ok=True)
        log_path = self.logs / f"worker-{time.strftime('%Y%m%d-%H%M%S')}-{os.urandom(3).hex()}.log"
        cmd = [
            sys.executable, "-m", "worker", "--route", "auto", "--listen", f"{host}:0",
            "--cluster", str(self.cluster), "--app", app, *extra,
        ]  # fmt: skip
        with open(log_path, "wb") as log:
            # its own session: the worker outlives this command and ignores its terminal's ^C
            proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        return proc, log_path

    def wait_listening(
        self, proc: subprocess.Popen[bytes], log_path: Path, deadline: float
    ) -> Running:
        while time.monotonic() < deadline:
            match = LISTENING.search(log_path.read_text(errors="replace"))
            if match:
                return Running(proc.pid, match[1], match[2], str(log_path), time.time())
            if proc.poll() is not None:
                tail = log_path.read_text(errors="replace")[-2000:]
                raise ScaleError(f"a worker exited with {proc.returncode} at start:\n{tail}")
            time.sleep(0.05)
        proc.kill()
        raise ScaleError(f"a worker did not start listening in time; log: {log_path}")


def _is_our_worker(pid: int, cluster: Path) -> bool:
    """Alive, and still the worker we started (a reused pid would have another command)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True  # no /proc: trust the pid
    return b"worker" in cmdline and str(cluster).encode() in cmdline


def ready(url: str, timeout: float = 1.0) -> bool | None:
    """GET /-/ready: True (200), False (another status), None (no answer)."""
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=timeout) as resp:
            return bool(resp.status == 200)
    except urllib.error.HTTPError:
        return False
    except OSError:
        return None


def _wait_ready(worker: Running, deadline: float) -> None:
    while time.monotonic() < deadline:
        if ready(worker.url):
            return
        if not _is_alive(worker.pid):
            raise ScaleError(f"worker {worker.route} exited before it was ready; log: {worker.log}")
        time.sleep(0.1)
    raise ScaleError(f"worker {worker.route} was not ready in time; log: {worker.log}")


def _is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)  # reap it when it is our child
        if done:
            return False
    return True


def stop(worker: Running, timeout: float) -> bool:
    """SIGTERM, wait up to `timeout` for the exit (drain included); SIGKILL after. True when it
    stopped by itself."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(worker.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _is_alive(worker.pid):
            return True
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(worker.pid, signal.SIGKILL)
    return False


def scale(args: argparse.Namespace) -> int:
    workers = Workers(Path(args.cluster))
    extra = ["--drain", str(args.drain), "--lbfactor", str(args.lbfactor)]
    with workers.locked() as running:
        if args.n > len(running):
            procs = [
                workers.start(args.app, args.host, extra) for _ in range(args.n - len(running))
            ]
            deadline = time.monotonic() + START_TIMEOUT
            started = []
            try:
                for proc, log_path in procs:
                    started.append(workers.wait_listening(proc, log_path, deadline))
                for worker in started:
                    _wait_ready(worker, deadline)
                    print(f"started route={worker.route} pid={worker.pid} {worker.url}", flush=True)
            finally:
                running.extend(started)
                # a start that failed part-way: the processes not yet recorded would run on
                # unseen by later `scale` and `status` calls — stop them
                recorded = {w.pid for w in started}
                for proc, _ in procs:
                    if proc.pid not in recorded and proc.poll() is None:
                        proc.kill()
                        proc.wait(timeout=10)
        stopping = sorted(running, key=lambda w: w.started)[args.n :]
        for worker in reversed(stopping):  # newest first, as compose removes the last ones
            clean = stop(worker, args.stop_timeout)
            running.remove(worker)
            how = "stopped" if clean else "killed (did not stop in time)"
            print(f"{how} route={worker.route} pid={worker.pid}", flush=True)
        print(f"{len(running)} worker(s) running for {workers.cluster}", flush=True)
    return 0


def status(args: argparse.Namespace) -> int:
    workers = Workers(Path(args.cluster))
    with workers.locked() as running:
        print(f"{len(running)} worker(s) running for {workers.cluster}")
        for w in sorted(running, key=lambda w: w.started):
            state = {True: "ready", False: "not-ready", None: "no-answer"}[ready(w.url)]
            print(f"route={w.route} pid={w.pid} url={w.url} state={state} log={w.log}")
    return 0


def _count(text: str) -> int:
    if not text.isdigit() or int(text) > 1000:
        raise argparse.ArgumentTypeError(f"expected a number of workers 0..1000, found {text!r}")
    return int(text)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="pyjk-cluster", description="Scale the local pyjk workers of one cluster."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("scale", help="start or stop workers until N run")
    up.add_argument("n", type=_count, metavar="N")
    status_cmd = sub.add_parser("status", help="list the workers this command started")
    for p in (up, status_cmd):
        p.add_argument("--cluster", required=True, metavar="FILE", help="the cluster.toml")
    up.add_argument("--app", default=DEFAULT_APP, help=f"MODULE:FACTORY (default {DEFAULT_APP})")
    up.add_argument("--host", default="127.0.0.1", help="address to listen on (default loopback)")
    up.add_argument("--lbfactor", default="1", help="weight advertised to balancers (default 1)")
    up.add_argument(
        "--drain", type=float, default=2.0, metavar="SECONDS",
        help="after SIGTERM, how long a stopping worker keeps serving (default 2)",
    )  # fmt: skip
    up.add_argument(
        "--stop-timeout", type=float, default=60.0, metavar="SECONDS",
        help="longest wait for a stopping worker before SIGKILL (default 60)",
    )  # fmt: skip
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not Path(args.cluster).is_file():
        print(f"pyjk-cluster: {args.cluster}: no such cluster file", file=sys.stderr)
        return 2
    try:
        return scale(args) if args.command == "scale" else status(args)
    except ScaleError as exc:
        print(f"pyjk-cluster: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
