"""``pyjk-balancer`` (without --check) starting its process: logging, the event loop, what
this process is (one balancer alone, a supervisor of N data-plane processes, or one of those:
``role.Role``) and the ``Balancer`` wired for that role."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import sys

from balancer.access_log import AccessLog
from balancer.config import ConfigError
from balancer.dataplane.tls import TlsError
from balancer.pair_run import CARRY_ENV
from balancer.role import Role
from balancer.runtime import StartupError
from balancer.server import Balancer
from pyjk.logs import configure_logging

log = logging.getLogger("pyjk.balancer")


def run(args: argparse.Namespace) -> int:
    """``pyjk-balancer`` without --check."""
    configure_logging(args.log_level, args.log_format)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; fall back loudly
        log.warning("uvloop is not installed: running on the default asyncio loop (slower)")
        uvloop = None  # type: ignore[assignment]
    access_format = args.access_log_format or ("json" if args.log_format == "json" else "combined")
    role = Role(args)
    # a supervisor proxies nothing: its data-plane processes open and write the access log
    writes = args.access_log and not role.supervises
    access_log = AccessLog.open(args.access_log, access_format) if writes else None

    async def main() -> int:
        try:
            balancer = Balancer(
                args.workers,
                args.mounts,
                args.listen,
                access_log,
                getattr(args, "tls", None),
                hsts=getattr(args, "hsts", 0),
                https_redirect=getattr(args, "https_redirect", False),
                state=role.state,
                processes=role.table.processes if role.table is not None else None,
                config_texts=role.config_source(),
                csrf=role.csrf(),
                consume_result=role.table.consume if role.table is not None else None,
                dynamic_members=role.dynamic_source(),
                ticket_secret=role.ticket_source(),
            )
        except TlsError as exc:
            log.error("tls error: %s", exc)
            return 1
        except ConfigError as exc:
            for p in exc.problems:
                log.error("config error: %s", p)
            return 1
        except StartupError as exc:
            log.error("cannot start: %s", exc)
            return 1
        # What is loaded by now lives as long as the process: keep it out of the cyclic
        # collector's full passes, which otherwise walk every module and config object each
        # time requests in flight have survived enough young collections.
        gc.collect()
        gc.freeze()
        try:
            return await role.run(balancer)
        except OSError as exc:
            where = " ".join(str(x) for x in args.listen)
            log.error("cannot listen on %s: %s", where, exc.strerror or exc)
            return 1

    code = uvloop.run(main()) if uvloop is not None else asyncio.run(main())
    argv = getattr(args, "restart_argv", None)
    if argv is not None:  # it stepped down: the same process, as a standby (pair_run.py)
        # the closed loop left SIGHUP and SIGUSR1 at their default (the end of the process),
        # and exec resets handled ones to it until the new image handles them (~1 s of
        # imports): a logrotate or a reload then would kill it. Ignored stays ignored across
        # exec; the new image's waiting standby handles both (BalancerPair.wait_turn).
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
        log.warning("balancer=standby restarting as a standby: %s", " ".join(argv))
        for handler in logging.getLogger().handlers:
            handler.flush()
        sys.stdout.flush()
        sys.stderr.flush()
        restart(argv)
    return code


def restart(argv: list[str]) -> None:
    """exec the balancer again with ``argv``; should the exec fail with the lb state copy in
    the environment (too large for the kernel), once more without it: a standby that hears
    the active's next beat rather than no balancer at all."""
    command = [sys.executable, "-m", "balancer", *argv]
    try:
        os.execv(sys.executable, command)
    except OSError as exc:
        if os.environ.pop(CARRY_ENV, None) is None:
            raise
        log.error("balancer=standby restart with the lb state copy failed (%s): again "
                  "without it", exc.strerror or exc)  # fmt: skip
        os.execv(sys.executable, command)
