"""Batched random sharpening with a 3-D Laplacian-style kernel."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import torch
import torch.nn.functional as F
from monai.transforms import MapTransform

from viscy_transforms._checks import as_range, batch_view, check_ndim, check_same_batch
from viscy_transforms._random import BatchRandomizable

__all__ = ["BatchedRandSharpend", "sharpen_kernel"]


def sharpen_kernel(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Build the 3x3x3 sharpening kernel: 7 at the centre, -1 on the six face neighbours (sums to 1)."""
    kernel = torch.zeros(3, 3, 3, device=device, dtype=dtype)
    kernel[1, 1, 1] = 7.0
    for z, y, x in ((0, 1, 1), (2, 1, 1), (1, 0, 1), (1, 2, 1), (1, 1, 0), (1, 1, 2)):
        kernel[z, y, x] = -1.0
    return kernel


class BatchedRandSharpend(MapTransform, BatchRandomizable):
    """Sharpen selected samples: ``(1 - a) * x + a * conv(x)`` with ``a ~ U(alpha_range)`` per sample.

    ``conv`` is a depthwise (per-channel) convolution with :func:`sharpen_kernel` and zero padding, so any
    number of channels works. Decisions and ``a`` are per sample and shared by all keys.

    Parameters
    ----------
    keys : str or sequence of str
        Keys of the ``(B, C, Z, Y, X)`` tensors to sharpen.
    alpha_range : tuple of float
        ``(min, max)`` blending weight of the sharpened image; a scalar is a fixed weight.
    prob : float
        Per-sample probability of sharpening.
    allow_missing_keys : bool
        Skip keys absent from the dict instead of raising ``KeyError``.
    """

    def __init__(
        self,
        keys: Sequence[str] | str,
        alpha_range: float | tuple[float, float] = (0.1, 0.5),
        prob: float = 0.1,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        BatchRandomizable.__init__(self, prob)
        self.alpha_range = as_range(alpha_range, "alpha_range", symmetric_scalar=False)
        self._alpha: torch.Tensor | None = None

    def randomize(self, data: torch.Tensor) -> None:
        """Draw per-sample blending weights (0 where not selected) for the batch ``data``."""
        n, device = data.shape[0], data.device
        mask = self._coin(n, device)
        alpha = self._uniform(*self.alpha_range, (n,), device)
        self._alpha = torch.where(mask, alpha, torch.zeros_like(alpha))

    def _sharpen(self, img: torch.Tensor) -> torch.Tensor:
        c = img.shape[1]
        weight = sharpen_kernel(img.device, img.dtype).expand(c, 1, 3, 3, 3)
        sharp = F.conv3d(img, weight, padding=1, groups=c)
        alpha = batch_view(self._alpha.to(img.dtype), img.ndim)
        out = (1 - alpha) * img + alpha * sharp
        return torch.where(alpha != 0, out, img)

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
            d[key] = self._sharpen(d[key])
        return d
