"""Every workspace package imports and exposes a version string."""

import importlib

import pytest


@pytest.mark.parametrize(
    "module", ["viscy", "viscy_transforms", "viscy_data", "viscy_models", "viscy_utils", "dynaclr"]
)
def test_package_imports_with_version(module):
    mod = importlib.import_module(module)
    assert isinstance(mod.__version__, str) and mod.__version__
