"""Batched random intensity offset (histogram shift)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import torch
from monai.transforms import MapTransform

from viscy_transforms._checks import as_range, batch_view, check_ndim, check_same_batch
from viscy_transforms._random import BatchRandomizable

__all__ = ["BatchedRandHistogramShiftd"]


class BatchedRandHistogramShiftd(MapTransform, BatchRandomizable):
    """Add a random constant offset ``s ~ U(shift_range)`` to each selected sample.

    Each sample has its own Bernoulli(``prob``) decision and offset; every key receives the same ones.

    Parameters
    ----------
    keys : str or sequence of str
        Keys of the ``(B, C, Z, Y, X)`` tensors to shift.
    shift_range : float or tuple of float
        ``(min, max)`` offset range in intensity units; a scalar ``s`` means ``(-|s|, |s|)``.
    prob : float
        Per-sample probability of shifting.
    allow_missing_keys : bool
        Skip keys absent from the dict instead of raising ``KeyError``.
    """

    def __init__(
        self,
        keys: Sequence[str] | str,
        shift_range: float | tuple[float, float] = (-0.1, 0.1),
        prob: float = 0.1,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        BatchRandomizable.__init__(self, prob)
        self.shift_range = as_range(shift_range, "shift_range")
        self._shift: torch.Tensor | None = None

    def randomize(self, data: torch.Tensor) -> None:
        """Draw the per-sample offsets (0 where not selected) for the batch ``data``."""
        n, device = data.shape[0], data.device
        mask = self._coin(n, device)
        shift = self._uniform(*self.shift_range, (n,), device)
        self._shift = torch.where(mask, shift, torch.zeros_like(shift))

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        keys = list(self.key_iterator(d))
        if not keys:
            return d
        check_same_batch(d, keys, type(self).__name__)
        for key in keys:
            check_ndim(d[key], (5,), f"{type(self).__name__}[{key!r}]")
        self.randomize(d[keys[0]])
        for key in keys:
            img = d[key]
            d[key] = (img + batch_view(self._shift.to(img.dtype), img.ndim)).to(img.dtype)
        return d
