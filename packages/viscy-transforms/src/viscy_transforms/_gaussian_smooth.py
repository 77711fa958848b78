"""Batched random Gaussian blur with per-sample sigmas, by separable depthwise convolution."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from viscy_transforms._batched_dict import BatchedRandDictTransform
from viscy_transforms._checks import as_range, check_ndim
from viscy_transforms._random import BatchRandomizable
from viscy_transforms._selection import merge_selected

__all__ = [
    "BatchedRandGaussianSmooth",
    "BatchedRandGaussianSmoothd",
    "filter3d_separable",
    "gaussian_kernel1d",
]

BORDER_TYPES = ("constant", "reflect", "replicate", "circular")


def gaussian_kernel1d(sigma: torch.Tensor, tail: int) -> torch.Tensor:
    """Erf-discretised Gaussian kernels (MONAI ``approx="erf"``), one row per sigma.

    Parameters
    ----------
    sigma : torch.Tensor
        Standard deviations, shape ``(B,)``; 0 gives the identity (a delta kernel).
    tail : int
        Half length; the kernels have ``2 * tail + 1`` taps and sum to 1.

    Returns
    -------
    torch.Tensor
        Kernels of shape ``(B, 2 * tail + 1)`` on ``sigma``'s device.
    """
    x = torch.arange(-tail, tail + 1, device=sigma.device, dtype=torch.float64)
    t = 0.70710678 / sigma.to(torch.float64).abs().unsqueeze(1)
    kernel = 0.5 * (torch.erf(t * (x + 0.5)) - torch.erf(t * (x - 0.5)))
    kernel = kernel.clamp_min(0)
    return (kernel / kernel.sum(dim=1, keepdim=True)).to(sigma.dtype)


def kernel_tail(sigma: float, truncated: float) -> int:
    """Half length of the kernel for ``sigma`` truncated at ``truncated`` standard deviations (as MONAI)."""
    return int(max(float(sigma) * truncated, 0.5) + 0.5)


def _filter_along(x: torch.Tensor, kernel: torch.Tensor, dim: int, border_type: str) -> torch.Tensor:
    b, c, z, y, w = x.shape
    if kernel.ndim == 1:
        kernel = kernel.expand(b, -1)
    taps = kernel.shape[-1]
    if kernel.shape[0] != b or taps % 2 == 0:
        raise ValueError(f"kernel for dim {dim} must have shape (B={b}, odd k) or (odd k,), got {tuple(kernel.shape)}.")
    # A depthwise 2-D convolution with a (k, 1) or (1, k) kernel over a view of the batch: Z filters the
    # (Z, Y * X) planes of every sample-channel, Y and X the (Y, X) slices. Each of the B * C (* Z) groups
    # gets its sample's kernel; 2-D depthwise convolution is much faster than 3-D on CPU.
    view = (1, b * c, z, y * w) if dim == 2 else (1, b * c * z, y, w)
    repeats = c if dim == 2 else c * z
    along_rows = dim != 4
    weight_shape = (view[1], 1, taps, 1) if along_rows else (view[1], 1, 1, taps)
    weight = kernel.to(device=x.device, dtype=x.dtype).repeat_interleave(repeats, dim=0).reshape(weight_shape)
    half = taps // 2
    grouped = x.reshape(view)
    if border_type == "constant":
        padding = (half, 0) if along_rows else (0, half)
    else:
        grouped = F.pad(grouped, (0, 0, half, half) if along_rows else (half, half, 0, 0), mode=border_type)
        padding = (0, 0)
    return F.conv2d(grouped, weight, padding=padding, groups=view[1]).reshape(x.shape)


def filter3d_separable(
    input: torch.Tensor,
    kernel_z: torch.Tensor | None,
    kernel_y: torch.Tensor | None,
    kernel_x: torch.Tensor | None,
    border_type: str = "reflect",
) -> torch.Tensor:
    """Filter a ``(B, C, Z, Y, X)`` batch with one 1-D kernel per spatial axis and per sample.

    Parameters
    ----------
    input : torch.Tensor
        Batch of shape ``(B, C, Z, Y, X)``.
    kernel_z, kernel_y, kernel_x : torch.Tensor or None
        Kernels of shape ``(B, k)`` (one per sample) or ``(k,)`` (shared), ``k`` odd, applied as a
        correlation along Z, Y and X respectively; ``None`` skips that axis.
    border_type : str
        Padding: ``"constant"`` (zeros), ``"reflect"``, ``"replicate"`` or ``"circular"``.

    Returns
    -------
    torch.Tensor
        Filtered batch, same shape, dtype and device as ``input``.
    """
    check_ndim(input, (5,), "filter3d_separable")
    if border_type not in BORDER_TYPES:
        raise ValueError(f"border_type must be one of {BORDER_TYPES}, got {border_type!r}.")
    out = input
    for dim, kernel in ((2, kernel_z), (3, kernel_y), (4, kernel_x)):
        if kernel is not None:
            out = _filter_along(out, kernel, dim, border_type)
    return out


class BatchedRandGaussianSmooth(BatchRandomizable):
    """Blur each selected sample of a ``(B, C, Z, Y, X)`` batch with its own Gaussian sigmas.

    Parameters
    ----------
    sigma_x, sigma_y, sigma_z : float or tuple of float
        Standard deviation (voxels) along X (last axis), Y and Z. A scalar is a fixed value; a
        ``(min, max)`` pair is drawn uniformly per selected sample. 0 disables blurring along that axis.
    truncated : float
        Kernel half length in standard deviations (MONAI convention), sized for the largest possible sigma.
    prob : float
        Per-sample probability of blurring.
    border_type : str
        Padding: ``"constant"`` (zeros, as MONAI), ``"reflect"``, ``"replicate"`` or ``"circular"``.
    """

    def __init__(
        self,
        sigma_x: float | tuple[float, float] = (1.0, 3.0),
        sigma_y: float | tuple[float, float] = (1.0, 3.0),
        sigma_z: float | tuple[float, float] = (1.0, 3.0),
        truncated: float = 4.0,
        prob: float = 0.5,
        border_type: str = "constant",
    ) -> None:
        super().__init__(prob)
        self.sigma_x = as_range(sigma_x, "sigma_x", symmetric_scalar=False)
        self.sigma_y = as_range(sigma_y, "sigma_y", symmetric_scalar=False)
        self.sigma_z = as_range(sigma_z, "sigma_z", symmetric_scalar=False)
        for name, (low, _) in (("sigma_x", self.sigma_x), ("sigma_y", self.sigma_y), ("sigma_z", self.sigma_z)):
            if low < 0:
                raise ValueError(f"{name} must be >= 0 (voxels), got {getattr(self, name)}.")
        if truncated <= 0:
            raise ValueError(f"truncated must be > 0, got {truncated!r}.")
        if border_type not in BORDER_TYPES:
            raise ValueError(f"border_type must be one of {BORDER_TYPES}, got {border_type!r}.")
        self.truncated = truncated
        self.border_type = border_type
        self._mask: torch.Tensor | None = None
        self._sigma: torch.Tensor | None = None

    def randomize(self, data: torch.Tensor) -> None:
        """Draw per-sample decisions and sigmas ``(B, 3)`` in Z, Y, X order for the batch ``data``."""
        n, device = data.shape[0], data.device
        self._mask = self._coin(n, device)
        self._sigma = torch.stack(
            [self._uniform(*rng, (n,), device) for rng in (self.sigma_z, self.sigma_y, self.sigma_x)], dim=1
        )

    def __call__(self, img: torch.Tensor, randomize: bool = True) -> torch.Tensor:
        check_ndim(img, (5,), type(self).__name__)
        if randomize:
            self.randomize(img)
        if self._mask is None or self._mask.shape[0] != img.shape[0]:
            raise RuntimeError(f"{type(self).__name__}: no parameters drawn for a batch of {img.shape[0]}.")
        selected = self._mask.nonzero().squeeze(1)
        if selected.numel() == 0:
            return img.clone()
        sigma = self._sigma[selected]
        kernels = []
        for axis, (_, high) in enumerate((self.sigma_z, self.sigma_y, self.sigma_x)):
            kernels.append(None if high == 0 else gaussian_kernel1d(sigma[:, axis], kernel_tail(high, self.truncated)))
        src = img if selected.numel() == img.shape[0] else img[selected]
        return merge_selected(img, selected, filter3d_separable(src, *kernels, border_type=self.border_type))


class BatchedRandGaussianSmoothd(BatchedRandDictTransform):
    """Dictionary version of :class:`BatchedRandGaussianSmooth`; all keys share each sample's sigmas.

    Parameters
    ----------
    keys : str or sequence of str
        Keys of the ``(B, C, Z, Y, X)`` tensors to blur.
    sigma_x, sigma_y, sigma_z, truncated, prob, border_type
        See :class:`BatchedRandGaussianSmooth` (``sigma_x`` is the X axis).
    allow_missing_keys : bool
        Skip keys absent from the dict instead of raising ``KeyError``.
    """

    def __init__(
        self,
        keys: Sequence[str] | str,
        sigma_x: float | tuple[float, float] = (1.0, 3.0),
        sigma_y: float | tuple[float, float] = (1.0, 3.0),
        sigma_z: float | tuple[float, float] = (1.0, 3.0),
        truncated: float = 4.0,
        prob: float = 0.5,
        border_type: str = "constant",
        allow_missing_keys: bool = False,
    ) -> None:
        transform = BatchedRandGaussianSmooth(sigma_x, sigma_y, sigma_z, truncated, prob, border_type)
        super().__init__(keys, transform, allow_missing_keys)
