"""Every init argument of a DataModule, dataset or engine is read somewhere: accepted means used.

An argument that is only stored (``self.x = x``) and never read again is a setting a user can change
to no effect. The check reads the source: an argument passes when ``__init__`` uses it in any way
other than storing it, or when an attribute it is stored in is read by a method of the class or of
one of its project base classes. It cannot tell whether the use is *right*; the behaviour tests of
each package do that. An argument kept only so that old configurations still load must say so: read
it to warn when it is set (a ``DeprecationWarning`` naming it), which counts as a use.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import textwrap
from collections.abc import Iterator

import pytest
import torch.utils.data
from lightning.pytorch import LightningDataModule, LightningModule

import dynaclr
import viscy_data

#: classes whose init arguments are a user-facing contract (configs, CLI)
CHECKED_BASES = (LightningDataModule, LightningModule, torch.utils.data.Dataset)

#: attributes Lightning itself reads (model summary, graph logging, ONNX export, data preparation)
FRAMEWORK_READS = {"example_input_array", "prepare_data_per_node", "automatic_optimization", "strict_loading"}

#: project packages whose modules are scanned (subpackages that need optional extras are skipped)
SCANNED = (viscy_data, dynaclr)
SKIPPED_MODULES = {"dynaclr.demo", "dynaclr.evaluation", "dynaclr.cli", "viscy_data.importers"}


def _modules() -> Iterator[object]:
    for package in SCANNED:
        yield package
        for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            if any(info.name == s or info.name.startswith(f"{s}.") for s in SKIPPED_MODULES):
                continue
            yield importlib.import_module(info.name)


def checked_classes() -> list[type]:
    """Public DataModules, datasets and Lightning modules defined in the scanned packages."""
    found = {}
    for module in _modules():
        for name, cls in vars(module).items():
            if (
                inspect.isclass(cls)
                and not name.startswith("_")
                and cls.__module__ == module.__name__
                and issubclass(cls, CHECKED_BASES)
                and "__init__" in vars(cls)
            ):
                found[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return [found[k] for k in sorted(found)]


def _tree(obj: object) -> ast.AST:
    return ast.parse(textwrap.dedent(inspect.getsource(obj)))


def _self_targets(node: ast.AST) -> list[str] | None:
    """Attribute names of ``self.a = self.b = ...`` targets, or None if any target is something else."""
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    names = []
    for target in targets:
        if not (isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) and target.value.id == "self"):
            return None
        names.append(target.attr)
    return names


def _init_uses(init: ast.FunctionDef) -> dict[str, tuple[bool, set[str]]]:
    """For each argument: (used other than by storing it, attributes it is stored in)."""
    params = [a.arg for a in [*init.args.posonlyargs, *init.args.args[1:], *init.args.kwonlyargs]]
    uses = {p: (False, set()) for p in params}
    stored_loads: set[int] = set()
    for node in ast.walk(init):
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            attrs = _self_targets(node)
            if attrs is None:
                continue
            for name in ast.walk(node.value):
                if isinstance(name, ast.Name) and name.id in uses:
                    uses[name.id][1].update(attrs)
                    stored_loads.add(id(name))
    for node in ast.walk(init):
        if isinstance(node, ast.Name) and node.id in uses and isinstance(node.ctx, ast.Load):
            if id(node) not in stored_loads:
                uses[node.id] = (True, uses[node.id][1])
    return uses


def _attribute_reads(cls: type) -> set[str]:
    """``self.<attr>`` (and any ``<obj>.<attr>``) reads in the class and its project base classes."""
    reads = set(FRAMEWORK_READS)
    roots = {package.__name__ for package in SCANNED} | {cls.__module__.split(".")[0]}
    for klass in cls.__mro__:
        if klass.__module__.split(".")[0] not in roots:
            continue
        for node in ast.walk(_tree(klass)):
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
                reads.add(node.attr)
            elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "getattr" and len(node.args) >= 2:
                if isinstance(node.args[1], ast.Constant):
                    reads.add(node.args[1].value)
    return reads


def ignored_arguments(cls: type) -> list[str]:
    """Init arguments of ``cls`` that are never read, only stored (or not even that)."""
    init = _tree(cls.__init__).body[0]
    reads = _attribute_reads(cls)
    ignored = []
    for param, (used, attrs) in _init_uses(init).items():
        if param in ("args", "kwargs") or used:
            continue
        if not attrs & reads:
            where = f"stored in self.{', self.'.join(sorted(attrs))} and never read" if attrs else "never read"
            ignored.append(f"{cls.__module__}.{cls.__qualname__}({param}=...): {where}")
    return ignored


def test_the_scan_finds_the_data_path_classes():
    names = {cls.__name__ for cls in checked_classes()}
    expected = {"TripletDataModule", "TripletDataset", "HCSDataModule", "MultiExperimentDataModule"}
    expected |= {"MultiExperimentTripletDataset", "ContrastiveModule", "BetaVaeModule", "CachedOmeZarrDataModule"}
    assert expected <= names, sorted(expected - names)


@pytest.mark.parametrize("cls", checked_classes(), ids=lambda c: c.__qualname__)
def test_every_init_argument_is_used(cls):
    ignored = ignored_arguments(cls)
    assert not ignored, "make these arguments work, or deprecate them (warn when set):\n" + "\n".join(ignored)


class _Base(torch.utils.data.Dataset):
    def __init__(self, read_in_base):
        self.read_in_base = read_in_base

    def __getitem__(self, index):
        return self.read_in_base


class _Sample(_Base):
    def __init__(self, used, stored_and_read, passed_up, ignored, only_stored, deprecated=None):
        super().__init__(passed_up)
        if used < 0:
            raise ValueError("used must be >= 0")
        self.stored_and_read = list(stored_and_read)
        self.only_stored = only_stored
        if deprecated is not None:
            raise TypeError("deprecated is gone")

    def __len__(self):
        return len(self.stored_and_read)


def test_checker_flags_only_ignored_arguments():
    ignored = ignored_arguments(_Sample)
    assert len(ignored) == 2, ignored
    assert "_Sample(ignored=...): never read" in ignored[0]
    assert "_Sample(only_stored=...): stored in self.only_stored and never read" in ignored[1]
