"""Lineage of tracked cells: tracks, their parent links, roots and subtrees, all as integer arrays.

A *track* is one ``(FOV, track_id)``; its parent is the track named by ``parent_track_id`` in the same
FOV. Tracks and their links form a forest; everything here is vectorised over all tracks at once.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import numpy as np
import pandas as pd

__all__ = ["Forest", "Subtrees", "TrackLinks", "link_tracks", "resolve_roots", "subtrees"]

_logger = logging.getLogger(__name__)


class Forest(NamedTuple):
    """Root of every track, and the parent links with any cycle cut."""

    root: np.ndarray
    parent: np.ndarray


class TrackLinks(NamedTuple):
    """Tracks of a table of observations and their lineage.

    Attributes
    ----------
    track_of_row : numpy.ndarray
        Track code (0..n_tracks-1, in order of first appearance) of every row.
    first_row : numpy.ndarray
        First row of every track.
    parent : numpy.ndarray
        Parent track of every track, -1 for roots (cycles cut).
    root : numpy.ndarray
        Root track of every track.
    """

    track_of_row: np.ndarray
    first_row: np.ndarray
    parent: np.ndarray
    root: np.ndarray


class Subtrees(NamedTuple):
    """Every track's subtree (itself and all its descendants) in compressed rows.

    The subtree of track ``k`` is ``members[start[k]:start[k + 1]]``.
    """

    start: np.ndarray
    members: np.ndarray

    def sizes(self, tracks: np.ndarray) -> np.ndarray:
        """Return the number of tracks in the subtree of each of ``tracks``."""
        return self.start[tracks + 1] - self.start[tracks]


def resolve_roots(parent: np.ndarray) -> Forest:
    """Root of every node of a forest given as a parent array (-1 for roots).

    Pointer jumping, O(n log depth). Nodes on a parent cycle never reach a root: they, and the
    nodes hanging below them, become roots (with a warning), and their parent link is cut.
    """
    n = parent.size
    ancestor = np.where(parent >= 0, parent, np.arange(n))
    for _ in range(int(np.ceil(np.log2(max(n, 2)))) + 2):
        jumped = ancestor[ancestor]
        if np.array_equal(jumped, ancestor):
            break
        ancestor = jumped
    unresolved = parent[ancestor] >= 0  # a true root has no parent; anything else sits on a cycle
    if unresolved.any():
        _logger.warning("%d tracks are on or below parent cycles; they are treated as roots", int(unresolved.sum()))
        ancestor[unresolved] = np.flatnonzero(unresolved)
        parent = np.where(unresolved, -1, parent)
    return Forest(ancestor, parent)


def link_tracks(fov_of_row: np.ndarray, track_id: np.ndarray, parent_track_id: np.ndarray | None) -> TrackLinks:
    """Find the tracks of a table and link each to its parent in the same FOV.

    Parameters
    ----------
    fov_of_row : numpy.ndarray
        FOV code of every row (int64).
    track_id : numpy.ndarray
        ``track_id`` of every row (int64).
    parent_track_id : numpy.ndarray or None
        ``parent_track_id`` of every row as float (NaN: none); only each track's first row is read.
        A parent that is not a track of the same FOV, or the track itself, makes the track a root.

    Returns
    -------
    TrackLinks
    """
    track_key = (fov_of_row << 32) | (track_id & 0xFFFFFFFF)
    track_of_row, unique_keys = pd.factorize(track_key, sort=False)
    unique_keys = np.asarray(unique_keys, dtype=np.int64)
    n_tracks = unique_keys.size
    first_row = np.full(n_tracks, -1, dtype=np.int64)
    first_row[track_of_row[::-1]] = np.arange(track_of_row.size - 1, -1, -1)
    parent = np.full(n_tracks, -1, dtype=np.int64)
    if parent_track_id is not None and n_tracks:
        parent_id = parent_track_id[first_row]
        named = np.isfinite(parent_id)
        parent_key = (fov_of_row[first_row][named] << 32) | (parent_id[named].astype(np.int64) & 0xFFFFFFFF)
        found = np.full(n_tracks, -1, dtype=np.int64)
        found[np.flatnonzero(named)] = pd.Index(unique_keys).get_indexer(parent_key)
        parent = np.where(found == np.arange(n_tracks), -1, found)
    root, parent = resolve_roots(parent)
    return TrackLinks(np.asarray(track_of_row, dtype=np.int64), first_row, parent, root)


def subtrees(parent: np.ndarray) -> Subtrees:
    """Subtree of every track of a forest (cycle-free parent array, -1 for roots)."""
    n_tracks = parent.size
    node = np.arange(n_tracks)
    ancestors, descendants = [node], [node]
    current = parent.copy()
    while True:  # one step up per round, for every track that still has an ancestor
        has = np.flatnonzero(current >= 0)
        if has.size == 0:
            break
        ancestors.append(current[has])
        descendants.append(node[has])
        node, current = node[has], parent[current[has]]
    ancestor, descendant = np.concatenate(ancestors), np.concatenate(descendants)
    order = np.argsort(ancestor, kind="stable")
    start = np.concatenate([[0], np.cumsum(np.bincount(ancestor, minlength=n_tracks))])
    return Subtrees(start, descendant[order])
