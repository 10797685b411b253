"""Instructions per request of the balancer's metrics (callgrind, free of machine noise).

    python bench/metrics_cost.py            # needs valgrind

Runs a small loop under callgrind twice (N and 3N iterations) and divides the difference by
2N, so interpreter start-up and imports cancel out. Measured: an empty call with the same
arguments (the loop's own cost) and ``TrafficStats.answered`` (one observation, called from
Python here; since issue 12's session 5 the compiled exchange makes it with a C call,
``Exchange._observe``, and ``ProxyServer.finished`` is gone: the end of a request runs no
Python function without an access log). Compare with the instructions of a whole request
(docs/benchmarks.md, ``bench/hotpath_instr.py``).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

LOOPS = {
    "empty call (loop overhead)": """
def f(a, b, c, d, e):
    return None
for _ in range(N):
    f("lb", "n1", 200, 0.0012, 0.0031)
""",
    "TrafficStats.answered": """
from balancer.dataplane.stats import TrafficStats
f = TrafficStats().answered
for _ in range(N):
    f("lb", "n1", 200, 0.0012, 0.0031)
""",
}


def instructions(code: str, n: int, tmp: Path) -> int:
    script = tmp / "loop.py"
    script.write_text(f"N = {n}\n{code}")
    out = subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp / 'cg.out'}",
         sys.executable, str(script)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=True,
    )  # fmt: skip
    found = re.search(r"refs:\s+([\d,]+)", out.stderr)
    assert found is not None, out.stderr
    return int(found.group(1).replace(",", ""))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", type=int, default=50_000, help="iterations of the short run")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        for name, code in LOOPS.items():
            short = instructions(code, args.n, Path(tmp))
            long = instructions(code, 3 * args.n, Path(tmp))
            print(f"{name:40s} {(long - short) / (2 * args.n):10,.0f} instructions per call")
    return 0


if __name__ == "__main__":
    sys.exit(main())
