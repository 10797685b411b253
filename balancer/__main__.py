"""``pyjk-balancer`` (or ``python -m balancer``): check a configuration, or run the balancer.

    pyjk-balancer --check --workers conf/workers.properties \
        [--mounts conf/uriworkermap.properties]
    pyjk-balancer --workers conf/workers.properties --mounts conf/uriworkermap.properties \
        [--listen 127.0.0.1:8080] [--log-format json] [--access-log PATH]

``--check`` is ``haproxy -c``: it validates both files, prints a summary and exits 1 on errors.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from balancer.config import ConfigError, Problem, load_workers, summary
from balancer.mounts import UriMap, load_mounts
from pyjk import __version__
from pyjk.logs import LOG_FORMATS


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return (host.strip("[]") or "127.0.0.1"), int(port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pyjk-balancer",
        description="pyjk balancer: a mod_jk-compatible asyncio reverse proxy.",
    )
    parser.add_argument("--version", action="version", version=f"pyjk-balancer {__version__}")
    parser.add_argument(
        "--workers", required=True, type=Path, help="workers.properties (mod_jk format)"
    )
    parser.add_argument(
        "--mounts", type=Path, help="uriworkermap.properties (mod_jk format); optional"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="validate the files, print a summary, exit 1 on errors (like haproxy -c)",
    )
    parser.add_argument(
        "--listen",
        type=parse_listen,
        default=("127.0.0.1", 8080),
        metavar="HOST:PORT",
        help="address to accept clients on (default 127.0.0.1:8080)",
    )
    parser.add_argument(
        "--access-log",
        metavar="PATH",
        help="write an access log to PATH ('-' = stdout); off by default. SIGUSR1 reopens it "
        "(logrotate's postrotate)",
    )
    parser.add_argument(
        "--access-log-format",
        choices=["combined", "json"],
        help="combined (Apache's, plus pyjk's fields) or json (the same fields plus timings); "
        "default: json with --log-format json, else combined",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="log level for the balancer's own log on stderr (default info)",
    )
    parser.add_argument(
        "--log-format",
        default="text",
        choices=LOG_FORMATS,
        help="the balancer's own log on stderr: text (key=value) or json, one object per line; "
        "timestamps in UTC with the offset (default text)",
    )
    return parser


def _print_problems(label: str, problems: Sequence[Problem]) -> None:
    for problem in problems:
        print(f"{label}: {problem}", file=sys.stderr)


def check(workers_path: Path, mounts_path: Path | None) -> int:
    """Validate both files; print a summary to stdout and problems to stderr."""
    try:
        workers, warnings = load_workers(workers_path, os.environ)
    except ConfigError as exc:
        _print_problems("error", exc.problems)
        print(f"{workers_path}: {len(exc.problems)} error(s)", file=sys.stderr)
        return 1
    _print_problems("warning", warnings)
    uri_map: UriMap | None = None
    if mounts_path is not None:
        try:
            uri_map, mount_warnings = load_mounts(mounts_path, workers, environ=os.environ)
        except ConfigError as exc:
            _print_problems("error", exc.problems)
            print(f"{mounts_path}: {len(exc.problems)} error(s)", file=sys.stderr)
            return 1
        _print_problems("warning", mount_warnings)
    print(summary(workers))
    if uri_map is not None:
        enabled = [r for r in uri_map.rules if r.enabled]
        disabled = len(uri_map.rules) - len(enabled)
        print(f"{mounts_path}: {len(enabled)} mount rule(s) enabled, {disabled} disabled")
        for rule in enabled:
            print(f"  {rule}")
    print("configuration OK")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.check:
        return check(args.workers, args.mounts)
    from balancer.server import run  # imported late: --check needs no event loop machinery

    return run(args)


if __name__ == "__main__":
    sys.exit(main())
