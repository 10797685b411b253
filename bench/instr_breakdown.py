"""Where a process's instructions per request go, by kind, from two callgrind profiles.

bench/hotpath_instr.py ``--breakdown`` profiles a run of N and one of 3N requests; the
difference of each function's own (self) cost, divided by 2N, is its cost per request, and the
functions are summed by kind: the event loop (uvloop, libuv), the HTTP parser (llhttp and
httptools' glue), pyjk's compiled modules, and CPython's runtime split by what it was doing
(the interpreter loop, attribute and method lookups, allocation, calls, strings and numbers,
containers). Comparing the bare relay with pyjk this way says what pyjk's layer spends its
instructions on.

Functions are keyed by ``file:function`` without callgrind's object label: a function found in
two objects (OpenSSL's, both in libcrypto and in cryptography's wheel) may be labelled with
either in two runs, which would otherwise book start-up costs as per-request ones.
"""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

# first match wins; the patterns look at "file:function [object]"
CATEGORIES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern))
    for name, pattern in (
        ("llhttp (parsing)", r"llhttp"),
        ("httptools glue (callbacks)", r"httptools"),
        ("uvloop + libuv", r"uvloop|libuv"),
        ("pyjk's compiled modules", r"/balancer/|/worker/|/replication/|__pyx_\w*8balancer_"),
        ("OpenSSL (start-up, relabelled)", r"CRYPTO|OPENSSL|OSSL|ossl|EVP_|libcrypto|_rust"),
        (
            "attribute and method lookup",
            r"GetAttr|SetAttr|_PyType_Lookup|member_get|PyMember_|GetMethod|VectorcallMethod"
            r"|PyDescr_IsData|getset_get|method_get|LookupSpecial",
        ),
        (
            "allocation and freeing",
            r"obmalloc|dealloc|_Py_NewReference|_Py_Dealloc|GenericAlloc|_PyTrash|malloc|free\b"
            r"|_int_free|realloc|PyObject_GC",
        ),
        (
            "GIL and thread state (around each wait for events)",
            r"ceval_gil|PyGILState|pthread|pystate\.c|cancellation\.c",
        ),
        (
            "interpreter loop",
            r"ceval\.c|pycore_ceval|_PyEval_EvalFrame|frame\.c|_PyFrame|pycore_frame"
            r"|initialize_locals",
        ),
        ("calls", r"call\.c|pycore_call|getargs|methodobject|_Py_CheckFunctionResult"),
        (
            "strings, bytes, numbers",
            r"bytes|unicode|long|float|join\.h|format|siphash|pyhash|memmove|memcpy|memset|memcmp"
            r"|strlen",
        ),
        ("dicts, lists, tuples", r"dict|list|tuple"),
        ("system call wrappers (libc)", r"sysdeps/unix/sysv/linux"),
    )
)
OTHER = "other"
_LINE = re.compile(r"\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(\S.*)")


def self_costs(annotate_text: str) -> Counter[str]:
    """Self cost per function from ``callgrind_annotate --auto=no`` output, keyed by
    "file:function"; the object label (if any) is kept after a tab for categorising."""
    costs: Counter[str] = Counter()
    for line in annotate_text.splitlines():
        m = _LINE.match(line)
        if m is None or "PROGRAM TOTALS" in line or ":" not in m.group(2):
            continue
        where = m.group(2)
        function, _, label = where.partition(" [")
        costs[f"{function}\t{label.rstrip(']')}"] += int(m.group(1).replace(",", ""))
    return costs


def category(key: str) -> str:
    return next((name for name, pattern in CATEGORIES if pattern.search(key)), OTHER)


def per_request(short: Counter[str], long: Counter[str], requests: int) -> dict[str, float]:
    """Instructions per request by category: (long - short) / requests, functions matched by
    "file:function" whatever their object label."""
    by_function: Counter[str] = Counter()
    labels: dict[str, str] = {}
    for sign, costs in ((-1, short), (1, long)):
        for key, cost in costs.items():
            function = key.partition("\t")[0]
            by_function[function] += sign * cost
            labels[function] = key
    out: Counter[str] = Counter()
    for function, cost in by_function.items():
        out[category(labels[function])] += cost / requests
    return dict(out.most_common())


def annotate(profile: Path) -> str:
    proc = subprocess.run(
        ["callgrind_annotate", "--auto=no", "--threshold=100", str(profile)],
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout


def breakdown(short: Path, long: Path, requests: int) -> dict[str, float]:
    """Per-request instructions by category between a profile of N and one of N + requests."""
    return per_request(self_costs(annotate(short)), self_costs(annotate(long)), requests)


def format_breakdown(parts: Mapping[str, float]) -> str:
    total = sum(parts.values())
    lines = [
        f"    {cost:10,.0f}  {cost / total:5.1%}  {name}"
        for name, cost in parts.items()
        if abs(cost) >= 50
    ]
    return "\n".join([*lines, f"    {total:10,.0f}         total"])
