"""The module map in CONTRIBUTING.md is the rule: each ncauth module imports only the ncauth
modules its row names, and the modules marked *stdlib* import nothing else at module level."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODULES = sorted(p.stem for p in (ROOT / "ncauth").glob("*.py") if not p.stem.startswith("__"))


def _map() -> dict[str, tuple[set[str], bool]]:
    """module -> (ncauth modules it may import, stdlib only) from CONTRIBUTING.md's table."""
    table: dict[str, tuple[set[str], bool]] = {}
    for line in (ROOT / "CONTRIBUTING.md").read_text().splitlines():
        if m := re.fullmatch(r"\| `(\w+)` \| (.+) \| (.+) \|", line):
            table[m.group(1)] = (set(re.findall(r"`(\w+)`", m.group(3))), "*stdlib*" in m.group(2))
    return table


def _imports(module: str) -> tuple[set[str], set[str]]:
    """(ncauth modules, other top-level packages) *module* imports at module level."""
    tree = ast.parse((ROOT / "ncauth" / f"{module}.py").read_text())
    ours: set[str] = set()
    others: set[str] = set()
    for node in tree.body:  # module level only: imports inside functions are lazy on purpose
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [
                f"{node.module}.{a.name}" if node.module == "ncauth" else node.module for a in node.names
            ]
        elif isinstance(node, ast.Try):  # try: import optional_dependency
            for inner in node.body:
                if isinstance(inner, ast.Import):
                    names += [a.name for a in inner.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "ncauth":
                if parts[1] != "__version__":
                    ours.add(parts[1])
            elif parts[0] not in sys.stdlib_module_names and parts[0] != "__future__":
                others.add(parts[0])
    # and lazily, anywhere: the ncauth modules a function imports still count for the layering
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ncauth"):
            if node.module == "ncauth":
                ours |= {a.name for a in node.names if a.name != "__version__"}
            else:
                ours.add(node.module.split(".")[1])
    return ours, others


def test_every_module_has_a_row() -> None:
    assert sorted(_map()) == MODULES


@pytest.mark.parametrize("module", MODULES)
def test_module_imports_only_what_the_map_allows(module: str) -> None:
    allowed, stdlib_only = _map()[module]
    ours, others = _imports(module)
    assert ours <= allowed, f"{module} imports {sorted(ours - allowed)}: not in its CONTRIBUTING.md row"
    if stdlib_only:
        assert not others, f"{module} is stdlib-only but imports {sorted(others)} at module level"
