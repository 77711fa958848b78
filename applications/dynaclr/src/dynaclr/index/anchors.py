"""Anchor validity: an observation is a valid anchor when it has at least one positive."""

from __future__ import annotations

import numpy as np

from dynaclr.index.positives import PositiveSampler

__all__ = ["valid_anchor_rows"]

#: anchors checked per chunk: bounds the memory of the expanded (anchor, tau, track) arrays
CHUNK_ROWS = 200_000


def valid_anchor_rows(positives: PositiveSampler, n_rows: int) -> np.ndarray:
    """Rows (of the ``n_rows`` observations) that have a positive at some tau of their experiment's range.

    A row is valid when its own track or a descendant has an observation at ``t + tau`` for an integer
    ``tau != 0`` in the range. Checked in chunks of :data:`CHUNK_ROWS` rows.

    Returns
    -------
    numpy.ndarray
        Increasing row positions.
    """
    valid = np.zeros(n_rows, dtype=bool)
    for chunk in np.array_split(np.arange(n_rows), max(1, n_rows // CHUNK_ROWS)):
        valid[chunk] = positives.has_positive(chunk)
    return np.flatnonzero(valid)
