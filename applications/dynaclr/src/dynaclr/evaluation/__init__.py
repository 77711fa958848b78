"""Evaluation tools of DynaCLR embeddings (linear classifiers, dataset discovery, generators).

The command-line tools live in :mod:`dynaclr.evaluation.linear_classifiers` and are exposed as
``dynaclr`` subcommands. They need the ``eval`` extra: ``pip install "dynaclr[eval]"``.
"""

from __future__ import annotations

import importlib.util

__all__ = ["require_extra"]


def require_extra(*modules: str, extra: str = "eval") -> None:
    """Raise an ``ImportError`` naming the dynaclr extra when any of ``modules`` is not installed.

    Only the module specs are looked up, so the check is cheap and the modules are imported later
    where they are used.

    Parameters
    ----------
    *modules : str
        Top-level module names, e.g. ``"wandb"``.
    extra : str
        The ``dynaclr`` extra providing them.
    """
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(
            f'Missing optional dependencies {", ".join(missing)}; install them with: pip install "dynaclr[{extra}]"'
        )
