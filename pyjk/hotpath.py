"""Which of pyjk's modules run compiled, and ``PYJK_PURE=1``, which runs none of them.

setup.py compiles the modules it lists (``COMPILED_MODULES`` there: the one list) with Cython,
each from its own ``.py`` plus an augmenting ``.pxd`` beside it; ``pip install -e .`` leaves
the extension (``shared.cpython-311-x86_64-linux-gnu.so``) next to the ``.py``, and Python's
import system prefers an extension to a source file of the same name. So the compiled build
needs nothing at run time, and this module only has to answer two questions:

- ``compiled_modules()``: which modules of pyjk's packages are (or will be) imported from an
  extension; ``describe()`` says it in one line for the start-up log and ``--version``;
- ``PYJK_PURE=1``: ``use_sources_if_asked()`` (called by ``balancer/__init__.py`` before any
  of its modules is imported) puts a finder in front of the import system that answers every
  module of pyjk's packages with its ``.py``. CI runs the unit tests of the compiled modules
  that way too, so the readable source and the extension cannot drift. The same finder runs
  the source of an extension older than its ``.py``/``.pxd`` (an edit not rebuilt), loudly.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import logging
import os
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

PACKAGES = ("balancer", "worker", "replication", "pyjk")
ENV = "PYJK_PURE"
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pure_requested() -> bool:
    """``PYJK_PURE`` set to anything but "", "0", "no" or "false"."""
    return os.environ.get(ENV, "").strip().lower() not in ("", "0", "no", "false")


class SourceFinder:
    """A meta path finder that answers a module of pyjk's packages with its ``.py`` file
    where an extension module of the same name would otherwise win: always with
    ``PYJK_PURE`` set, and when the extension is older than its ``.py`` or ``.pxd`` (an edit
    not rebuilt yet must not be silently ignored: the source runs, with a warning)."""

    def __init__(self, pure: bool, *, all_sources: bool = False) -> None:
        self.pure = pure
        # some extension is stale: every compiled module runs its source, as the compiled
        # ones cimport each other's C functions (plan.so needs sticky.so, not sticky.py)
        self.all_sources = all_sources
        self.stale: list[str] = []

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if name.partition(".")[0] not in PACKAGES or not path:
            return None  # a package itself (no compiled __init__) or someone else's module
        leaf = name.rpartition(".")[2]
        for folder in path:
            source = os.path.join(folder, leaf + ".py")
            if not os.path.isfile(source):
                continue
            built = _extension(folder, leaf)
            if built is None:
                return None  # nothing compiled: the ordinary finders do as usual
            if not (self.pure or self.all_sources):  # (all_sources: said once, at start)
                newest = max(_mtime(source), _mtime(os.path.join(folder, leaf + ".pxd")))
                if _mtime(built) >= newest:
                    return None  # the extension wins, as the import system has it
                if name in self.stale:
                    return importlib.util.spec_from_file_location(name, source)
                self.stale.append(name)
                logging.getLogger("pyjk").warning(
                    "%s changed after it was compiled: running its source; rebuild the hot "
                    "path with `pip install -e .`",
                    source,
                )
            return importlib.util.spec_from_file_location(name, source)
        return None


def _extension(folder: str, leaf: str) -> str | None:
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = os.path.join(folder, leaf + suffix)
        if os.path.isfile(candidate):
            return candidate
    return None


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except FileNotFoundError:
        return 0.0


def use_sources_if_asked() -> bool:
    """Put the ``SourceFinder`` in front of the import system (idempotent): every module of
    pyjk's packages loads from its ``.py`` with ``PYJK_PURE`` set, a stale extension's module
    too. Returns whether ``PYJK_PURE`` is set."""
    pure = pure_requested()
    if not any(isinstance(f, SourceFinder) for f in sys.meta_path):
        stale = () if pure else stale_modules()
        if stale:
            logging.getLogger("pyjk").warning(
                "%s changed after it was compiled: the whole hot path runs its sources (the "
                "compiled modules call each other at C level) until `pip install -e .` rebuilds it",
                ", ".join(stale),
            )
        sys.meta_path.insert(0, SourceFinder(pure, all_sources=bool(stale)))
    return pure


def _built() -> list[str]:
    """Modules of the packages with an extension file beside their ``.py``."""
    found = []
    for package in PACKAGES:
        for folder, dirs, files in os.walk(os.path.join(_ROOT, package)):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            sources = {f[:-3] for f in files if f.endswith(".py")}
            for file in files:
                for suffix in importlib.machinery.EXTENSION_SUFFIXES:
                    stem = file[: -len(suffix)]
                    if file.endswith(suffix) and stem in sources:
                        rel = os.path.relpath(os.path.join(folder, stem), _ROOT)
                        found.append(rel.replace(os.sep, "."))
                        break
    return sorted(found)


def stale_modules() -> tuple[str, ...]:
    """Modules whose extension is older than their ``.py`` or ``.pxd`` (rebuild them)."""
    out = []
    for name in _built():
        folder, leaf = os.path.join(_ROOT, *name.split(".")[:-1]), name.rpartition(".")[2]
        built = _extension(folder, leaf)
        source = os.path.join(folder, leaf)
        if built and _mtime(built) < max(_mtime(source + ".py"), _mtime(source + ".pxd")):
            out.append(name)
    return tuple(out)


def compiled_modules() -> tuple[str, ...]:
    """The modules of pyjk's packages that import from an extension in this process."""
    out = []
    for name in _built():
        loaded = sys.modules.get(name)
        spec = loaded.__spec__ if loaded is not None else importlib.util.find_spec(name)
        origin = spec.origin if spec is not None else None
        if origin and origin.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)):
            out.append(name)
    return tuple(out)


def describe() -> str:
    """``hot path compiled (N modules)``, or ``hot path pure (PYJK_PURE=1 | not built |
    extensions older than their sources)``; ``--version`` and the start-up log say it."""
    compiled = compiled_modules()
    stale = stale_modules() if not pure_requested() else ()
    if compiled:
        more = f"; stale, running the source: {', '.join(stale)}" if stale else ""
        return f"hot path compiled ({len(compiled)} modules{more})"
    if pure_requested():
        return f"hot path pure ({ENV}=1)"
    if stale:
        return "hot path pure (extensions older than their sources: pip install -e .)"
    return "hot path pure (not built)"
