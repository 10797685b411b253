"""The balancer's run with ``--cluster FILE`` (``--standby``): ``run_paired`` makes the pair
(balancer/standby.py), waits for the turn when standby — warm with a supervisor (``Warm``) —
serves, and, when this active was the later of two and stepped down, leaves the restart as a
standby to launch.py (``standby_argv``): unless SIGTERM/SIGINT came meanwhile (then it exits
0), and at once, cutting its drain short, when the active fell silent during the drain."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

from balancer.config import ConfigError
from balancer.standby import BalancerPair, PairError, view_part
from replication.keyfile import KeyFileError

if TYPE_CHECKING:
    from balancer.server import Balancer

log = logging.getLogger("pyjk.balancer")

# the lb state copy a balancer restarting after a step-down hands its next image (JSON: the
# entries of the active it stepped down for, as its heartbeats carry them, and when)
CARRY_ENV = "PYJK_PAIR_LB_STATE"
# the kernel refuses one environment string over 128 KiB (execv: "Argument list too long"):
# a larger copy is left behind (the next image hears the active's next beat instead)
CARRY_MAX = 100_000


class Warm(Protocol):
    """A supervisor's side of a warm standby (balancer/supervisor.py): its data-plane processes
    start while it waits, loaded and bound to the shared lb state, accepting nothing; the
    takeover then only binds and lets them accept."""

    def warm_up(self) -> None: ...

    def waiting_handlers(self) -> dict[signal.Signals, Callable[[], object]]: ...

    async def stop(self) -> None: ...

    def request_stop(self) -> None: ...

    async def end_children(self) -> None: ...


def standby_argv(argv: Sequence[str], step_downs: int, *, peer_silent: bool = False) -> list[str]:
    """The command line of a balancer that stepped down, started again as a standby: its own
    flags, ``--standby`` and how often it stepped down (kept for ``/metrics``); with
    ``peer_silent`` (the active fell silent during its drain) ``--peer-silent``: it takes
    over at once instead of waiting drop_time for an active it knows is gone."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--step-downs":
            skip = True
        elif not arg.startswith("--step-downs=") and arg != "--peer-silent":
            out.append(arg)
    if "--standby" not in out:
        out.append("--standby")
    return [*out, "--step-downs", str(step_downs), *(("--peer-silent",) if peer_silent else ())]


async def run_paired(
    args: argparse.Namespace,
    balancer: Balancer,
    publish: Callable[[dict[str, object]], None] | None,
    serve: Callable[[], Awaitable[int]],
    warm: Warm | None = None,
) -> int:
    """The balancer's run with ``--cluster`` (``--standby``): heartbeat, wait for the turn
    when standby, then ``serve`` as usual. ``publish``: where a supervisor writes the view
    for its data-plane processes (None: one process, the status page reads it here).
    ``warm``: a supervisor, whose processes start before the turn (a warm standby)."""
    try:
        pair = BalancerPair(
            args.cluster, standby=args.standby, listen=[str(x) for x in args.listen],
            engines=lambda: balancer.runtime.engines, step_downs=getattr(args, "step_downs", 0),
            peer_silent=getattr(args, "peer_silent", False),
        )  # fmt: skip
    except (ConfigError, KeyFileError, PairError, OSError) as exc:
        log.error("--cluster %s: %s", args.cluster, exc)
        return 1
    carried = os.environ.pop(CARRY_ENV, None)  # not for the data-plane processes
    if carried is not None:
        log.info("balancer=standby lb state carried over the restart: %d entries",
                 pair.carry_in(carried))  # fmt: skip
    if publish is not None:
        pair.on_view = lambda view: publish(view_part(view))
    else:
        balancer.status.pair = pair.view
    # an active may hear an older one from its first heartbeat on, before it serves
    pair.on_step_down = warm.request_stop if warm is not None else balancer.stop
    # SIGTERM/SIGINT while serving or draining: a stop for good, never a restart
    balancer.on_term = pair.term
    cut = asyncio.Event()  # the active fell silent while this one drained its step-down
    pair.on_drain_takeover = cut.set
    try:
        await pair.start()
    except OSError as exc:
        log.error("--cluster %s: cannot join the group: %s", args.cluster, exc)
        return 1
    try:
        if args.standby:
            # dynamic lbs' members join while it waits: the cluster tells the standby itself
            balancer.dynamic.sync(balancer.runtime.workers, balancer.runtime.engines)
            handlers: Mapping[signal.Signals, Callable[[], object]] = {
                signal.SIGHUP: lambda: balancer.reload_all("SIGHUP"),
                signal.SIGUSR1: balancer.reopen_access_log,
            }
            if warm is not None:
                warm.warm_up()
                handlers = warm.waiting_handlers()
            if not await pair.wait_turn(balancer.listens, handlers):
                if warm is not None:
                    await warm.stop()
                else:
                    await balancer.dynamic.stop()
                log.info("stopped (standby)")
                return 0
        balancer.on_stopping = pair.stopping
        code = 0 if pair.state.stepping_down else await _serve_unless_cut(serve, cut, warm)
        if pair.state.stepping_down and not pair.stop_requested:
            # it closed its listeners and drained (as a standby meanwhile): launch.py starts
            # it again (the same pid) as a standby, whose processes wait warm
            args.restart_argv = standby_argv(args.argv, pair.state.step_downs,
                                             peer_silent=cut.is_set())  # fmt: skip
            # the active's lb state as known here: the next image may take over before it
            # hears the active again (or never does: it fell silent)
            carry_out(pair)
        return code
    except PairError as exc:
        log.error("balancer=standby cannot serve: %s", exc)
        return 1
    finally:
        await pair.stop()


def carry_out(pair: BalancerPair) -> None:
    """Leave the copy of the lb state of the active this one stepped down for (no other's)
    in ``CARRY_ENV`` for the next image (``BalancerPair.carry_in``), unless over
    ``CARRY_MAX``."""
    lbs = pair.copy.to_wire(pair.monotonic(), origin=pair.state.stepped_for)
    text = json.dumps({"at": pair.clock(), "lbs": lbs}, separators=(",", ":"))
    if len(text) > CARRY_MAX:
        log.warning("balancer=standby lb state not carried over the restart: %d bytes, over "
                    "%d (the active's next heartbeat brings it)", len(text), CARRY_MAX)  # fmt: skip
        os.environ.pop(CARRY_ENV, None)
        return
    os.environ[CARRY_ENV] = text


async def _serve_unless_cut(
    serve: Callable[[], Awaitable[int]], cut: asyncio.Event, warm: Warm | None
) -> int:
    """``serve`` — unless, during a step-down's drain, the active falls silent (``cut``):
    then the drain ends at once (its requests are cut; its processes ended and reaped) and
    the restart takes over without waiting drop_time again. A balancer for the port now
    matters more than the requests of a balancer that was stepping down."""
    serving = asyncio.ensure_future(serve())
    cutting = asyncio.create_task(cut.wait(), name="drain-cut")
    try:
        await asyncio.wait((serving, cutting), return_when=asyncio.FIRST_COMPLETED)
    finally:
        cutting.cancel()
    if serving.done():
        return serving.result()
    log.warning("balancer=standby the active fell silent during the step-down's drain: "
                "the drain ends now, restarting to take over")  # fmt: skip
    serving.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await serving
    if warm is not None:
        await warm.end_children()
    return 0
