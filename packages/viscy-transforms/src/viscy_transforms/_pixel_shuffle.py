"""Batched random local pixel shuffling inside small cubic patches."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import torch
from monai.transforms import MapTransform

from viscy_transforms._checks import batch_view, check_aligned_volumes
from viscy_transforms._random import BatchRandomizable, check_prob

__all__ = ["BatchedRandLocalPixelShufflingd"]


class BatchedRandLocalPixelShufflingd(MapTransform, BatchRandomizable):
    """Randomly permute voxels inside small cubic patches of each selected sample.

    For a selected sample, ``int(shuffle_prob * Z * Y * X / patch_size**3)`` patches are picked among the
    non-overlapping cells of a ``patch_size`` grid (with a random per-sample grid offset), and the voxels of each
    patch are permuted, the same permutation for all channels. Because patches never overlap the result is a
    permutation of each sample's voxels. All keys receive the same patches and permutations.

    Parameters
    ----------
    keys : str or sequence of str
        Keys of the ``(B, C, Z, Y, X)`` tensors to shuffle.
    patch_size : int
        Edge length of the cubic patches (clipped to each axis' size).
    shuffle_prob : float
        Fraction of the volume covered by shuffled patches, in [0, 1].
    prob : float
        Per-sample probability of shuffling.
    allow_missing_keys : bool
        Skip keys absent from the dict instead of raising ``KeyError``.
    """

    def __init__(
        self,
        keys: Sequence[str] | str,
        patch_size: int = 3,
        shuffle_prob: float = 0.1,
        prob: float = 0.1,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        BatchRandomizable.__init__(self, prob)
        if isinstance(patch_size, bool) or not isinstance(patch_size, int) or patch_size < 1:
            raise ValueError(f"patch_size must be a positive int, got {patch_size!r}.")
        check_prob(shuffle_prob, "shuffle_prob")
        self.patch_size = patch_size
        self.shuffle_prob = shuffle_prob
        self._src: torch.Tensor | None = None
        self._dst: torch.Tensor | None = None

    def randomize(self, data: torch.Tensor) -> None:
        """Draw per-sample patches and permutations as flat source and destination voxel indices."""
        b, _, *spatial = data.shape
        device = data.device
        patch = [min(self.patch_size, s) for s in spatial]
        grid = [s // p for s, p in zip(spatial, patch)]
        n_cells = grid[0] * grid[1] * grid[2]
        voxels_per_patch = patch[0] * patch[1] * patch[2]
        n_patches = min(int(self.shuffle_prob * spatial[0] * spatial[1] * spatial[2] / voxels_per_patch), n_cells)
        mask = self._coin(b, device)
        if n_patches == 0:
            self._src = self._dst = torch.zeros(b, 0, dtype=torch.long, device=device)
            return
        cells = self._rand((b, n_cells), device).argsort(dim=1)[:, :n_patches]  # (B, n)
        cell_zyx = (cells // (grid[1] * grid[2]), (cells // grid[2]) % grid[1], cells % grid[2])
        offsets = [self._randint(0, s - g * p + 1, (b, 1), device) for s, g, p in zip(spatial, grid, patch)]
        local = torch.arange(voxels_per_patch, device=device)
        perm = self._rand((b, n_patches, voxels_per_patch), device).argsort(dim=2)
        perm = torch.where(batch_view(mask, 3), perm, local)

        def flat(local_index: torch.Tensor) -> torch.Tensor:
            local_zyx = (
                local_index // (patch[1] * patch[2]),
                (local_index // patch[2]) % patch[1],
                local_index % patch[2],
            )
            idx = torch.zeros_like(local_index)
            for axis in range(3):
                coord = offsets[axis].unsqueeze(2) + cell_zyx[axis].unsqueeze(2) * patch[axis] + local_zyx[axis]
                idx = idx * spatial[axis] + coord
            return idx.reshape(b, -1)

        self._dst = flat(local.expand(b, n_patches, -1))
        self._src = flat(perm)

    def _shuffle(self, img: torch.Tensor) -> torch.Tensor:
        b, c = img.shape[:2]
        flat = img.reshape(b, c, -1)
        src = self._src.unsqueeze(1).expand(b, c, -1)
        dst = self._dst.unsqueeze(1).expand(b, c, -1)
        return flat.clone().scatter_(2, dst, flat.gather(2, src)).reshape(img.shape)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        keys = list(self.key_iterator(d))
        if not keys:
            return d
        check_aligned_volumes(d, keys, type(self).__name__)
        self.randomize(d[keys[0]])
        for key in keys:
            d[key] = self._shuffle(d[key])
        return d
