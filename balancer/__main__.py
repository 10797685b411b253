"""``pyjk-balancer`` (or ``python -m balancer``): check a configuration, or run the balancer.

    pyjk-balancer --check --workers conf/workers.properties \
        [--mounts conf/uriworkermap.properties]
    pyjk-balancer --workers conf/workers.properties --mounts conf/uriworkermap.properties \
        [--listen 127.0.0.1:8080] [--listen https://127.0.0.1:8443 --tls-cert C --tls-key K] \
        [--log-format json] [--access-log PATH] [--cluster conf/cluster.toml [--standby]]

``--check`` is ``haproxy -c``: it validates both files (and the certificates of https
listeners: readable, key matches, valid now, names covered, when each expires), prints a
summary and exits 1 on errors.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from balancer.config import ConfigError, Problem, load_workers, summary
from balancer.dataplane.tls import (
    CLIENT_VERIFY_CHOICES,
    UNKNOWN_SNI_CHOICES,
    TlsError,
    TlsSettings,
    check_lines,
)
from balancer.lb.shm import MAX_PROCESSES
from balancer.mounts import UriMap, load_mounts
from pyjk import __version__
from pyjk.hotpath import describe
from pyjk.logs import LOG_FORMATS
from replication.codec import LISTEN_RE


def processes_count(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= MAX_PROCESSES:
        raise argparse.ArgumentTypeError(f"expected 1..{MAX_PROCESSES}, got {text!r}")
    return int(text)


def parse_dataplane(text: str) -> object:
    from balancer.supervisor import parse_dataplane as parse

    return parse(text)


class Listen(NamedTuple):
    """One ``--listen``: plain ``HOST:PORT`` or ``https://HOST:PORT``."""

    host: str
    port: int
    tls: bool = False

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https://' if self.tls else ''}{host}:{self.port}"


def parse_listen(text: str) -> Listen:
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "http", text
    if scheme not in ("http", "https"):
        raise argparse.ArgumentTypeError(f"expected HOST:PORT or https://HOST:PORT, got {text!r}")
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT or https://HOST:PORT, got {text!r}")
    listen = Listen(host.strip("[]") or "127.0.0.1", int(port), scheme == "https")
    # what a balancer pair's heartbeat carries and its peer accepts (one rule for both: a
    # host the peer refused would make every heartbeat unreadable, a silent split brain)
    if not LISTEN_RE.fullmatch(str(listen)):
        raise argparse.ArgumentTypeError(
            f"{text!r}: the host must be a name (letters, digits, '.', '_', '-'; at most 253), "
            "an IPv4 address or an [IPv6] address (with its %zone)"
        )
    return listen


def tls_settings(args: argparse.Namespace) -> TlsSettings | None:
    """The TLS settings of the command line; None without an https listener. Raises
    ``argparse.ArgumentTypeError`` for options that do not fit together."""
    certs, keys = args.tls_cert or [], args.tls_key or []
    wanted = any(listen.tls for listen in args.listen)
    given = bool(certs or keys or args.tls_dir)
    if not wanted:
        if given or args.https_redirect or args.hsts:
            raise argparse.ArgumentTypeError(
                "--tls-cert/--tls-dir/--hsts/--https-redirect need a --listen https://..."
            )
        return None
    if len(certs) != len(keys):
        raise argparse.ArgumentTypeError(
            f"--tls-cert and --tls-key pair in order: {len(certs)} cert(s), {len(keys)} key(s)"
        )
    if not given:
        raise argparse.ArgumentTypeError(
            "an https listener needs --tls-cert/--tls-key or --tls-dir"
        )
    return TlsSettings(
        pairs=tuple(zip(certs, keys, strict=True)),
        cert_dir=args.tls_dir,
        unknown_sni=args.tls_unknown_sni,
        client_ca=args.tls_client_ca,
        client_verify=args.tls_client_verify,
        handshake_timeout=args.tls_handshake_timeout,
        max_client_hello=args.tls_max_client_hello,
        ticket_rotation=args.tls_session_tickets * 60.0,
    )


