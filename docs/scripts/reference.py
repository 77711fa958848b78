"""Generate the API and configuration reference pages from the code.

Nothing here is hand-maintained: the API pages list every name of every public module's ``__all__``
(top-level package first), so a new public name appears in the reference as soon as it is exported;
the configuration page reads the ``__init__`` signature and numpy docstring of every public
DataModule and LightningModule. ``gen_pages.py`` writes the pages during ``mkdocs build``;
``tests/test_docs.py`` checks their coverage without building the site.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from griffe_sphinx_roles import plain_roles  # noqa: E402  (a sibling script: one rule for both)

#: import name -> distribution, in the order of the reference
PACKAGES = {
    "viscy_transforms": "viscy-transforms",
    "viscy_data": "viscy-data",
    "viscy_models": "viscy-models",
    "viscy_utils": "viscy-utils",
    "dynaclr": "dynaclr",
}

ROOT = Path(__file__).resolve().parents[2]
#: source folders of the packages (mkdocs.yml gives the same list to mkdocstrings)
SOURCE_PATHS = [
    "packages/viscy-transforms/src",
    "packages/viscy-data/src",
    "packages/viscy-models/src",
    "packages/viscy-utils/src",
    "applications/dynaclr/src",
]


@dataclass(frozen=True)
class PublicName:
    """A name exported by a public module, and where the object it names is defined."""

    module: str  # the public module whose ``__all__`` lists it (first one, package first)
    name: str
    canonical: str  # dotted path of the definition, as griffe and mkdocstrings know it

    @property
    def public_path(self) -> str:
        """Dotted path users import, e.g. ``viscy_data.HCSDataModule``."""
        return f"{self.module}.{self.name}"


def public_modules(package: str) -> list[str]:
    """Return the package and every submodule without a leading underscore in its path, sorted."""
    pkg = importlib.import_module(package)
    found = [package]
    for info in pkgutil.walk_packages(pkg.__path__, prefix=f"{package}."):
        if any(part.startswith("_") for part in info.name.split(".")):
            continue
        found.append(info.name)
    return sorted(found, key=lambda m: (m != package, m))


@cache
def _griffe_package(package: str):
    import griffe

    loader = griffe.GriffeLoader(search_paths=[str(ROOT / p) for p in SOURCE_PATHS], docstring_parser="numpy")
    return loader.load(package)


def _griffe_definitions(package: str) -> dict[str, list[str]]:
    """Name -> dotted paths of its (non-alias) definitions anywhere in the package."""
    found: dict[str, list[str]] = {}

    def visit(module) -> None:
        for name, member in module.members.items():
            if member.is_alias:
                continue
            if member.is_module:
                visit(member)
            else:
                found.setdefault(name, []).append(member.path)

    visit(_griffe_package(package))
    return found


def _canonical(package: str, module: str, name: str) -> str:
    """Dotted path of the definition of ``module.name``."""
    obj = getattr(importlib.import_module(module), name)
    owner = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if (inspect.isclass(obj) or inspect.isroutine(obj)) and owner and qualname and owner.startswith(package):
        return f"{owner}.{qualname}"
    # constants, typing aliases: look for the assignment in the sources
    griffe_module = _griffe_package(package)
    try:
        member = griffe_module[module.removeprefix(f"{package}.")] if module != package else griffe_module
        member = member.members[name]
        return member.target_path if member.is_alias else member.path
    except KeyError:
        pass
    candidates = _griffe_definitions(package).get(name, [])
    if len(candidates) != 1:
        raise LookupError(f"cannot tell where {module}.{name} is defined (candidates: {candidates})")
    return candidates[0]


def public_names(package: str) -> list[PublicName]:
    """Every name of every public module's ``__all__`` (dunder names such as ``__version__`` left out).

    One entry per public path: ``viscy_data.HCSDataModule`` and ``viscy_data.hcs.HCSDataModule`` are
    two entries with the same ``canonical`` path. The package comes first, then submodules, sorted.
    """
    names = []
    for module in public_modules(package):
        mod = importlib.import_module(module)
        for name in getattr(mod, "__all__", ()):
            if not name.startswith("__"):
                names.append(PublicName(module, name, _canonical(package, module, name)))
    return names


def api_page(package: str) -> str:
    """Markdown of one package's API reference page."""
    dist = PACKAGES[package]
    lines = [
        f"# {package}",
        "",
        f"`pip install {dist}` · `import {package}` · version: `{package}.__version__`",
        "",
        f"This page is generated from the docstrings of every name in the `__all__` of `{package}` and of its",
        "public submodules (each object once, under the first module that exports it).",
        "",
    ]
    entries = public_names(package)
    # each object is documented once: under the package if it exports it, else under the public
    # module that defines it, else under the first module that exports it. Every other public path
    # gets an anchor there, so links such as [HCSDataModule][viscy_data.HCSDataModule] resolve.
    aliases: dict[str, list[PublicName]] = {}
    for entry in entries:
        aliases.setdefault(entry.canonical, []).append(entry)

    def primary(same: list[PublicName]) -> PublicName:
        defining = same[0].canonical.rsplit(".", 1)[0]
        return next((e for e in same if e.module == package), None) or next(
            (e for e in same if e.module == defining), same[0]
        )

    by_module: dict[str, list[PublicName]] = {}
    for entry in entries:
        if primary(aliases[entry.canonical]) == entry:
            by_module.setdefault(entry.module, []).append(entry)
    by_module = {m: by_module[m] for m in sorted(by_module, key=lambda m: (m != package, m))}
    for module, module_entries in by_module.items():
        lines += [f"## `{module}`", ""]
        doc = inspect.getdoc(importlib.import_module(module))
        if doc and module != package:
            lines += [plain_roles(doc.split("\n\n")[0]), ""]
        for entry in module_entries:
            paths = [e.public_path for e in aliases[entry.canonical]]
            lines += [f"[](){{ #{path} }}" for path in paths if path != entry.canonical]
            lines += [f"::: {entry.canonical}", ""]
    return "\n".join(lines)


