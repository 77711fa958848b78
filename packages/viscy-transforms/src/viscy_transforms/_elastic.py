"""Batched random 3-D elastic deformation with Gaussian-smoothed displacement fields."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import torch
import torch.nn.functional as F
from monai.transforms import MapTransform
from monai.utils import fall_back_tuple

from viscy_transforms._checks import as_range, batch_view, check_aligned_volumes
from viscy_transforms._gaussian_smooth import filter3d_separable, gaussian_kernel1d, kernel_tail
from viscy_transforms._random import BatchRandomizable
from viscy_transforms._selection import merge_selected

__all__ = ["BatchedRand3DElasticd"]

MODES = ("bilinear", "nearest")
PADDING_MODES = ("zeros", "border", "reflection")


class BatchedRand3DElasticd(MapTransform, BatchRandomizable):
    """Random elastic deformation of ``(B, C, Z, Y, X)`` batches, one field per sample shared by all keys.

    For each selected sample a standard-normal displacement field (3 components) is smoothed with a Gaussian of
    standard deviation ``sigma ~ U(sigma_range)`` voxels, rescaled to unit root-mean-square, multiplied by
    ``magnitude ~ U(magnitude_range)`` (so the RMS displacement is ``magnitude`` voxels) and added to the
    identity sampling grid. Each sample fires with probability ``prob`` (a single gate).

    Parameters
    ----------
    keys : str or sequence of str
        Keys to deform (same batch size and spatial shape).
    sigma_range : tuple of float
        ``(min, max)`` smoothing standard deviation in voxels.
    magnitude_range : tuple of float
        ``(min, max)`` displacement magnitude in voxels.
    spatial_size : int or sequence of int or None
        Output spatial size (Z, Y, X), centred on the input; ``None`` or entries <= 0 keep the input size.
    prob : float
        Per-sample probability of deforming.
    mode : str
        Interpolation, ``"bilinear"`` or ``"nearest"``.
    padding_mode : str
        ``"zeros"``, ``"border"`` or ``"reflection"`` for points sampled outside the input.
    allow_missing_keys : bool
        Skip keys absent from the dict instead of raising ``KeyError``.
    """

    def __init__(
        self,
        keys: Sequence[str] | str,
        sigma_range: tuple[float, float],
        magnitude_range: tuple[float, float],
        spatial_size: int | Sequence[int] | None = None,
        prob: float = 0.1,
        mode: str = "bilinear",
        padding_mode: str = "reflection",
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        BatchRandomizable.__init__(self, prob)
        self.sigma_range = as_range(sigma_range, "sigma_range", symmetric_scalar=False)
        self.magnitude_range = as_range(magnitude_range, "magnitude_range", symmetric_scalar=False)
        if self.sigma_range[0] < 0:
            raise ValueError(f"sigma_range must be >= 0 (voxels), got {sigma_range!r}.")
        if self.magnitude_range[0] < 0:
            raise ValueError(f"magnitude_range must be >= 0 (voxels), got {magnitude_range!r}.")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}.")
        if padding_mode not in PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}.")
        if spatial_size is not None and len(fall_back_tuple(spatial_size, (1, 1, 1))) != 3:
            raise ValueError(f"spatial_size must be an int or 3 ints (Z, Y, X), got {spatial_size!r}.")
        self.spatial_size = spatial_size
        self.mode = mode
        self.padding_mode = padding_mode
        self._grid: torch.Tensor | None = None
        self._rows: torch.Tensor | None = None

    def _output_size(self, spatial: Sequence[int]) -> tuple[int, ...]:
        return tuple(spatial) if self.spatial_size is None else tuple(fall_back_tuple(self.spatial_size, spatial))

    def randomize(self, data: torch.Tensor) -> None:
        """Draw per-sample decisions and sampling grids for the batch ``data``."""
        n, device = data.shape[0], data.device
        spatial = tuple(data.shape[2:])
        out_size = self._output_size(spatial)
        mask = self._coin(n, device)
        # Unselected samples need resampling only when the output size differs from the input's.
        rows = torch.arange(n, device=device) if out_size != spatial else mask.nonzero().squeeze(1)
        m = rows.numel()
        self._rows = rows
        if m == 0:
            self._grid = None
            return
        sigma = self._uniform(*self.sigma_range, (m,), device)
        magnitude = self._uniform(*self.magnitude_range, (m,), device) * mask[rows]
        field = self._randn((m, 3, *out_size), device)
        kernel = gaussian_kernel1d(sigma, kernel_tail(self.sigma_range[1], 3.0))
        field = filter3d_separable(field, kernel, kernel, kernel, border_type="replicate")
        # Unit RMS per sample, so magnitude is the RMS displacement in voxels whatever the smoothing.
        field = field / (field.square().mean(dim=(1, 2, 3, 4), keepdim=True).sqrt() + 1e-12)
        field = field * batch_view(magnitude, 5)
        axes = [torch.arange(s, device=device, dtype=torch.float32) - (s - 1) / 2 for s in out_size]
        identity = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=0)  # (3, Zo, Yo, Xo), centred voxels
        coords = identity + field
        scale = torch.tensor([2.0 / max(2, s) for s in spatial], device=device).view(1, 3, 1, 1, 1)
        self._grid = (coords * scale).flip(1).permute(0, 2, 3, 4, 1).contiguous()  # (m, Zo, Yo, Xo, XYZ)
        self._spatial = spatial

    def _apply(self, img: torch.Tensor) -> torch.Tensor:
        if self._grid is None:
            return img
        work = img.dtype if img.is_floating_point() else torch.float32
        warped = F.grid_sample(
            img[self._rows].to(work),
            self._grid.to(work),
            mode=self.mode,
            padding_mode=self.padding_mode,
            align_corners=False,
        ).to(img.dtype)
        return merge_selected(img, self._rows, warped)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        keys = list(self.key_iterator(d))
        if not keys:
            return d
        check_aligned_volumes(d, keys, type(self).__name__)
        self.randomize(d[keys[0]])
        with torch.no_grad():
            for key in keys:
                d[key] = self._apply(d[key])
        return d
