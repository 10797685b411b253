"""Builds pyjk's compiled hot path (pyproject.toml holds everything else).

Cython compiles each module below from its own ``.py`` (Cython's pure-Python mode), with the
C types of the ``.pxd`` beside it: the ``.py`` stays the readable reference the unit tests run
with ``PYJK_PURE=1`` (pyjk/hotpath.py). ``pip install -e .`` builds the extensions in place,
next to their sources. A compile error fails the install: there is no silent fallback to the
sources (a balancer that quietly runs uncompiled costs twice the CPU and says so only in its
start-up line).
"""

from Cython.Build import cythonize
from setuptools import setup

# The compiled modules: the one list. Add a module only with a measurement that it pays
# (docs/benchmarks.md, issue 12): compiled unchanged, ordinary classes ran slower.
COMPILED_MODULES = [
    # Member and LbSettings as extension types whose per-request reads and writes are C
    # methods (member.pxd, settings.pxd), which SharedMember and SharedSettings override
    # (shared.pxd): docs/benchmarks.md, issue 12, session 6
    "balancer/lb/member.py",
    "balancer/lb/settings.py",
    "balancer/lb/shared.py",
    "balancer/lb/plan.py",
    "balancer/lb/engine.py",
    "balancer/lb/sticky.py",
    "balancer/lb/choice.py",
    # RequestFacts and Forward as extension types made by C calls (decisions.pxd), and the
    # router's table of answers (answers.pxd): docs/benchmarks.md, issue 12, session 5
    "balancer/lb/decisions.py",
    # a rule's overrides as an extension type the engine reads at C level (rules.pxd):
    # docs/benchmarks.md, issue 12, session 5
    "balancer/config/rules.py",
    "balancer/dataplane/answers.py",
    "balancer/dataplane/routes.py",
    # the http member connection as an extension type (upstream.pxd, member_connection.pxd):
    # -2.1k instructions per keep-alive request against PYJK_PURE=1 (docs/benchmarks.md, issue 12)
    "balancer/dataplane/member_connection.py",
    "balancer/dataplane/upstream.py",
    # the buffers the member's responses are read into, a large body relayed as views of them
    # (read_buffers.pxd): docs/benchmarks.md, issue 12, session 7
    "balancer/dataplane/read_buffers.py",
    # the response head read from its bytes, no per-field Python call (response_head.pxd):
    # docs/benchmarks.md, issue 12, session 4
    "balancer/dataplane/response_head.py",
    # the byte steps both head scanners share, C functions they cimport (head_bytes.pxd)
    "balancer/dataplane/head_bytes.py",
    # the per-request chain with typed references between its objects (request.pxd,
    # exchange.pxd, downstream.pxd): docs/benchmarks.md, issue 12, session 3 part C
    "balancer/dataplane/request.py",
    "balancer/dataplane/exchange.py",
    "balancer/dataplane/downstream.py",
    "balancer/dataplane/relay.py",
    "balancer/dataplane/http_request.py",
    "balancer/dataplane/pool.py",
    "balancer/dataplane/request_head.py",
    # the request's one observation, a C call from the exchange (stats.pxd): docs/benchmarks.md,
    # issue 12, session 5
    "balancer/dataplane/stats.py",
    # a new client connection runs no Python frame of pyjk's: admission a C call, the
    # deadline an entry of one timer wheel (admission.pxd, timer_wheel.pxd): docs/benchmarks.md,
    # issue 12, session 6
    "balancer/dataplane/admission.py",
    "balancer/dataplane/timer_wheel.py",
    # what an exchange reads of its ProxyServer per request as C fields of the server's base,
    # the request id's counter among them (proxy_core.pxd): docs/benchmarks.md, issue 12,
    # session 7
    "balancer/dataplane/proxy_core.py",
]

setup(
    ext_modules=cythonize(
        COMPILED_MODULES,
        language_level=3,
        compiler_directives={
            # the .pxd files say what is a C type; annotations stay Python's (``x: float``
            # would otherwise turn a None default into a TypeError)
            "annotation_typing": False,
            "boundscheck": True,
        },
    )
)
