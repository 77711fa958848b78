"""Import optional dependencies with an error that says which extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType


def require(module: str, extra: str, purpose: str | None = None) -> ModuleType:
    """Import ``module`` or raise an ``ImportError`` naming the ``viscy-utils`` extra providing it.

    Parameters
    ----------
    module : str
        Dotted module name, e.g. ``"umap"``.
    extra : str
        Name of the ``viscy-utils`` extra that installs it, e.g. ``"eval"``.
    purpose : str, optional
        What needs the module (shown in the message); defaults to the module name.

    Returns
    -------
    ModuleType
        The imported module.
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        what = purpose or module
        raise ImportError(
            f"{what} requires the optional dependency '{module}', which is not installed. "
            f'Install with: pip install "viscy-utils[{extra}]"'
        ) from err
