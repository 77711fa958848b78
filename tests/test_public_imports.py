"""No package imports another package's private names: what crosses a package boundary is public API.

A private name is a module path component or an imported name starting with one underscore
(``viscy_data._utils``, ``from viscy_data.gpu_aug import _CacheFactory``). Inside its own package a
private name is fine; another package must use a public module or name instead, so that the owner
can change its internals without breaking users. Checked by scanning the source imports, like
``test_layering.py``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

# the package list and source folders are those of the layering test (loaded by path: tests/ is no package)
_spec = importlib.util.spec_from_file_location("_layering", Path(__file__).with_name("test_layering.py"))
_layering = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_layering)
PROJECT_PACKAGES, REPO, SOURCE_ROOTS = _layering.PROJECT_PACKAGES, _layering.REPO, _layering.SOURCE_ROOTS


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_cross_package_imports(package: str, path: Path) -> list[tuple[int, str]]:
    """Return ``(line, imported name)`` for each import of another project package's private name."""
    found = []
    for line, module, names in _layering.imported_modules(path):
        parts = module.split(".")
        if parts[0] not in PROJECT_PACKAGES or parts[0] == package:
            continue
        private_names = [n for n in names if _is_private(n)]
        if any(_is_private(p) for p in parts[1:]):
            found.append((line, module))
        elif private_names:
            found.extend((line, f"{module}.{n}") for n in private_names)
    return found


def find_violations(package: str, source_root: Path) -> list[str]:
    """List ``file:line: name`` for every private cross-package import under ``source_root``."""
    violations = []
    for path in sorted(source_root.rglob("*.py")):
        rel = path.relative_to(REPO) if path.is_relative_to(REPO) else path
        for line, name in private_cross_package_imports(package, path):
            violations.append(f"{rel}:{line}: {package} imports the private name {name}")
    return violations


@pytest.mark.parametrize("package", sorted(SOURCE_ROOTS))
def test_no_private_imports_across_packages(package):
    violations = find_violations(package, SOURCE_ROOTS[package])
    assert not violations, "make these public in their package, or stop using them:\n" + "\n".join(violations)


def test_checker_catches_private_imports(tmp_path):
    """The checker must flag private modules and names of other packages, and nothing else."""
    pkg = tmp_path / "dynaclr"
    pkg.mkdir()
    (pkg / "ok.py").write_text(
        "from viscy_data.norm_meta import read_norm_meta\n"
        "from viscy_data import INDEX_COLUMNS\n"
        "from dynaclr._private import helper\n"
        "from . import _sibling\n"
        "import viscy_data.__init__\n"
    )
    (pkg / "bad.py").write_text(
        '"""doc."""\n\n'
        "from viscy_data._utils import thread_worker_loader\n"
        "from viscy_data.gpu_aug import _CacheFactory\n"
        "import viscy_transforms._crop\n"
        "import importlib\n"
        "importlib.import_module('viscy_utils._lightning_cli')\n"
    )
    violations = find_violations("dynaclr", pkg)
    assert len(violations) == 4, violations
    for line, name in (
        (3, "viscy_data._utils"),
        (4, "_CacheFactory"),
        (5, "viscy_transforms._crop"),
        (7, "_lightning"),
    ):
        assert any(f"bad.py:{line}:" in v and name in v for v in violations), (line, violations)
