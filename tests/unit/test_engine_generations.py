"""A data-plane process's row says which older generation exchanges in flight still plan
with (balancer/dataplane_process.py ``EngineGenerations``)."""

from __future__ import annotations

from balancer.dataplane_process import EngineGenerations


class Engine:
    pass


def test_an_engine_in_flight_from_an_older_generation_holds_it_until_it_ends():
    old, kept, new = Engine(), Engine(), Engine()
    gens = EngineGenerations()
    gens.serve([old, kept], 1)
    gens.serve([kept, new], 2)  # a reload: ``old`` is gone, ``kept`` is the same object
    assert gens.holds([kept, new], [old, kept]) == 1
    assert gens.holds([kept, new], [kept, new]) == 0
    # forgotten once neither current nor in flight
    assert gens.holds([kept, new], [old]) == 1  # never recorded now: as old as can be


def test_the_oldest_of_several_generations_in_flight_counts():
    a, b, c = Engine(), Engine(), Engine()
    gens = EngineGenerations()
    gens.serve([a], 3)
    gens.serve([b], 4)
    gens.serve([c], 5)
    assert gens.holds([c], [b, a, b]) == 3
    assert gens.holds([c], [b]) == 4
