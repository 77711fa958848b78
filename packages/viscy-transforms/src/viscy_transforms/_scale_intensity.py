"""Batched random intensity scaling ``x * (1 + f)``, a per-sample mirror of MONAI ``RandScaleIntensity``."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from viscy_transforms._batched_dict import BatchedRandDictTransform
from viscy_transforms._checks import as_range, batch_view
from viscy_transforms._random import BatchRandomizable

__all__ = ["BatchedRandScaleIntensity", "BatchedRandScaleIntensityd"]


class BatchedRandScaleIntensity(BatchRandomizable):
    """Multiply each selected sample by ``1 + f``.

    Parameters
    ----------
    factors : float or tuple of float
        A scalar ``s`` draws ``f ~ U(-|s|, |s|)``; a pair draws ``f ~ U(min, max)``.
    prob : float
        Per-sample probability of scaling; unselected samples keep their values (``f = 0``).
    channel_wise : bool
        Draw one factor per (sample, channel) instead of per sample.
    """

    def __init__(self, factors: float | tuple[float, float] = 0.1, prob: float = 0.1, channel_wise: bool = False):
        super().__init__(prob)
        self.factors = as_range(factors, "factors")
        self.channel_wise = channel_wise
        self._factor: torch.Tensor | None = None

    def randomize(self, data: torch.Tensor) -> None:
        """Draw the per-sample (or per sample-channel) factors for the batch ``data``, 0 where not selected."""
        n, device = data.shape[0], data.device
        mask = self._coin(n, device)
        shape = (n, data.shape[1]) if self.channel_wise and data.ndim > 2 else (n,)
        factor = self._uniform(*self.factors, shape, device)
        self._factor = torch.where(batch_view(mask, len(shape)), factor, torch.zeros_like(factor))

    def __call__(self, img: torch.Tensor, randomize: bool = True) -> torch.Tensor:
        if not isinstance(img, torch.Tensor) or img.ndim < 2:
            raise ValueError(f"{type(self).__name__} expects a (B, C, ...) tensor, got {getattr(img, 'shape', img)}.")
        if randomize:
            self.randomize(img)
        if self._factor is None or self._factor.shape[0] != img.shape[0]:
            raise RuntimeError(f"{type(self).__name__}: no parameters drawn for a batch of {img.shape[0]}.")
        scale = batch_view(1.0 + self._factor, img.ndim)
        return (img * scale).to(img.dtype)


class BatchedRandScaleIntensityd(BatchedRandDictTransform):
    """Dictionary version of :class:`BatchedRandScaleIntensity`; all keys share each sample's factor.

    Parameters
    ----------
    keys : str or sequence of str
        Keys to scale.
    factors, prob, channel_wise
        See :class:`BatchedRandScaleIntensity`.
    allow_missing_keys : bool
        Skip keys absent from the dict instead of raising ``KeyError``.
    """

    def __init__(
        self,
        keys: Sequence[str] | str,
        factors: float | tuple[float, float] = 0.1,
        prob: float = 0.1,
        channel_wise: bool = False,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, BatchedRandScaleIntensity(factors, prob, channel_wise), allow_missing_keys)
