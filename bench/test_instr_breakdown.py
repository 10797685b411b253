"""bench/instr_breakdown.py: callgrind self costs summed by kind, per request."""

from __future__ import annotations

from instr_breakdown import format_breakdown, per_request, self_costs

ANNOTATE_SHORT = """\
--------------------------------------------------------------------------------
Ir
--------------------------------------------------------------------------------
3,000,000 (100.0%)  PROGRAM TOTALS

--------------------------------------------------------------------------------
Ir                  file:function
--------------------------------------------------------------------------------
1,000,000 (33.3%)  ???:CRYPTO_THREAD_unlock [/x/site-packages/cryptography/hazmat/_rust.abi3.so]
  500,000 (16.6%)  Python/ceval.c:_PyEval_EvalFrameDefault [/x/libpython3.11.so.1.0]
  100,000 ( 3.3%)  /project/vendor/llhttp/src/llhttp.c:llhttp__internal__run [/x/parser.so]
"""
ANNOTATE_LONG = """\
1,000,000 (20.0%)  ???:CRYPTO_THREAD_unlock [/usr/lib/x86_64-linux-gnu/libcrypto.so.3]
  900,000 (18.0%)  Python/ceval.c:_PyEval_EvalFrameDefault [/x/libpython3.11.so.1.0]
  300,000 ( 6.0%)  /project/vendor/llhttp/src/llhttp.c:llhttp__internal__run [/x/parser.so]
   60,000 ( 1.2%)  /w/balancer/lb/choice.c:__pyx_pw_8balancer_2lb_6choice_1best [/w/choice.so]
   40,000 ( 0.8%)  Objects/object.c:_PyObject_GenericGetAttrWithDict [/x/libpython3.11.so.1.0]
"""


def test_breakdown_charges_each_kind_its_cost_per_request() -> None:
    short, long = self_costs(ANNOTATE_SHORT), self_costs(ANNOTATE_LONG)
    parts = per_request(short, long, 100)
    assert parts == {
        "interpreter loop": 4000.0,
        "llhttp (parsing)": 2000.0,
        "pyjk's compiled modules": 600.0,
        "attribute and method lookup": 400.0,
        # the same OpenSSL function under another object's label: start-up, not per request
        "OpenSSL (start-up, relabelled)": 0.0,
    }
    assert format_breakdown(parts).splitlines()[-1].split() == ["7,000", "total"]
