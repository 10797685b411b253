"""The compiled hot path: setup.py's list is built in place, an extension is imported before
its source, PYJK_PURE=1 runs the sources, a stale extension never hides an edit, and the
balancer says which it runs (pyjk/hotpath.py)."""

from __future__ import annotations

import ast
import importlib.machinery
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pyjk import hotpath

ROOT = Path(__file__).resolve().parents[2]
SUFFIXES = tuple(importlib.machinery.EXTENSION_SUFFIXES)


def listed() -> list[str]:
    """setup.py's COMPILED_MODULES, read without running setup.py."""
    tree = ast.parse((ROOT / "setup.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "COMPILED_MODULES" for t in node.targets
        ):
            return [ast.literal_eval(e) for e in node.value.elts]  # type: ignore[attr-defined]
    raise AssertionError("setup.py has no COMPILED_MODULES list")


def names() -> list[str]:
    return [m.removesuffix(".py").replace("/", ".") for m in listed()]


def run(code: str, **env: str) -> str:
    environ = {k: v for k, v in os.environ.items() if k != hotpath.ENV} | env
    done = subprocess.run(
        [sys.executable, "-c", code], env=environ, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_setup_lists_existing_sources_once():
    modules = listed()
    assert modules and len(modules) == len(set(modules))
    for module in modules:
        assert (ROOT / module).is_file(), module


@pytest.mark.skipif(hotpath.pure_requested(), reason="PYJK_PURE=1 runs the sources")
def test_the_install_built_every_listed_module_in_place_and_it_is_imported_first():
    for name in names():
        origin = run(f"import {name} as m; print(m.__file__)")
        assert origin.endswith(SUFFIXES), (
            f"{name} imports from {origin}: build the hot path with `pip install -e .` "
            "(scripts/bootstrap.sh does)"
        )
        assert Path(origin).parent == (ROOT / name.replace(".", "/")).parent
    shown = run("from pyjk import hotpath; print(hotpath.compiled_modules())")
    assert sorted(ast.literal_eval(shown)) == sorted(names())
    described = run("from pyjk import hotpath; print(hotpath.describe())")
    assert described == f"hot path compiled ({len(names())} modules)"


def test_pyjk_pure_runs_every_listed_module_from_its_source():
    code = (
        "import importlib\nfrom pyjk import hotpath\n"
        f"for n in {names()!r}:\n    print(importlib.import_module(n).__file__)\n"
        "print(hotpath.compiled_modules(), hotpath.describe())"
    )
    *origins, last = run(code, PYJK_PURE="1").splitlines()
    assert [o.endswith(".py") for o in origins] == [True] * len(names())
    assert last == "() hot path pure (PYJK_PURE=1)"


def test_version_says_what_the_hot_path_runs():
    out = run(
        "import sys; sys.argv = ['pyjk-balancer', '--version']\n"
        "from balancer.__main__ import main\ntry:\n    main()\nexcept SystemExit:\n    pass",
        PYJK_PURE="1",
        COLUMNS="200",
    )
    assert out.startswith("pyjk-balancer ") and out.endswith("hot path pure (PYJK_PURE=1)")


def _module(tmp_path: Path, built_age: float) -> tuple[Path, Path]:
    source = tmp_path / "fast.py"
    source.write_text("X = 1\n")
    built = tmp_path / ("fast" + SUFFIXES[0])
    built.write_bytes(b"")
    now = source.stat().st_mtime
    os.utime(built, (now + built_age, now + built_age))
    return source, built


def test_an_extension_newer_than_its_source_is_left_to_the_import_system(tmp_path):
    _module(tmp_path, +10)
    assert hotpath.SourceFinder(pure=False).find_spec("balancer.fast", [str(tmp_path)]) is None


def test_an_extension_older_than_its_source_runs_the_source_and_says_so(tmp_path, caplog):
    source, _ = _module(tmp_path, -10)
    finder = hotpath.SourceFinder(pure=False)
    spec = finder.find_spec("balancer.fast", [str(tmp_path)])
    assert spec is not None and spec.origin == str(source)
    assert finder.stale == ["balancer.fast"]
    assert "changed after it was compiled" in caplog.text


def test_an_edited_pxd_makes_the_extension_stale_too(tmp_path):
    source, built = _module(tmp_path, +10)
    pxd = tmp_path / "fast.pxd"
    pxd.write_text("")
    later = built.stat().st_mtime + 10
    os.utime(pxd, (later, later))
    spec = hotpath.SourceFinder(pure=False).find_spec("balancer.fast", [str(tmp_path)])
    assert spec is not None and spec.origin == str(source)


def test_pure_answers_with_the_source_even_when_the_extension_is_fresh(tmp_path):
    source, _ = _module(tmp_path, +10)
    spec = hotpath.SourceFinder(pure=True).find_spec("balancer.fast", [str(tmp_path)])
    assert spec is not None and spec.origin == str(source)


def test_modules_of_other_packages_and_without_extension_are_not_touched(tmp_path):
    _module(tmp_path, -10)
    finder = hotpath.SourceFinder(pure=True)
    assert finder.find_spec("elsewhere.fast", [str(tmp_path)]) is None
    (tmp_path / "plain.py").write_text("")
    assert finder.find_spec("balancer.plain", [str(tmp_path)]) is None


@pytest.mark.parametrize(
    ("value", "pure"), [("", False), ("0", False), ("no", False), ("1", True), ("yes", True)]
)
def test_pyjk_pure_values(monkeypatch, value, pure):
    monkeypatch.setenv(hotpath.ENV, value)
    assert hotpath.pure_requested() is pure


def test_with_one_stale_extension_every_compiled_module_runs_its_source(tmp_path):
    # plan.so cimports sticky.so's C functions: a fresh plan.so beside sticky.py (stale) fails
    # to import, so one stale extension sends the whole hot path to its sources
    fresh_source, _ = _module(tmp_path, +10)
    finder = hotpath.SourceFinder(pure=False, all_sources=True)
    spec = finder.find_spec("balancer.fast", [str(tmp_path)])
    assert spec is not None and spec.origin == str(fresh_source)
    alone = hotpath.SourceFinder(pure=False)
    assert alone.find_spec("balancer.fast", [str(tmp_path)]) is None


def test_a_stale_module_in_a_real_tree_runs_every_module_from_source(tmp_path):
    if not names():
        pytest.skip("the hot path is not built here")
    tree = tmp_path / "tree"
    shutil.copytree(ROOT, tree, ignore=shutil.ignore_patterns(".venv", ".git", "__pycache__"),
                    copy_function=shutil.copy2)  # fmt: skip
    sticky = tree / "balancer" / "lb" / "sticky.py"
    built = max(
        tree.joinpath("balancer", "lb").glob("sticky.*.so"), key=lambda p: p.stat().st_mtime
    )
    later = max(sticky.stat().st_mtime, built.stat().st_mtime) + 60
    os.utime(sticky, (later, later))  # edited after the build (whenever the build ran)
    code = (
        "import importlib\nfrom pyjk import hotpath\n"
        f"for n in {names()!r}:\n    print(importlib.import_module(n).__file__)\n"
        "print(hotpath.describe())"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tree, capture_output=True,
                         text=True, timeout=120, env={**os.environ, "PYJK_PURE": ""})  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    *origins, described = out.stdout.splitlines()
    assert all(o.endswith(".py") for o in origins)
    assert described.startswith("hot path pure (extensions older than their sources")
    assert "balancer.lb.sticky changed after it was compiled" in out.stderr
