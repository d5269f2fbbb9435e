"""The walls between packages and the size of the rooms.

Packages meet through public faces: no module imports another package's private
module (``heatsync.envs._queue`` from agents/, ``heatsync.physics._pytree`` from the
envs ...). A package is each subpackage of ``heatsync`` (physics, envs, agents,
benchmark, train, perf); the root package's own private helpers (``heatsync._io``,
``heatsync._xla``) are shared by everything inside it. And no module outside tests/
grows past ~500 lines (the plant's linear substep pipeline excepted).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: source folder -> the import name of the package it installs as
FOLDERS = {"physics": "heatsync.physics", "envs": "heatsync.envs", "agents": "heatsync.agents",
           "heatsync": "heatsync", "scripts": None}
MAX_LINES = 500
#: modules allowed past MAX_LINES, with the reason
LONG_OK = {"physics/plant.py": "the substep is one linear pipeline of the plant's stages"}


def _sources():
    for folder in FOLDERS:
        yield from sorted((ROOT / folder).rglob("*.py"))


def _module_name(path: Path) -> str | None:
    """``heatsync.envs.task`` for envs/task.py (None for scripts)."""
    rel = path.relative_to(ROOT)
    base = FOLDERS[rel.parts[0]]
    if base is None:
        return None
    parts = list(rel.with_suffix("").parts[1:])
    if parts and parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join([base, *parts])


def _package_of(module: str) -> str:
    """The package a module belongs to: ``heatsync.<sub>`` or ``heatsync`` itself."""
    parts = module.split(".")
    if len(parts) >= 2 and not parts[1].startswith("_"):
        return ".".join(parts[:2])
    return "heatsync"


def _imports(tree: ast.AST, module: str | None, is_pkg: bool):
    """Absolute names each import statement reaches (modules and ``from`` members)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, a.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = module.split(".") if module else []
                up = here if is_pkg else here[:-1]
                up = up[:len(up) - (node.level - 1)] if node.level > 1 else up
                base = ".".join([*up, base]) if base else ".".join(up)
            yield node.lineno, base
            for a in node.names:
                yield node.lineno, f"{base}.{a.name}"


def crossings(source: str, module: str | None, is_pkg: bool = False) -> list[tuple[int, str]]:
    """``(line, name)`` of every import of another package's private module."""
    own = _package_of(module) if module else None
    out = []
    for line, name in _imports(ast.parse(source), module, is_pkg):
        parts = name.split(".")
        if parts[0] != "heatsync" or len(parts) < 3:
            continue  # not ours, or a top-level helper of the root package
        target = _package_of(name)
        private = any(p.startswith("_") and not p.startswith("__") for p in parts[2:])
        if private and target != own:
            out.append((line, name))
    return out


def test_walls__a_private_import_across_packages_is_caught():
    bad = "from heatsync.envs import _queue as Q\nimport heatsync.physics._pytree\n" \
          "from heatsync.envs._spaces import decode\n"
    got = [n for _, n in crossings(bad, "heatsync.agents.mpc")]
    assert got == ["heatsync.envs._queue", "heatsync.physics._pytree",
                   "heatsync.envs._spaces", "heatsync.envs._spaces.decode"]
    # inside its own package a private module is fine, and so are relative imports
    assert crossings("from . import _queue\nfrom ._queue import start\n",
                     "heatsync.envs.task") == []
    assert crossings("from heatsync.envs._queue import start\n", "heatsync.envs.task") == []
    assert crossings("from heatsync._io import write_text_atomic\n",
                     "heatsync.benchmark.store") == []


def test_walls__no_module_imports_another_packages_private_module():
    found = []
    for path in _sources():
        mod = _module_name(path)
        for line, name in crossings(path.read_text(), mod, path.name == "__init__.py"):
            found.append(f"{path.relative_to(ROOT)}:{line}: {name}")
    assert not found, "private imports across packages:\n" + "\n".join(found)


@pytest.mark.parametrize("path", [p.relative_to(ROOT).as_posix() for p in _sources()])
def test_rooms__every_module_is_of_a_readable_size(path):
    n = len((ROOT / path).read_text().splitlines())
    if path in LONG_OK:
        return
    assert n <= MAX_LINES, f"{path}: {n} lines (split it by concern; limit {MAX_LINES})"
