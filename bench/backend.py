"""The race's backends: one nginx instance serving fixed bodies on three ports.

Why nginx and not a Python backend: the backends share one core with wrk, and they must not be
what limits the proxies. A single nginx worker answers `return 200` and small static files
several times faster than a uvloop+httptools server in Python can, so nginx keeps the load side
out of the way. The price is one more nginx process; the race needs the nginx binary anyway.

Bodies: ``/100`` is exactly 100 bytes, ``/64k`` is exactly 65536 bytes, and no response carries
Set-Cookie. ``X-Backend: nodeN`` names the member that answered, so the harness can check round
robin and stickiness before it measures.

Standalone use (foreground, Ctrl-C stops it)::

    python bench/backend.py --ports 8201,8202,8203
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from race_configs import Member, load_template, members_for, render
from race_procs import Supervisor, wait_http_ready

BODY_100 = ("0123456789" * 10).encode()
BODY_64K = bytes(ord("a") + i % 26 for i in range(65536))
PATHS = {"100": BODY_100, "64k": BODY_64K}  # URL path (without "/") -> exact body


def backend_conf(members: Sequence[Member], *, workdir: Path) -> str:
    server = load_template("backend-server.conf")
    servers = "\n".join(
        render(
            server,
            {"PORT": m.port, "ROUTE": m.route, "DIR": workdir, "BODY100": BODY_100.decode()},
            source="peers/backend-server.conf",
        )
        for m in members
    )
    return render(
        load_template("backend-nginx.conf"),
        {"DIR": workdir, "SERVERS": servers},
        source="peers/backend-nginx.conf",
    )


def write_backend(members: Sequence[Member], workdir: Path) -> Path:
    """Write the config and the static body under workdir; return the config path."""
    # nginx workers drop root privileges (to nobody or www-data) and must still read the body;
    # mkdtemp makes directories 0700.
    workdir.chmod(0o755)
    (workdir / "www").mkdir(parents=True, exist_ok=True)
    (workdir / "backend-tmp").mkdir(parents=True, exist_ok=True)
    (workdir / "www" / "64k").write_bytes(BODY_64K)
    conf = workdir / "backend-nginx.conf"
    conf.write_text(backend_conf(members, workdir=workdir), encoding="utf-8")
    return conf


def nginx_argv(nginx: str, conf: Path, workdir: Path) -> list[str]:
    """nginx in the foreground with every path (prefix, error log, config) under workdir."""
    return [nginx, "-p", str(workdir), "-e", str(workdir / "startup.error.log"), "-c", str(conf)]


def find_nginx() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ports", default="8201,8202,8203", help="comma-separated ports")
    args = parser.parse_args(argv)
    nginx = find_nginx()
    if nginx is None:
        print("backend: nginx not found; install with: apt-get install -y nginx", file=sys.stderr)
        return 2
    members = members_for([int(p) for p in args.ports.split(",")])
    with tempfile.TemporaryDirectory(prefix="pyjk-backend-") as tmp:
        workdir = Path(tmp)
        conf = write_backend(members, workdir)
        sup = Supervisor(taskset=None)
        sup.install_signal_handlers()
        try:
            child = sup.start(
                "backends", nginx_argv(nginx, conf, workdir), cpu=None, log=workdir / "backends.log"
            )
            for m in members:
                wait_http_ready(child, m.host, m.port, "/100", 10.0)
                print(f"backend {m.name}: http://{m.host}:{m.port}/100 and /64k", flush=True)
            child.popen.wait()
        except KeyboardInterrupt:
            pass
        finally:
            sup.stop_all()  # the whole process group: master and worker
    return 0


if __name__ == "__main__":
    sys.exit(main())