def add_tls_arguments(parser: argparse.ArgumentParser) -> None:
    tls = parser.add_argument_group("TLS (for --listen https://HOST:PORT)")
    tls.add_argument(
        "--tls-cert",
        type=Path,
        action="append",
        metavar="FILE",
        help="certificate (PEM, chain after the leaf); repeatable, paired in order with "
        "--tls-key; the first pair is the default certificate",
    )
    tls.add_argument(
        "--tls-key", type=Path, action="append", metavar="FILE", help="private key (PEM)"
    )
    tls.add_argument(
        "--tls-dir",
        type=Path,
        metavar="DIR",
        help="NAME.crt/NAME.key pairs chosen by SNI (default.crt, or the first name, is the "
        "default when no --tls-cert is given)",
    )
    tls.add_argument(
        "--tls-unknown-sni",
        choices=UNKNOWN_SNI_CHOICES,
        default="default",
        help="a server name no certificate covers: serve the default one, or refuse the "
        "handshake (default: default)",
    )
    tls.add_argument(
        "--tls-client-ca",
        type=Path,
        metavar="FILE",
        help="ask clients for a certificate signed by these CAs (off by default); it is "
        "forwarded to members (AJP SSL_CERT, http Client-Cert)",
    )
    tls.add_argument(
        "--tls-client-verify",
        choices=CLIENT_VERIFY_CHOICES,
        default="optional",
        help="with --tls-client-ca: whether a client certificate is optional or required",
    )
    tls.add_argument(
        "--tls-handshake-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="from accept to a finished handshake (default 10)",
    )
    tls.add_argument(
        "--tls-session-tickets",
        type=float,
        default=0,
        metavar="MINUTES",
        help="turn stateless session tickets on, with new ticket keys every MINUTES (the "
        "contexts are rebuilt from the same files); default 0: off, no resumption",
    )
    tls.add_argument(
        "--hsts",
        type=int,
        default=0,
        metavar="SECONDS",
        help="send Strict-Transport-Security: max-age=SECONDS on HTTPS responses (default 0: "
        "off; a member's own header wins)",
    )
    tls.add_argument(
        "--https-redirect",
        action="store_true",
        help="plain listeners answer every request with a redirect to the first https "
        "listener (301, 308 for methods other than GET/HEAD); off by default",
    )
    tls.add_argument(
        "--tls-max-client-hello",
        type=int,
        default=16 * 1024,
        metavar="BYTES",
        help="a larger ClientHello is refused unread (default 16384)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pyjk-balancer",
        description="pyjk balancer: a mod_jk-compatible asyncio reverse proxy.",
    )
    parser.add_argument(
        "--version", action="version", version=f"pyjk-balancer {__version__}, {describe()}"
    )
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
        action="append",
        metavar="[https://]HOST:PORT",
        help="address to accept clients on, repeatable; https:// for TLS (default 127.0.0.1:8080)",
    )
    add_tls_arguments(parser)
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
        "--processes",
        type=processes_count,
        default=None,
        metavar="N",
        help="data-plane processes sharing one lb state, under a supervisor that runs health "
        "checks, maintenance and reloads (default: worker.processes, else the CPUs this "
        "process may run on; 1 = one process, no supervisor)",
    )
    parser.add_argument(
        "--accept",
        choices=("reuseport", "inherit"),
        default="reuseport",
        help="with --processes N > 1: one SO_REUSEPORT socket per process, the kernel spreads "
        "connections (default), or every process accepts on the supervisor's inherited "
        "sockets (one queue: nothing queued is lost when a process dies, but the spread of "
        "long connections is uneven; docs/benchmarks.md)",
    )
    parser.add_argument("--dataplane", type=parse_dataplane, help=argparse.SUPPRESS)
    # a balancer that stepped down (two actives: docs/operations.md) restarts itself as a
    # standby with how many times it did so far
    parser.add_argument("--step-downs", type=int, default=0, help=argparse.SUPPRESS)
    # ... and the active fell silent during its drain: it takes over without waiting drop_time
    parser.add_argument("--peer-silent", action="store_true", help=argparse.SUPPRESS)
    pair = parser.add_argument_group("active/standby pair (docs/operations.md)")
    pair.add_argument(
        "--cluster",
        type=Path,
        metavar="FILE",
        help="cluster.toml of the workers' cluster: heartbeat on its sealed multicast channel as "
        "a balancer (the active one carries its lb state to the standby)",
    )
    pair.add_argument(
        "--standby",
        action="store_true",
        help="with --cluster: bind nothing and serve nothing while the active balancer is "
        "heard; take over (bind, serve, with its lb state) once it falls silent for the "
        "cluster's drop_time",
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


def check_tls(settings: TlsSettings) -> int:
    """``--check`` for certificates: each pair's names and expiry, or the error."""
    try:
        lines = check_lines(settings)
    except TlsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for line in lines:
        print(line)
    return 0


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
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # a supervisor's children get it
    args.listen = args.listen or [Listen("127.0.0.1", 8080)]
    try:
        args.tls = tls_settings(args)
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    if args.standby and args.cluster is None:
        parser.error("--standby needs --cluster FILE (the active's heartbeats arrive there)")
    if args.check:
        status = check(args.workers, args.mounts)
        if args.tls is not None:
            status = check_tls(args.tls) or status
        return status
    from balancer.launch import run  # imported late: --check needs no event loop machinery

    return run(args)


if __name__ == "__main__":
    sys.exit(main())
