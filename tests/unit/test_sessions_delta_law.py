"""The delta law: the recorded delta, applied to the session as it was before the request,
gives the session as it is after it — for any mix of sets, removes, in-place edits of nested
lists and dicts, interval and route changes, and invalidation. Also through the wire form."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from worker.delta import SessionDelta, SessionState, apply_delta
from worker.sessions import SessionStore
from worker.values import decode

T0 = 1_700_000_000.0
NAMES = st.sampled_from(["a", "b", "c", "d"])
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=4)
)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
)
CONTAINERS = st.lists(JSON, max_size=3) | st.dictionaries(st.text(max_size=3), JSON, max_size=3)


def mutate_in_place(data: st.DataObject, value: Any) -> None:
    """Walk into a random nested container of `value` and change it there."""
    while True:
        children = [
            c
            for c in (value if isinstance(value, list) else value.values())
            if isinstance(c, list | dict)
        ]
        if not children or not data.draw(st.booleans(), label="descend"):
            break
        value = data.draw(st.sampled_from(children), label="child")
    if isinstance(value, list):
        op = data.draw(st.sampled_from(["append", "pop", "replace"]), label="list op")
        if op == "append" or not value:
            value.append(data.draw(JSON, label="item"))
        elif op == "pop":
            value.pop(data.draw(st.integers(0, len(value) - 1), label="index"))
        else:
            value[data.draw(st.integers(0, len(value) - 1))] = data.draw(JSON, label="item")
    else:
        key = data.draw(st.text(max_size=3), label="key")
        if key in value and data.draw(st.booleans(), label="delete"):
            del value[key]
        else:
            value[key] = data.draw(JSON, label="value")


def run_request(data: st.DataObject, store: SessionStore, sid: str | None) -> tuple:
    view = store.create(T0 + 1) if sid is None else store.begin(sid, T0 + 1)
    for _ in range(data.draw(st.integers(0, 8), label="steps")):
        op = data.draw(
            st.sampled_from(
                ["set", "set", "del", "mutate", "mutate", "read", "interval", "route", "invalidate"]
            ),
            label="op",
        )
        name = data.draw(NAMES, label="name")
        if op == "set":
            view[name] = data.draw(JSON | CONTAINERS, label="value")
        elif op == "del" and name in view:
            del view[name]
        elif op == "mutate" and isinstance(view.get(name), list | dict):
            mutate_in_place(data, view[name])
        elif op == "read":
            view.get(name)
        elif op == "interval":
            view.max_inactive_interval = data.draw(st.sampled_from([-1, 0, 30, 1800.5]))
        elif op == "route":
            view.change_route(data.draw(st.sampled_from(["n1", "n2", "dom.n3"]), label="route"))
        elif op == "invalidate":
            view.invalidate()
            break
    seen = None if view.invalidated else json.loads(json.dumps(dict(view)))
    return view, seen


@settings(max_examples=300, deadline=None)
@given(
    data=st.data(), start=st.dictionaries(NAMES, JSON | CONTAINERS, max_size=4), fresh=st.booleans()
)
def test_delta_applied_to_the_before_copy_reproduces_the_after_state(data, start, fresh):
    store = SessionStore("n1")
    sid = None
    before: SessionState | None = None
    if not fresh:
        setup = store.create(T0)
        setup.update(start)
        store.commit(setup, T0)
        sid = setup.id
        before = store.get_state(sid)

    view, seen = run_request(data, store, sid)
    delta = store.commit(view, T0 + 2)
    after = store.get_state(view.id)

    if delta is None:
        if view.invalidated:  # created and ended in one request: nobody needs to know
            assert fresh and after is None
        else:
            assert not fresh and after == replace(before, last_accessed=T0 + 2)
    else:
        assert apply_delta(before, delta) == after
        wired = SessionDelta.from_wire(json.loads(json.dumps(delta.to_wire())))
        assert apply_delta(before, wired) == after
    if after is not None:
        # what the handler saw at the end is exactly what the store now holds
        assert {k: decode(t) for k, t in after.attributes.items()} == seen
        assert after.id == view.id


@settings(max_examples=100, deadline=None)
@given(data=st.data(), start=st.dictionaries(NAMES, JSON | CONTAINERS, max_size=4))
def test_replica_fed_the_deltas_ends_equal_to_the_origin(data, start):
    origin, replica = SessionStore("n1"), SessionStore("n2")
    setup = origin.create(T0)
    setup.update(start)
    replica.apply(origin.commit(setup, T0))
    sid = setup.id
    for _ in range(data.draw(st.integers(1, 4), label="requests")):
        view, _ = run_request(data, origin, sid)
        delta = origin.commit(view, T0 + 2)
        if delta is not None:
            replica.apply(SessionDelta.from_wire(json.loads(json.dumps(delta.to_wire()))))
        if view.invalidated:
            break
        sid = view.id
    origin_state, replica_state = origin.get_state(sid), replica.get_state(sid)
    if origin_state is not None and replica_state is not None:
        # access time of read-only requests is local state, not replicated
        assert replace(replica_state, last_accessed=0) == replace(origin_state, last_accessed=0)
    else:
        assert origin_state is None and replica_state is None
