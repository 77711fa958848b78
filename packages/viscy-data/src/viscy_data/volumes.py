"""Whole ``(C, Z, Y, X)`` volumes as dataset items, one per (FOV, timepoint).

What the whole-volume datasets share: ``CachedOmeZarrDataset`` (:mod:`viscy_data.gpu_aug`, volumes
cached in a mapping) and ``MmappedDataset`` (:mod:`viscy_data.mmap_cache`, volumes preprocessed into a
memory-mapped file). Volumes are read with iohub/zarr in DataLoader worker *processes* (patches cut
around cells are read by :mod:`viscy_data.patch_reader` instead).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import MutableMapping, Sequence
from typing import Any

import numpy as np
import torch
from iohub.ngff import Position
from torch import Tensor

from viscy_data._io import LazyPositions, channel_indices, fov_name
from viscy_data._utils import _ensure_channel_list

__all__ = ["FovTimepointItems", "VolumeCacheFactory", "read_volume", "split_positions"]


def read_volume(array: Any, t: int, channel_indices: Sequence[int]) -> Tensor:
    """Read ``(C, Z, Y, X)`` of timepoint ``t`` of a ``(T, C, Z, Y, X)`` array as float32.

    Reads the covering channel range with a slice and picks channels in numpy: a zarr orthogonal
    selection with a list of indices hangs in forked DataLoader workers (zarr 3), a slice does not.
    """
    lo, hi = min(channel_indices), max(channel_indices) + 1
    block = np.asarray(array[t, lo:hi])
    return torch.from_numpy(np.asarray(block[np.asarray(channel_indices) - lo], dtype=np.float32))


def split_positions(positions: Sequence[Position], split_ratio: float) -> tuple[list[Position], list[Position]]:
    """Shuffle FOVs and split them into training and validation FOVs.

    The shuffle is seeded from ``torch.initial_seed()`` (set by ``seed_everything``), never drawing
    from the global random generator.

    Raises
    ------
    ValueError
        If ``split_ratio`` is not in (0, 1) or leaves a split empty.
    """
    if not 0.0 < split_ratio < 1.0:
        raise ValueError(f"split_ratio must be in (0, 1), got {split_ratio}")
    generator = torch.Generator().manual_seed(torch.initial_seed())
    order = torch.randperm(len(positions), generator=generator).tolist()
    n_train = int(len(positions) * split_ratio)
    if n_train == 0 or n_train == len(positions):
        raise ValueError(
            f"split_ratio {split_ratio} of {len(positions)} FOVs leaves an empty training or validation set"
        )
    shuffled = [positions[i] for i in order]
    return shuffled[:n_train], shuffled[n_train:]


class VolumeCacheFactory:
    """Hands out one empty cache mapping per dataset.

    Without workers a plain dict is the fastest cache. With workers the cache must be shared, so a
    single ``multiprocessing.Manager`` is started on first use (not once per ``setup``) and shut
    down by :meth:`shutdown`. Each dataset gets its own mapping, so splits can never read each
    other's volumes.
    """

    def __init__(self) -> None:
        self._manager = None

    def new(self, shared: bool) -> MutableMapping:
        """Return an empty mapping: a ``dict``, or a ``Manager().dict()`` when ``shared`` (workers)."""
        if not shared:
            return {}
        if self._manager is None:
            self._manager = multiprocessing.Manager()
        return self._manager.dict()

    def shutdown(self) -> None:
        """Stop the manager's server process, if one was started."""
        if self._manager is not None:
            self._manager.shutdown()
            self._manager = None

    def __getstate__(self) -> dict:
        # a Manager owns a server process and cannot be pickled; a copy starts its own when needed
        return {"_manager": None}


class FovTimepointItems:
    """Base of datasets with one item per (FOV, timepoint), FOV by FOV, of whole channel volumes.

    Sets ``positions`` (reopened lazily in every process, see ``LazyPositions``), ``channel_names``,
    ``array_key``, the FOV names and the channel indices (resolved once, from the first FOV).

    Parameters
    ----------
    positions : sequence of iohub Position
        FOVs of one plate; items enumerate them in order, then time.
    channel_names : str or sequence of str
        Channels of each volume, in this order.
    array_key : str
        Image array inside each FOV (multiscale level).

    Raises
    ------
    ValueError
        Without FOVs, or for an unknown channel (naming it and the available ones).
    KeyError
        If a FOV has no array ``array_key``.
    """

    def __init__(self, positions: Sequence[Position], channel_names: str | Sequence[str], array_key: str) -> None:
        super().__init__()
        positions = list(positions)
        if not positions:
            raise ValueError(f"{type(self).__name__} needs at least one FOV")
        # zarr handles opened before a DataLoader forks hang in the workers: reopen per process
        self.positions = LazyPositions(positions)
        self.channel_names = _ensure_channel_list(channel_names)
        self.array_key = array_key
        self._fov_names = [fov_name(p) for p in positions]
        for position, name in zip(positions, self._fov_names):
            if array_key not in position.array_keys():
                raise KeyError(f"FOV '{name}' has no array '{array_key}'; arrays: {list(position.array_keys())}")
        self._channel_indices = channel_indices(positions[0], self.channel_names)
        self._offsets = np.concatenate([[0], np.cumsum([p[array_key].frames for p in positions], dtype=np.int64)])

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def _locate(self, index: int) -> tuple[int, int]:
        """Return ``(FOV, timepoint)`` of an item (negative indices count from the end)."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        index %= len(self)
        fov = int(np.searchsorted(self._offsets, index, side="right")) - 1
        return fov, index - int(self._offsets[fov])

    def _read_volume(self, fov: int, t: int) -> Tensor:
        """Read the ``(C, Z, Y, X)`` float32 volume of FOV ``fov`` at timepoint ``t``."""
        return read_volume(self.positions[fov][self.array_key], t, self._channel_indices)
