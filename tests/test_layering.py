"""Layering rules of the monorepo, checked by scanning source imports.

viscy-transforms, viscy-data and viscy-models are independent leaves: none imports another
project package. viscy-utils is shared infrastructure and may use viscy-data (normalisation
metadata format, index columns) and viscy-models (optional evaluation tools). No library
imports the ``dynaclr`` application; applications compose libraries, never the reverse.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

PROJECT_PACKAGES = {"viscy_transforms", "viscy_data", "viscy_models", "viscy_utils", "dynaclr", "viscy"}

#: package -> project packages it may import (besides itself)
ALLOWED: dict[str, set[str]] = {
    "viscy_transforms": set(),
    "viscy_data": set(),
    "viscy_models": set(),
    "viscy_utils": {"viscy_data", "viscy_models"},
    "dynaclr": {"viscy_transforms", "viscy_data", "viscy_models", "viscy_utils"},
    "viscy": {"viscy_transforms", "viscy_data", "viscy_models", "viscy_utils"},
}

SOURCE_ROOTS = {
    "viscy_transforms": REPO / "packages/viscy-transforms/src/viscy_transforms",
    "viscy_data": REPO / "packages/viscy-data/src/viscy_data",
    "viscy_models": REPO / "packages/viscy-models/src/viscy_models",
    "viscy_utils": REPO / "packages/viscy-utils/src/viscy_utils",
    "dynaclr": REPO / "applications/dynaclr/src/dynaclr",
    "viscy": REPO / "src/viscy",
}


def imported_modules(path: Path) -> list[tuple[int, str, tuple[str, ...]]]:
    """Return ``(line, module, imported names)`` for every absolute import in ``path``.

    ``from a.b import c, d`` gives ``("a.b", ("c", "d"))``; ``import a.b`` and
    ``importlib.import_module("a.b")`` with a literal name give ``("a.b", ())``.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name, ()) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module, tuple(alias.name for alias in node.names)))
        elif (
            # importlib.import_module("pkg...") with a literal name counts too
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append((node.lineno, node.args[0].value, ()))
    return found


def imported_top_levels(path: Path) -> list[tuple[int, str]]:
    """Return ``(line, top-level module)`` for every absolute import in ``path``."""
    return [(line, module.split(".")[0]) for line, module, _ in imported_modules(path)]


def find_violations(package: str, source_root: Path, allowed: set[str]) -> list[str]:
    """List ``file:line: message`` strings for imports of ``package`` that break the layering."""
    violations = []
    for path in sorted(source_root.rglob("*.py")):
        for line, module in imported_top_levels(path):
            if module in PROJECT_PACKAGES and module != package and module not in allowed:
                rel = path.relative_to(REPO) if path.is_relative_to(REPO) else path
                violations.append(f"{rel}:{line}: {package} must not import {module}")
    return violations


@pytest.mark.parametrize("package", sorted(SOURCE_ROOTS))
def test_package_respects_layering(package):
    root = SOURCE_ROOTS[package]
    assert root.is_dir(), f"source folder {root} is missing"
    violations = find_violations(package, root, ALLOWED[package])
    assert not violations, "layering violations:\n" + "\n".join(violations)


def test_layering_check_catches_illegal_import(tmp_path):
    """The checker itself must fail on an illegal import and name the file and line."""
    pkg = tmp_path / "viscy_models"
    pkg.mkdir()
    (pkg / "ok.py").write_text("import torch\nfrom viscy_models.unet import UNeXt2\n")
    (pkg / "bad.py").write_text('"""doc."""\n\nfrom viscy_data.hcs import HCSDataModule\n')
    (pkg / "worse.py").write_text("import importlib\nimportlib.import_module('dynaclr.engine')\n")
    violations = find_violations("viscy_models", pkg, ALLOWED["viscy_models"])
    assert len(violations) == 2
    assert any("bad.py:3" in v and "viscy_data" in v for v in violations)
    assert any("worse.py:2" in v and "dynaclr" in v for v in violations)


def test_libraries_never_import_the_application():
    for package, allowed in ALLOWED.items():
        if package != "dynaclr":
            assert "dynaclr" not in allowed, package
