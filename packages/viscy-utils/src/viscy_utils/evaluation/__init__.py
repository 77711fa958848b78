"""Evaluation of learned embeddings: annotations, dimensionality reduction, clustering, metrics.

Submodules are imported on demand (``from viscy_utils.evaluation.clustering import ...``) so that
importing this package costs nothing and optional dependencies are only needed by the tools that use
them. The one name re-exported here, :func:`load_annotation_anndata`, is resolved lazily as well.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from viscy_utils.evaluation.annotation import load_annotation_anndata

__all__ = ["load_annotation_anndata"]

_LAZY = {"load_annotation_anndata": "viscy_utils.evaluation.annotation"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
