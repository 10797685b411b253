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
    assert gens.holds([kept, new], [kept, new]) == 0  # ``old`` is forgotten now


def test_with_no_older_engine_left_the_connections_are_not_looked_at():
    engine = Engine()
    gens = EngineGenerations()
    gens.serve([engine], 1)

    def in_flight():
        raise AssertionError("scanned")
        yield

    assert gens.holds([engine], in_flight()) == 0


def test_the_oldest_of_several_generations_in_flight_counts():
    a, b, c = Engine(), Engine(), Engine()
    gens = EngineGenerations()
    gens.serve([a], 3)
    gens.serve([b], 4)
    gens.serve([c], 5)
    assert gens.holds([c], [b, a, b]) == 3
    assert gens.holds([c], [b]) == 4
