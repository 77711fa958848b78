"""Batched random flips with an independent decision per sample and axis."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from viscy_transforms._batched_dict import BatchedRandDictTransform
from viscy_transforms._checks import batch_view, check_ndim
from viscy_transforms._random import BatchRandomizable

__all__ = ["BatchedRandFlip", "BatchedRandFlipd"]


def _check_axes(spatial_axes: int | Sequence[int]) -> tuple[int, ...]:
    axes = (spatial_axes,) if isinstance(spatial_axes, int) else tuple(spatial_axes)
    if not axes or any(isinstance(a, bool) or not isinstance(a, int) or not 0 <= a <= 2 for a in axes):
        raise ValueError(f"spatial_axes must be an int or a sequence of ints in 0..2 (Z, Y, X), got {spatial_axes!r}.")
    if len(set(axes)) != len(axes):
        raise ValueError(f"spatial_axes must not repeat an axis, got {spatial_axes!r}.")
    return axes


class BatchedRandFlip(BatchRandomizable):
    """Flip each sample along each of ``spatial_axes`` with an independent probability ``prob``.

    Parameters
    ----------
    spatial_axes : int or sequence of int
        Spatial axes: 0 = Z, 1 = Y, 2 = X for ``(B, C, Z, Y, X)``; 0 = Y, 1 = X for ``(B, C, Y, X)``.
    prob : float
        Probability of flipping, drawn per (sample, axis).
    """

    def __init__(self, spatial_axes: int | Sequence[int], prob: float = 0.5) -> None:
        super().__init__(prob)
        self.spatial_axes = _check_axes(spatial_axes)
        self._flips: torch.Tensor | None = None

    def randomize(self, data: torch.Tensor) -> None:
        """Draw the ``(B, n_axes)`` flip decisions for the batch ``data``."""
        self._flips = self._rand((data.shape[0], len(self.spatial_axes)), data.device) < self.prob

    def __call__(self, img: torch.Tensor, randomize: bool = True) -> torch.Tensor:
        check_ndim(img, (4, 5), type(self).__name__)
        if max(self.spatial_axes) >= img.ndim - 2:
            raise ValueError(
                f"{type(self).__name__}: spatial_axes {self.spatial_axes} out of range for shape {tuple(img.shape)}."
            )
        if randomize:
            self.randomize(img)
        if self._flips is None or self._flips.shape[0] != img.shape[0]:
            raise RuntimeError(f"{type(self).__name__}: no parameters drawn for a batch of {img.shape[0]}.")
        out = img
        for i, axis in enumerate(self.spatial_axes):
            out = torch.where(batch_view(self._flips[:, i], img.ndim), out.flip(axis + 2), out)
        return out


class BatchedRandFlipd(BatchedRandDictTransform):
    """Dictionary version of :class:`BatchedRandFlip`; all keys share each sample's flips.

    Parameters
    ----------
    keys : str or sequence of str
        Keys to flip.
    spatial_axes : int or sequence of int
        See :class:`BatchedRandFlip`.
    prob : float
        Probability of flipping, drawn per (sample, axis).
    allow_missing_keys : bool
        Skip keys absent from the dict instead of raising ``KeyError``.
    """

    def __init__(
        self,
        keys: Sequence[str] | str,
        spatial_axes: int | Sequence[int] = (0, 1, 2),
        prob: float = 0.5,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, BatchedRandFlip(spatial_axes, prob), allow_missing_keys)
