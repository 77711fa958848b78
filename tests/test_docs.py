"""The documentation site's generated reference covers the code (without building the site).

``.ci/run`` builds the site with ``mkdocs build --strict`` and checks the rendered anchors
(``docs/scripts/check_site.py``); these tests check the generator and the site's configuration.
"""

import importlib
import inspect
import re
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "docs" / "scripts"))
import check_site  # noqa: E402
import reference  # noqa: E402


@pytest.fixture(scope="module")
def pages() -> dict[str, str]:
    return reference.pages()


@pytest.mark.parametrize("package", list(reference.PACKAGES))
def test_every_top_level_public_name_is_in_the_api_reference(package, pages):
    text = pages[f"reference/api/{package}.md"]
    mod = importlib.import_module(package)
    documented = set(re.findall(r"^::: (\S+)$", text, re.MULTILINE))
    anchors = set(re.findall(r"^\[\]\(\)\{ #(\S+) \}$", text, re.MULTILINE))
    names = [n for n in mod.__all__ if not n.startswith("__")]
    assert names, f"{package}.__all__ is empty"
    for name in names:
        path = f"{package}.{name}"
        assert path in documented | anchors, f"{path} is not in reference/api/{package}.md"
        obj = getattr(mod, name)
        if inspect.isclass(obj) or inspect.isroutine(obj):  # the directive names its definition
            assert f"{obj.__module__}.{obj.__qualname__}" in documented, path


def test_every_submodule_public_name_is_in_the_api_reference(pages):
    text = "\n".join(pages[f"reference/api/{p}.md"] for p in reference.PACKAGES)
    documented = set(re.findall(r"^::: (\S+)$", text, re.MULTILINE))
    anchors = set(re.findall(r"^\[\]\(\)\{ #(\S+) \}$", text, re.MULTILINE))
    checked = 0
    for package in reference.PACKAGES:
        for module in reference.public_modules(package):
            for name in getattr(importlib.import_module(module), "__all__", ()):
                if not name.startswith("__"):
                    assert f"{module}.{name}" in documented | anchors, f"{module}.{name}"
                    checked += 1
    assert checked > 200  # the five packages export a few hundred names


def test_each_object_is_documented_once(pages):
    directives = re.findall(r"^::: (\S+)$", "\n".join(pages.values()), re.MULTILINE)
    duplicated = {d for d in directives if directives.count(d) > 1}
    assert not duplicated  # a second copy would give two targets for one cross-reference


def test_private_modules_are_not_walked():
    modules = [m for p in reference.PACKAGES for m in reference.public_modules(p)]
    assert "viscy_data.hcs" in modules and "viscy_utils.evaluation.clustering" in modules
    assert not [m for m in modules if any(part.startswith("_") for part in m.split("."))]


def test_configuration_reference_lists_every_init_argument(pages):
    text = pages["reference/configuration.md"]
    classes = reference.lightning_classes()
    names = {c.name for c in classes}
    # the DataModules and engines the guides configure are found by the generic rule
    assert {"HCSDataModule", "TripletDataModule", "MultiExperimentDataModule", "ContrastiveModule"} <= names
    assert "BetaVaeModule" in names
    sections = re.split(r"^### ", text, flags=re.MULTILINE)[1:]
    by_class = {s.split("\n", 1)[0]: s for s in sections}
    for entry in classes:
        cls = getattr(importlib.import_module(entry.module), entry.name)
        section = by_class[entry.name]
        assert f"`class_path: {entry.public_path}`" in section
        for param in reference.init_parameters(cls):
            row = re.search(rf"^\| `{re.escape(param.name)}` \|.*$", section, re.MULTILINE)
            assert row, f"{entry.name}({param.name}) missing from the configuration reference"
            description = row.group(0).rsplit("|", 2)[-2].strip()
            assert description, f"{entry.name}({param.name}) has no description in the numpy docstring"
            if param.default is inspect.Parameter.empty:
                assert "**required**" in row.group(0)
            else:
                assert repr(param.default).replace("|", "\\|") in row.group(0)


def test_configuration_reference_describes_the_multi_experiment_arguments(pages):
    """Descriptions come from the numpy docstring, including grouped ``a, b : type`` entries."""
    text = pages["reference/configuration.md"]
    section = text.split("### MultiExperimentDataModule", 1)[1].split("\n### ", 1)[0]
    row = re.search(r"^\| `tau_range` \|.*$", section, re.MULTILINE).group(0)
    assert "hours" in row
    row = re.search(r"^\| `leaky` \|.*$", section, re.MULTILINE).group(0)
    assert "FlexibleBatchSampler" in row


def test_mkdocs_nav_names_every_generated_page_and_exists(pages):
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=yaml.BaseLoader)
    assert config["strict"] == "true"

    def walk(node):
        if isinstance(node, str):
            yield node
        elif isinstance(node, list):
            for item in node:
                yield from walk(item)
        elif isinstance(node, dict):
            for value in node.values():
                yield from walk(value)

    nav = set(walk(config["nav"]))
    assert set(pages) <= nav
    for page in nav - set(pages):
        assert (ROOT / "docs" / page).is_file(), page


def test_site_check_reports_a_missing_anchor(tmp_path):
    """check_site (run on the built site in .ci/run) fails when a name did not render."""
    for package in reference.PACKAGES:
        page = tmp_path / "reference" / "api" / package / "index.html"
        page.parent.mkdir(parents=True)
        page.write_text("".join(f'<h3 id="{e.public_path}"></h3>' for e in reference.public_names(package)))
    assert check_site.missing_anchors(tmp_path) == []
    page = tmp_path / "reference" / "api" / "viscy_data" / "index.html"
    page.write_text(page.read_text().replace('id="viscy_data.HCSDataModule"', ""))
    assert check_site.missing_anchors(tmp_path) == ["viscy_data.HCSDataModule"]
