"""`pyjk-worker --route node1 --listen 127.0.0.1:8101 [--app pkg.module:factory] ...`

(`python -m worker` is the same command.) Add `--cluster conf/cluster.toml` to join a
replication cluster (docs/cluster.md).
"""

from __future__ import annotations

import argparse
import os
import sys

import uvloop

from pyjk import __version__
from pyjk.logs import LOG_FORMATS, configure_logging

from .failover import check_group
from .server import DEFAULT_APP, WorkerOptions, WorkerSetupError, serve
from .session_ids import AUTO_ROUTE, auto_route, check_route
from .sessions import DEFAULT_MAX_ACTIVE_SESSIONS


def _listen(text: str) -> tuple[str, int]:
    host, colon, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")  # [::1]:8101
    if not colon or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, found {text!r}")
    return host, int(port)


def _route(text: str) -> str:
    if text == AUTO_ROUTE:
        return auto_route()
    try:
        return check_route(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _lbfactor(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 100_000:
        raise argparse.ArgumentTypeError(f"expected a whole number 1..100000, found {text!r}")
    return int(text)


def _group(text: str) -> str:
    try:
        return check_group(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, found {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"expected finite seconds, found {text!r}")
    return value


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, found {text!r}")
    return int(text)


def parse_args(argv: list[str] | None = None) -> WorkerOptions:
    parser = argparse.ArgumentParser(
        prog="pyjk-worker", description="Run an aiohttp app as a pyjk worker node."
    )
    parser.add_argument("--version", action="version", version=f"pyjk-worker {__version__}")
    parser.add_argument(
        "--route",
        required=True,
        type=_route,
        help="this node's session route (the balancer member's route); 'auto' picks a unique one",
    )
    parser.add_argument(
        "--listen",
        default="127.0.0.1:8101",
        type=_listen,
        help="HOST:PORT to listen on (default 127.0.0.1:8101); port 0 picks a free one, "
        "advertised to the cluster",
    )
    parser.add_argument(
        "--lbfactor",
        type=_lbfactor,
        default=1,
        metavar="N",
        help="weight advertised to balancers with a dynamic lb (1..100000, default 1)",
    )
    parser.add_argument(
        "--app",
        default=DEFAULT_APP,
        help=f"app factory 'package.module:callable', imported from the current directory "
        f"first, as python -m does (default {DEFAULT_APP})",
    )
    parser.add_argument("--cookie-name", default="JSESSIONID", help="session cookie name")
    parser.add_argument(
        "--max-inactive",
        type=_seconds,
        default=1800.0,
        metavar="SECONDS",
        help="default session idle timeout; <= 0 never expires (default 1800)",
    )
    parser.add_argument(
        "--max-active-sessions",
        type=_positive,
        default=DEFAULT_MAX_ACTIVE_SESSIONS,
        metavar="N",
        help="sessions this node holds at most, replicas included; past it new visitors get "
        f"503 (default {DEFAULT_MAX_ACTIVE_SESSIONS}; sizing: docs/cluster.md)",
    )
    parser.add_argument(
        "--shutdown-timeout",
        type=_seconds,
        default=30.0,
        metavar="SECONDS",
        help="how long in-flight requests may run after SIGTERM (default 30)",
    )
    parser.add_argument(
        "--drain",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="answer /-/ready with 503 this long before closing (default 0)",
    )
    parser.add_argument(
        "--cluster",
        metavar="CLUSTER_TOML",
        help="join the cluster this file describes and replicate sessions (docs/cluster.md)",
    )
    parser.add_argument(
        "--log-format",
        default="text",
        choices=LOG_FORMATS,
        help="log on stderr as text (key=value) or json, one object per line; timestamps in "
        "UTC with the offset (default text)",
    )
    parser.add_argument(
        "--failover",
        metavar="GROUP",
        type=_group,
        help="failover mode: of the nodes in GROUP only the elected master serves; the others "
        "stay dormant (/-/ready 503) with replicas, and one is promoted when it dies",
    )
    args = parser.parse_args(argv)
    host, port = args.listen
    return WorkerOptions(
        route=args.route, host=host, port=port, app=args.app, cookie_name=args.cookie_name,
        max_inactive=args.max_inactive, shutdown_timeout=args.shutdown_timeout,
        drain=args.drain, cluster=args.cluster, lbfactor=args.lbfactor,
        max_active_sessions=args.max_active_sessions, log_format=args.log_format,
        failover=args.failover,
    )  # fmt: skip


def import_from_cwd() -> None:
    """``python -m worker`` puts the current directory first on sys.path, the installed
    ``pyjk-worker`` script puts its own bin directory there instead: add the current directory
    so ``--app myapp:make_app`` finds ``myapp.py`` either way (uvicorn's --app-dir default)."""
    cwd = os.getcwd()
    if "" not in sys.path and cwd not in sys.path:
        sys.path.insert(0, cwd)


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    configure_logging("info", "json" if options.log_format == "json" else "text")
    import_from_cwd()
    try:
        return uvloop.run(serve(options))
    except WorkerSetupError as exc:
        print(f"pyjk worker: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. the port is taken
        print(f"pyjk worker: cannot listen on {options.host}:{options.port}: {exc}",
              file=sys.stderr)  # fmt: skip
        return 1


if __name__ == "__main__":
    sys.exit(main())
