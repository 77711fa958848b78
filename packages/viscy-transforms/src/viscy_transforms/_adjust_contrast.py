"""Batched random gamma (contrast) adjustment, a per-sample mirror of MONAI ``RandAdjustContrast``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from viscy_transforms._batched_dict import BatchedRandDictTransform
from viscy_transforms._checks import as_range, batch_view, check_ndim
from viscy_transforms._random import BatchRandomizable
from viscy_transforms._selection import merge_selected

__all__ = ["BatchedRandAdjustContrast", "BatchedRandAdjustContrastd"]


def _gamma_range(gamma: float | Sequence[float]) -> tuple[float, float]:
    if isinstance(gamma, np.ndarray):
        gamma = gamma.tolist()
    low, high = as_range(gamma, "gamma", symmetric_scalar=False)
    if low <= 0:
        raise ValueError(f"gamma must be > 0 (a scalar or a (min, max) pair of positive numbers), got {gamma!r}.")
    return low, high


class BatchedRandAdjustContrast(BatchRandomizable):
    """Randomly gamma-adjust each sample of a ``(B, C, [Z,] Y, X)`` batch.

    Per selected sample ``x``: ``((x - min) / (range + 1e-7)) ** gamma * range + min``, with the sample's own
    min and range, exactly like MONAI ``AdjustContrast`` applied sample by sample.

    Parameters
    ----------
    gamma : float or tuple of float
        A scalar is the exact gamma (unlike MONAI, where it is the upper bound of a range); a
        ``(min, max)`` pair draws gamma uniformly per sample. Must be > 0.
    prob : float
        Per-sample probability of adjusting.
    invert_image : bool
        Negate before and after the gamma transform (adjusts the dark end).
    retain_stats : bool
        Restore each sample's mean and standard deviation afterwards.
    """

    def __init__(
        self,
        gamma: float | tuple[float, float] = (0.5, 4.5),
        prob: float = 0.1,
        invert_image: bool = False,
        retain_stats: bool = False,
    ) -> None:
        super().__init__(prob)
        self.gamma_range = _gamma_range(gamma)
        self.invert_image = invert_image
        self.retain_stats = retain_stats
        self._mask: torch.Tensor | None = None
        self._gamma: torch.Tensor | None = None

    def randomize(self, data: torch.Tensor) -> None:
        """Draw the per-sample decision and gamma for the batch ``data``."""
        n, device = data.shape[0], data.device
        self._mask = self._coin(n, device)
        self._gamma = self._uniform(*self.gamma_range, (n,), device)

    def __call__(self, img: torch.Tensor, randomize: bool = True) -> torch.Tensor:
        check_ndim(img, (4, 5), type(self).__name__)
        if randomize:
            self.randomize(img)
        if self._mask is None or self._mask.shape[0] != img.shape[0]:
            raise RuntimeError(f"{type(self).__name__}: no parameters drawn for a batch of {img.shape[0]}.")
        selected = self._mask.nonzero().squeeze(1)
        if selected.numel() == 0:
            return img.clone()
        # only the selected samples are adjusted; one temporary updated in place (fresh large buffers cost page faults)
        every = selected.numel() == img.shape[0]
        src = img if every else img[selected]
        x = -src if self.invert_image else src
        dims = tuple(range(1, img.ndim))
        gamma = batch_view(self._gamma[selected].to(img.dtype), img.ndim)
        if self.retain_stats:
            mean, std = x.mean(dim=dims, keepdim=True), x.std(dim=dims, keepdim=True)
        # (amin and amax are each a fast vectorised reduction; aminmax over a flattened view is slower on CPU)
        x_min = x.amin(dim=dims, keepdim=True)
        x_range = x.amax(dim=dims, keepdim=True) - x_min
        out = x - x_min
        denominator = x_range + 1e-7
        out = out.div_(denominator) if out.dtype == denominator.dtype else out / denominator
        out = out.pow_(gamma).mul_(x_range).add_(x_min)
        if self.retain_stats:
            out = out.sub_(out.mean(dim=dims, keepdim=True))
            out = out.div_(out.std(dim=dims, keepdim=True) + 1e-8).mul_(std).add_(mean)
        if self.invert_image:
            out = out.neg_()
        return merge_selected(img, selected, out)


class BatchedRandAdjustContrastd(BatchedRandDictTransform):
    """Dictionary version of :class:`BatchedRandAdjustContrast`; all keys share each sample's gamma.

    Parameters
    ----------
    keys : str or sequence of str
        Keys of the ``(B, C, [Z,] Y, X)`` tensors to adjust.
    gamma, prob, invert_image, retain_stats
        See :class:`BatchedRandAdjustContrast`.
    allow_missing_keys : bool
        Skip keys absent from the dict instead of raising ``KeyError``.
    """

    def __init__(
        self,
        keys: Sequence[str] | str,
        gamma: float | tuple[float, float] = (0.5, 4.5),
        prob: float = 0.1,
        invert_image: bool = False,
        retain_stats: bool = False,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, BatchedRandAdjustContrast(gamma, prob, invert_image, retain_stats), allow_missing_keys)
