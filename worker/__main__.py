"""`python -m worker --route node1 --listen 127.0.0.1:8101 [--app pkg.module:factory] ...`

Add `--cluster conf/cluster.toml` to join a replication cluster (docs/cluster.md).
"""

from __future__ import annotations

import argparse
import logging
import sys

import uvloop

from .failover import check_group
from .server import DEFAULT_APP, WorkerOptions, WorkerSetupError, serve
from .session_ids import check_route


def _listen(text: str) -> tuple[str, int]:
    host, colon, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")  # [::1]:8101
    if not colon or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, found {text!r}")
    return host, int(port)


def _route(text: str) -> str:
    try:
        return check_route(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


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


def parse_args(argv: list[str] | None = None) -> WorkerOptions:
    parser = argparse.ArgumentParser(
        prog="python -m worker", description="Run an aiohttp app as a pyjk worker node."
    )
    parser.add_argument(
        "--route",
        required=True,
        type=_route,
        help="this node's session route (the balancer member's route)",
    )
    parser.add_argument(
        "--listen",
        default="127.0.0.1:8101",
        type=_listen,
        help="HOST:PORT to listen on (default 127.0.0.1:8101)",
    )
    parser.add_argument(
        "--app",
        default=DEFAULT_APP,
        help=f"app factory 'package.module:callable' (default {DEFAULT_APP})",
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
        drain=args.drain, cluster=args.cluster, failover=args.failover,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
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
