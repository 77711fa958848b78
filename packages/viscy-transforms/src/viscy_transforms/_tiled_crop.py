"""Deterministic tiling of a volume into non-overlapping crops (validation sampling)."""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Mapping, Sequence

import torch
from monai.transforms import MapTransform, MultiSampleTrait
from monai.utils import ensure_tuple_rep

__all__ = ["TiledSpatialCropSamplesd"]


class TiledSpatialCropSamplesd(MapTransform, MultiSampleTrait):
    """Cut the last three axes into a grid of ``roi_size`` tiles and return the first ``num_samples``.

    Tiles start at the origin (``floor(size / roi)`` per axis) and are taken in row-major order (X fastest).
    Each output dict holds the cropped ``keys`` and, if present, ``norm_meta``; other entries are dropped.

    Parameters
    ----------
    keys : str or sequence of str
        Keys to crop (same spatial shape).
    roi_size : int or sequence of int
        Tile size (Z, Y, X); an int applies to all three axes.
    num_samples : int
        Number of tiles to return; at most the number of tiles.
    """

    def __init__(self, keys: Sequence[str] | str, roi_size: int | Sequence[int], num_samples: int) -> None:
        super().__init__(keys, allow_missing_keys=False)
        self.roi_size = ensure_tuple_rep(roi_size, 3)
        if any(r <= 0 for r in self.roi_size):
            raise ValueError(f"roi_size must be positive, got {roi_size!r}.")
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples!r}.")
        self.num_samples = num_samples

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> list[dict[Hashable, torch.Tensor]]:
        keys = list(self.key_iterator(data))
        spatial = tuple(data[keys[0]].shape[-3:])
        grid = [s // r for s, r in zip(spatial, self.roi_size)]
        n_tiles = grid[0] * grid[1] * grid[2]
        if self.num_samples > n_tiles:
            raise ValueError(
                f"Number of samples {self.num_samples} should not exceed the number of tiles {n_tiles} "
                f"(spatial shape {spatial}, roi_size {self.roi_size})."
            )
        out = []
        for tile in itertools.islice(itertools.product(*(range(g) for g in grid)), self.num_samples):
            window = tuple(slice(t * r, (t + 1) * r) for t, r in zip(tile, self.roi_size))
            sample = {key: data[key][(..., *window)] for key in keys}
            if "norm_meta" in data:
                sample["norm_meta"] = data["norm_meta"]
            out.append(sample)
        return out
