"""The unified, lineage-aware index of cell observations of several experiments.

:class:`MultiExperimentIndex` is the public entry point. Its parts live in modules named for their
concern: :mod:`~dynaclr.index.lineage` (tracks, parents, roots, subtrees),
:mod:`~dynaclr.index.positives` (candidate positives and their sampling),
:mod:`~dynaclr.index.anchors` (which observations are valid anchors) and
:mod:`~dynaclr.index.cache` (the parquet cache of a built index).
"""

from dynaclr.index.lineage import resolve_roots as _resolve_roots  # noqa: F401  (kept for existing imports)
from dynaclr.index.multi_experiment import MultiExperimentIndex

__all__ = ["MultiExperimentIndex"]
