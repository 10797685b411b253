"""BalancerPair (balancer/standby.py) in-process on real loopback multicast: the standby
applies the active's lb state as it arrives and takes over when the active goes silent; what
cannot be a pair is refused with a clear error."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from balancer.__main__ import main
from balancer.config.model import Activation
from balancer.lb.engine import LbEngine
from balancer.lb.member import State
from balancer.pair import ACTIVE, STANDBY
from balancer.standby import BalancerPair, PairError
from replication import codec
from replication.codec import BalancerBeat
from tests.support.procs import free_port, until
from tests.unit.test_lb_driver import engine


def cluster_file(tmp: Path, multicast: bool = True) -> Path:
    path = tmp / "cluster.toml"
    path.write_text(
        f'name = "u-{uuid.uuid4().hex[:10]}"\n[membership]\nmulticast = {str(multicast).lower()}\n'
        f"port = {random.randint(20000, 60000)}\nfrequency = 50\ndrop_time = 400\n"
    )
    return path


GOOD = {"a": "DIS", "s": "OK", "f": 1, "d": 0, "v": 0, "e1": None, "e2": None, "r": "",
        "h": False, "ss": None}  # fmt: skip


def deliver(active: BalancerPair, standby: BalancerPair, listen: tuple[str, ...],
            lbs: dict[str, dict[str, object]]) -> None:  # fmt: skip
    """One sealed heartbeat of ``active`` (saying ``listen``, host 127.0.0.1), as ``standby``
    reads it off the group."""
    beat = BalancerBeat(standby.config.name, active.id, ACTIVE, active.started, "127.0.0.1",
                        listen, 1, 1, lbs)  # fmt: skip
    standby._datagram(active.sealer.seal(codec.encode(beat), time.time()))


@contextlib.contextmanager
def beating(
    tmp_path: Path, active_listen: str, standby_listen: str
) -> Iterator[tuple[BalancerPair, BalancerPair, LbEngine]]:
    """An active and a standby (its engine: lb of n1, n2) of one cluster, never started: the
    test delivers the beats (``deliver``)."""
    config = cluster_file(tmp_path)
    standby_lb = engine("n1", "n2")
    active = BalancerPair(config, standby=False, listen=[active_listen], engines=dict)
    standby = BalancerPair(config, standby=True, listen=[standby_listen],
                           engines=lambda: {"lb": standby_lb})  # fmt: skip
    try:
        yield active, standby, standby_lb
    finally:
        active.mcast.close()
        standby.mcast.close()


async def test_the_standby_follows_the_active_and_takes_over_when_it_falls_silent(tmp_path):
    config = cluster_file(tmp_path)  # sealed: the key file is created beside it
    active_lb, standby_lb = engine("n1", "n2"), engine("n1", "n2")
    n2 = active_lb.member("n2")
    n2.activation, n2.state, n2.last_error_reason = Activation.STOPPED, State.ERR, "refused"
    listen = [("127.0.0.1", free_port(), False)]
    active = BalancerPair(config, standby=False, listen=["a:1"], engines=lambda: {"lb": active_lb})
    standby = BalancerPair(config, standby=True, listen=["a:1"],
                           engines=lambda: {"lb": standby_lb})  # fmt: skip
    await active.start()
    await standby.start()
    try:
        turn = asyncio.create_task(standby.wait_turn(listen))
        await until(lambda: standby_lb.member("n2").activation is Activation.STOPPED, 5,
                    what="the active's state on the standby")  # fmt: skip
        assert standby_lb.member("n2").state is State.ERR
        assert standby_lb.member("n2").last_error_reason == "refused"
        assert not turn.done() and standby.view().role == STANDBY
        await until(lambda: any(p.role == STANDBY for p in active.view().peers), 5,
                    what="the standby on the active's view")  # fmt: skip

        assert active._task is not None
        active._task.cancel()  # the active dies: no shutdown heartbeat
        active.mcast.close()
        assert await asyncio.wait_for(turn, 5) is True
        view = standby.view()
        assert view.role == ACTIVE and view.takeovers == 1
        assert standby.counters["drop_auth"] == 0 and standby.counters["heartbeats_in"] > 0
    finally:
        await standby.stop()
        active.mcast.close()


def test_a_cluster_without_multicast_cannot_carry_a_pair(tmp_path):
    with pytest.raises(PairError, match="multicast"):
        BalancerPair(cluster_file(tmp_path, multicast=False), standby=True, listen=[],
                     engines=dict)  # fmt: skip


def test_a_standby_without_the_cluster_key_is_refused(tmp_path):
    with pytest.raises(PairError, match=r"cluster\.key: no cluster key; a standby needs"):
        BalancerPair(cluster_file(tmp_path), standby=True, listen=[], engines=dict)
    assert not (tmp_path / "cluster.key").exists()  # none made: it could open nothing


def test_standby_without_cluster_is_a_usage_error(tmp_path, capsys):
    workers = tmp_path / "workers.properties"
    workers.write_text("worker.list=n1\nworker.n1.type=http\nworker.n1.host=127.0.0.1\n")
    with pytest.raises(SystemExit) as exc:
        main(["--workers", str(workers), "--standby"])
    assert exc.value.code == 2 and "--standby needs --cluster" in capsys.readouterr().err


async def test_a_standby_waits_on_past_bind_retry_while_a_hung_active_holds_the_port(tmp_path):
    # before: PairError after 60 s, the standby exited and no balancer was left
    import socket

    from balancer.standby import BIND_RETRY

    config = cluster_file(tmp_path)
    BalancerPair(config, standby=False, listen=[], engines=dict)  # makes the cluster key
    clock = [0.0]

    def monotonic() -> float:
        clock[0] += BIND_RETRY / 4  # each look at the clock: a quarter of BIND_RETRY
        return clock[0]

    standby = BalancerPair(config, standby=True, listen=[], engines=dict, monotonic=monotonic)
    held = socket.create_server(("127.0.0.1", 0))
    port = held.getsockname()[1]
    standby.state.taking_over = True
    stopping = asyncio.Event()
    task = asyncio.create_task(standby._ports_free([("127.0.0.1", port, False)], stopping))
    try:
        await until(lambda: standby.counters["ports_held_too_long"] >= 2, 5,
                    what="errors while the port stays held")  # fmt: skip
        assert not task.done()
        held.close()
        assert await asyncio.wait_for(task, 5) is True
    finally:
        held.close()
        stopping.set()
        standby.mcast.close()


async def test_a_beat_with_an_entry_the_standby_refuses_still_counts_as_the_active_heard(
    tmp_path,
):
    # before: one bad entry (an active of a newer version, a distance over the standby's
    # bound) dropped the whole beat: the standby took over while the active served
    with beating(tmp_path, "a:1", "a:1") as (active, standby, standby_lb):
        lbs = {"lb": {"n1": {**GOOD, "d": 2**40}, "n2": GOOD, "": {"retries": 2}}}
        deliver(active, standby, ("a:1",), lbs)
        assert standby.counters["heartbeats_in"] == 1
        assert standby.counters["drop_bad_state"] == 1
        assert [p.role for p in standby.view().peers] == [ACTIVE]
        assert standby_lb.member("n2").activation is Activation.DISABLED  # the rest applied
        assert standby_lb.member("n1").activation is Activation.ACTIVE
        assert standby_lb.settings.retries == 2


def test_a_standby_copies_no_lb_state_from_an_active_of_other_sockets(tmp_path):
    # before: entries are keyed by lb/member only: the standby of :1 took (and applied) the
    # state of the active of :2, and applied it again when it took over :1
    with beating(tmp_path, "127.0.0.1:2", "127.0.0.1:1") as (other, standby, standby_lb):
        for listen, taken in ((("127.0.0.1:2",), False), (("0.0.0.0:1",), True)):
            deliver(other, standby, listen, {"lb": {"n2": GOOD}})
            assert bool(standby.copy.entries) is taken
            applied = standby_lb.member("n2").activation is Activation.DISABLED
            assert applied is taken
        assert standby.counters["heartbeats_in"] == 2


def test_the_copy_carried_over_the_restart_is_the_stepped_for_actives_compact_and_bounded(
    tmp_path, monkeypatch
):
    # before: every active's entries, dumped with ", " separators and no bound: 160,632
    # bytes made the exec fail ("Argument list too long") and the balancer exit 1
    import json

    from balancer import pair_run
    from balancer.lb.handover import parse_part

    config = cluster_file(tmp_path)
    BalancerPair(config, standby=False, listen=[], engines=dict).mcast.close()  # the key
    pair = BalancerPair(config, standby=True, listen=["127.0.0.1:1"], engines=dict)
    try:
        mine, _ = parse_part({"lb": {"n1": GOOD}})
        other, _ = parse_part({"lb2": {"n1": GOOD}})
        now = pair.monotonic()
        pair.copy.take(mine, now - 0.2, origin="a" * 32)
        pair.copy.take(other, now - 0.2, origin="c" * 32)
        pair.state.stepped_for = "a" * 32
        monkeypatch.delenv(pair_run.CARRY_ENV, raising=False)
        pair_run.carry_out(pair)
        text = os.environ[pair_run.CARRY_ENV]
        assert ", " not in text and ": " not in text
        assert list(json.loads(text)["lbs"]) == ["lb"]
        pair.clock = lambda: json.loads(text)["at"] + 0.3  # the exec took 0.3 s
        again = BalancerPair(config, standby=True, listen=["127.0.0.1:1"], engines=dict,
                             clock=pair.clock)  # fmt: skip
        assert again.carry_in(text) == 1
        [(_, at)] = again.copy.entries.values()
        assert again.monotonic() - at == pytest.approx(0.3, abs=0.1)  # aged by the exec
        again.mcast.close()
        monkeypatch.setattr(pair_run, "CARRY_MAX", len(text) - 1)
        pair_run.carry_out(pair)
        assert pair_run.CARRY_ENV not in os.environ  # over the bound: left behind
    finally:
        pair.mcast.close()


def test_a_restart_the_kernel_refuses_for_the_copy_is_made_again_without_it(monkeypatch):
    import errno

    from balancer import launch
    from balancer.pair_run import CARRY_ENV

    calls: list[bool] = []

    def execv(path: str, argv: list[str]) -> None:
        calls.append(CARRY_ENV in os.environ)
        if CARRY_ENV in os.environ:
            raise OSError(errno.E2BIG, "Argument list too long")

    monkeypatch.setattr(launch.os, "execv", execv)
    monkeypatch.setenv(CARRY_ENV, "{}")
    launch.restart(["--standby"])
    assert calls == [True, False]