def lightning_classes() -> list[PublicName]:
    """Every public LightningDataModule and LightningModule of the five packages (each class once)."""
    from lightning.pytorch import LightningDataModule, LightningModule

    found: dict[str, PublicName] = {}
    for package in PACKAGES:
        for entry in public_names(package):
            obj = getattr(importlib.import_module(entry.module), entry.name)
            if inspect.isclass(obj) and issubclass(obj, LightningDataModule | LightningModule):
                found.setdefault(entry.canonical, entry)
    return list(found.values())


def _parameter_docs(cls) -> dict[str, tuple[str, str]]:
    """Parameter name -> (annotation text, description) from the numpy docstrings of the class.

    A subclass that inherits ``__init__`` documents its parameters in a base class: the classes of
    the MRO are read in order and the first description of a parameter wins.
    """
    import griffe

    out: dict[str, tuple[str, str]] = {}
    for klass in cls.__mro__:
        if klass.__module__.split(".")[0] not in PACKAGES:
            continue
        doc = griffe.Docstring(klass.__doc__ or "", parser="numpy")
        for section in doc.parse(warnings=False):
            if section.kind is griffe.DocstringSectionKind.parameters:
                for param in section.value:
                    # "a, b : int" documents several parameters at once
                    for name in param.name.replace(" ", "").split(","):
                        out.setdefault(name, (str(param.annotation or ""), param.description))
    return out


def _annotation(param: inspect.Parameter) -> str:
    if param.annotation is inspect.Parameter.empty:
        return ""
    if isinstance(param.annotation, str):
        return param.annotation
    return inspect.formatannotation(param.annotation)


def _default(param: inspect.Parameter) -> str:
    if param.default is inspect.Parameter.empty:
        return "**required**"
    return f"`{param.default!r}`"


def _cell(text: str) -> str:
    """One markdown table cell: a single line, pipes escaped."""
    return plain_roles(" ".join(text.split())).replace("|", "\\|")


def init_parameters(cls) -> list[inspect.Parameter]:
    """Return the ``__init__`` arguments a config's ``init_args`` can set (no self, ``*args``, ``**kwargs``)."""
    params = inspect.signature(cls.__init__).parameters.values()
    return [p for p in params if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def config_page() -> str:
    """Markdown of the configuration reference: every init argument of the DataModules and engines."""
    from lightning.pytorch import LightningDataModule

    lines = [
        "# Configuration reference",
        "",
        "Every argument a `data:` or `model:` section of a Lightning CLI config can set, read from the",
        "`__init__` signatures and docstrings of the public DataModules and LightningModules (engines) of",
        "the packages. A config names the class by `class_path` and sets these under `init_args`:",
        "",
        "```yaml",
        "data:",
        "  class_path: viscy_data.HCSDataModule",
        "  init_args:",
        "    data_path: plate.zarr",
        "```",
        "",
        "Arguments marked **required** have no default. Links lead to the API reference.",
        "",
    ]
    groups = {"DataModules": [], "Engines (LightningModules)": []}
    for entry in lightning_classes():
        cls = getattr(importlib.import_module(entry.module), entry.name)
        groups["DataModules" if issubclass(cls, LightningDataModule) else "Engines (LightningModules)"].append(entry)
    for title, entries in groups.items():
        lines += [f"## {title}", ""]
        for entry in entries:
            cls = getattr(importlib.import_module(entry.module), entry.name)
            docs = _parameter_docs(cls)
            summary = (inspect.getdoc(cls) or "").split("\n\n")[0]
            lines += [
                f"### {entry.name}",
                "",
                f"`class_path: {entry.public_path}` · [API reference][{entry.canonical}]",
                "",
                _cell(summary),
                "",
                "| argument | type | default | description |",
                "|---|---|---|---|",
            ]
            for param in init_parameters(cls):
                doc_type, description = docs.get(param.name, ("", ""))
                kind = _annotation(param) or doc_type
                lines.append(
                    f"| `{param.name}` | {_cell(f'`{kind}`' if kind else '')} | {_cell(_default(param))} "
                    f"| {_cell(description)} |"
                )
            lines.append("")
    return "\n".join(lines)


def pages() -> dict[str, str]:
    """Every generated page: path under ``docs/`` -> markdown."""
    out = {f"reference/api/{package}.md": api_page(package) for package in PACKAGES}
    out["reference/configuration.md"] = config_page()
    return out
