"""The dependency rule of docs/architecture.md, checked on the sources."""
from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STDLIB = set(sys.stdlib_module_names)


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_kernels_import_only_numpy_numba_llvmlite():
    for f in (ROOT / "kernels").glob("*.py"):
        extra = imported_roots(f) - STDLIB - {"numpy", "numba", "llvmlite", "bitnet_kernels"}
        assert not extra, f"{f.name} imports {extra}"


def test_engine_never_imports_typer_or_rich():
    for f in (ROOT / "bitnet_cli").rglob("*.py"):
        rel = f.relative_to(ROOT / "bitnet_cli")
        if rel.parts[0] == "cli" or rel.name == "ui.py":
            continue
        assert not imported_roots(f) & {"typer", "rich", "click"}, f"{rel} imports a terminal library"


def test_cli_modules_import_only_typer_at_top_level():
    for f in (ROOT / "bitnet_cli" / "cli").glob("*.py"):
        top = ast.parse(f.read_text()).body
        names = set()
        for node in top:
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
        heavy = {n for n in names if n.split(".")[0] in {"numpy", "numba", "bitnet_kernels"}}
        assert not heavy, f"{f.name} imports {heavy} at module level (slows `bitnet --help`)"
