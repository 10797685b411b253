"""docs/architecture.md's room table stays true: a room it calls free of I/O imports no I/O
module and no room it marks as doing I/O, and every module of the three packages is in it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("balancer", "worker", "replication", "pyjk")
# What a module that decides without I/O has no use for: the event loop, sockets, files,
# processes, signals and the web framework. (time, os, secrets and logging are allowed: the
# clock's formatting, os.urandom and ids from secrets are not I/O, and logging is a side line.)
IO_MODULES = frozenset(
    {
        "aiohttp",
        "asyncio",
        "http.client",
        "mmap",
        "multiprocessing",
        "pathlib",
        "selectors",
        "signal",
        "socket",
        "ssl",
        "subprocess",
        "threading",
        "tomllib",
        "urllib.request",
        "uvloop",
    }
)


def rooms() -> list[tuple[frozenset[str], str]]:
    """(modules, I/O cell) for each row of the Rooms table; modules as paths from the root."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = text.split("## Rooms", 1)[1].split("\n## ", 1)[0]
    out = []
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        base = ""
        modules: set[str] = set()
        for name in re.findall(r"`([^`]+)`", cells[0]):
            if "/" in name:
                base = name if name.endswith("/") else name.rsplit("/", 1)[0] + "/"
                path = name
            else:
                path = base + name
            if path.endswith("/"):
                modules |= {str(p.relative_to(ROOT)) for p in (ROOT / path).rglob("*.py")}
            else:
                modules.add(path)
        out.append((frozenset(modules), cells[-1]))
    return out


def imports_of(path: str) -> set[str]:
    """Modules imported at any level of ``path`` (``from .x`` resolved within its package)."""
    tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
    package = path.rsplit("/", 1)[0].replace("/", ".")
    found: set[str] = set()
    # imports under ``if TYPE_CHECKING:`` are for annotations only and never run
    for block in [n for n in ast.walk(tree) if isinstance(n, ast.If)]:
        test = block.test
        if (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
            isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
        ):
            block.body = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{node.module}" if node.module else parent
            else:
                base = node.module or ""
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}  # submodules, if any
    return {name for name in found if name}


def io_imports(module: str) -> set[str]:
    return {m for m in imports_of(module) if m in IO_MODULES or m.split(".")[0] in IO_MODULES}


def module_path(name: str) -> str | None:
    for candidate in (name.replace(".", "/") + ".py", name.replace(".", "/") + "/__init__.py"):
        if (ROOT / candidate).exists():
            return candidate
    return None


ROOMS = rooms()
PURE = sorted(m for modules, io in ROOMS if io.startswith("no") for m in modules)
WITH_IO = {m for modules, io in ROOMS if io.startswith("yes") for m in modules}
READS_FILES = {m for modules, io in ROOMS if io == "reads the file" for m in modules}


def test_the_table_lists_every_module_of_the_packages_once():
    listed = [m for modules, _ in ROOMS for m in modules]
    assert len(listed) == len(set(listed)), "a module is in two rows"
    on_disk = {str(p.relative_to(ROOT)) for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    assert on_disk - set(listed) == set(), "modules missing from docs/architecture.md's Rooms"
    assert set(listed) - on_disk == set(), "rows name modules that do not exist"


@pytest.mark.parametrize("module", PURE)
def test_a_room_the_table_calls_free_of_io_imports_none(module):
    io = io_imports(module)
    assert io == set(), f"{module} imports {sorted(io)}; docs/architecture.md says no I/O"
    # nor through a module of its own project (reading a config file is said in its row)
    project = {p for m in imports_of(module) if (p := module_path(m)) is not None}
    doing_io = {p for p in project - READS_FILES if io_imports(p)}
    assert doing_io == set(), f"{module} imports {sorted(doing_io)}, which do I/O"


def test_the_check_sees_what_it_is_meant_to_catch():
    # relative imports resolve within the package; a folder row expands to its modules
    assert {"replication.merge", "worker.values"} <= (
        imports_of("replication/ledger.py") | imports_of("worker/delta.py")
    )
    assert "balancer/lb/engine.py" in PURE and "replication/node.py" in WITH_IO
    assert "aiohttp" in io_imports("replication/replay.py")
    # an import only for annotations is no dependency at run time
    assert not any("tls_listener" in m for m in imports_of("balancer/status/tls_view.py"))


def test_cluster_cache_and_singleton_names_follow_one_pattern():
    """The name pattern is written once (worker/names.py): the config, the apps' APIs and the
    codecs check the same one, so a name one side accepts the other never refuses."""
    from replication import cache_codec, codec, config
    from worker import caches, names, singletons

    for module in (caches, singletons, cache_codec):
        assert module.NAME_RE is names.NAME_RE, module.__name__
    assert codec.CLUSTER_NAME_RE is codec.SINGLETON_NAME_RE is names.NAME_RE
    assert config.NAME_RE is names.NAME_RE
    pattern = names.NAME_RE.pattern.replace("\\", "\\\\")
    sources = [p for pkg in ("worker", "replication") for p in (ROOT / pkg).glob("*.py")]
    written = [p.name for p in sources if pattern in p.read_text(encoding="utf-8")]
    assert written == ["names.py"], written
