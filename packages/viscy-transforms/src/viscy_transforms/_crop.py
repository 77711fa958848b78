"""Batched centre and random spatial crops (one crop origin per sample)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import torch
from monai.transforms import CenterSpatialCrop, MapTransform, RandCropd, RandSpatialCrop, Transform
from monai.utils import fall_back_tuple

from viscy_transforms._checks import check_ndim, check_same_batch
from viscy_transforms._random import TorchRNGMixin

__all__ = [
    "BatchedCenterSpatialCrop",
    "BatchedCenterSpatialCropd",
    "BatchedRandSpatialCrop",
    "BatchedRandSpatialCropd",
    "crop_per_sample",
]


def crop_per_sample(img: torch.Tensor, starts: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Crop a window of ``size`` starting at ``starts[b]`` from every sample ``b`` in one gather.

    Parameters
    ----------
    img : torch.Tensor
        Batch ``(B, C, *spatial)``.
    starts : torch.Tensor
        Integer origins ``(B, n_spatial)``; windows must lie inside the image.
    size : sequence of int
        Window size per spatial axis.

    Returns
    -------
    torch.Tensor
        Contiguous ``(B, C, *size)`` tensor.
    """
    b, nd = img.shape[0], len(size)
    device = img.device
    starts = starts.to(device)
    index = [torch.arange(b, device=device).view(b, *([1] * nd))]
    for axis, s in enumerate(size):
        shape = [b] + [1] * nd
        shape[axis + 1] = s
        index.append((starts[:, axis : axis + 1] + torch.arange(s, device=device)).view(shape))
    return img.movedim(1, -1)[tuple(index)].movedim(-1, 1).contiguous()


class BatchedCenterSpatialCrop(Transform):
    """MONAI ``CenterSpatialCrop`` applied to every sample of a ``(B, C, [Z,] Y, X)`` batch (returns a view).

    Parameters
    ----------
    roi_size : int or sequence of int
        Crop size per spatial axis; entries <= 0 or larger than the image keep the full size.
    """

    def __init__(self, roi_size: int | Sequence[int]) -> None:
        self.roi_size = roi_size
        self._cropper = CenterSpatialCrop(roi_size)

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        check_ndim(img, (4, 5), type(self).__name__)
        slices = self._cropper.compute_slices(img.shape[2:])
        return img[(slice(None), slice(None), *slices)]


class BatchedCenterSpatialCropd(MapTransform):
    """Dictionary version of :class:`BatchedCenterSpatialCrop`.

    Parameters
    ----------
    keys : str or sequence of str
        Keys to crop.
    roi_size : int or sequence of int
        See :class:`BatchedCenterSpatialCrop`.
    allow_missing_keys : bool
        Skip keys absent from the dict instead of raising ``KeyError``.
    """

    def __init__(self, keys: Sequence[str] | str, roi_size: int | Sequence[int], allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.cropper = BatchedCenterSpatialCrop(roi_size)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.cropper(d[key])
        return d


class BatchedRandSpatialCrop(TorchRNGMixin, RandSpatialCrop):
    """Crop a window of ``roi_size`` at a random origin drawn independently for each sample.

    Works on ``(B, C, Y, X)`` and ``(B, C, Z, Y, X)``; origins are drawn with torch (see
    :class:`~viscy_transforms._random.TorchRNGMixin` for seeding).

    Parameters
    ----------
    roi_size : int or sequence of int
        Window size per spatial axis (an int applies to every axis); entries <= 0 keep the full size and
        sizes larger than the image are clipped to it.
    max_roi_size : int or sequence of int or None
        Only meaningful with ``random_size``, which batched crops do not support; kept for MONAI compatibility.
    random_center : bool
        Draw origins at random; ``False`` takes the centre crop for every sample.
    random_size : bool
        Must be ``False``: a batch needs one common crop size.
    """

    def __init__(
        self,
        roi_size: int | Sequence[int],
        max_roi_size: int | Sequence[int] | None = None,
        random_center: bool = True,
        random_size: bool = False,
    ) -> None:
        if random_size:
            raise ValueError("Batched transform does not support random size (random_size=True).")
        super().__init__(roi_size, max_roi_size, random_center, random_size, lazy=False)
        self._starts: torch.Tensor | None = None
        self._crop_size: tuple[int, ...] | None = None

    def _window(self, spatial: Sequence[int]) -> tuple[int, ...]:
        roi = fall_back_tuple(self.roi_size, spatial)
        return tuple(min(r, s) for r, s in zip(roi, spatial))

    def randomize(self, data: torch.Tensor) -> None:
        """Draw one crop origin per sample of the batch ``data``."""
        check_ndim(data, (4, 5), type(self).__name__)
        spatial = tuple(data.shape[2:])
        size = self._window(spatial)
        n, device = data.shape[0], data.device
        high = torch.tensor([s - r + 1 for s, r in zip(spatial, size)], device=device)
        if self.random_center:
            self._starts = self._randint(0, high, (n, len(spatial)), device)
        else:
            centre = torch.tensor([(s - r) // 2 for s, r in zip(spatial, size)], device=device)
            self._starts = centre.expand(n, -1)
        self._crop_size = size
        self._spatial = spatial

    def __call__(self, img: torch.Tensor, randomize: bool = True, lazy: bool | None = None) -> torch.Tensor:
        check_ndim(img, (4, 5), type(self).__name__)
        if randomize:
            self.randomize(img)
        if self._starts is None:
            raise IndexError(f"{type(self).__name__}: no crop drawn yet; call with randomize=True first.")
        if self._starts.shape[0] != img.shape[0] or tuple(img.shape[2:]) != self._spatial:
            raise ValueError(
                f"{type(self).__name__}: crops were drawn for batch {self._starts.shape[0]} and spatial shape "
                f"{self._spatial}, got {tuple(img.shape)}."
            )
        return crop_per_sample(img, self._starts, self._crop_size)


class BatchedRandSpatialCropd(RandCropd):
    """Dictionary version of :class:`BatchedRandSpatialCrop`; every key gets the same per-sample crops.

    Parameters
    ----------
    keys : str or sequence of str
        Keys to crop (same batch size and spatial shape).
    roi_size, max_roi_size, random_center, random_size
        See :class:`BatchedRandSpatialCrop`.
    allow_missing_keys : bool
        Skip keys absent from the dict instead of raising ``KeyError``.
    """

    def __init__(
        self,
        keys: Sequence[str] | str,
        roi_size: int | Sequence[int],
        max_roi_size: int | Sequence[int] | None = None,
        random_center: bool = True,
        random_size: bool = False,
        allow_missing_keys: bool = False,
    ) -> None:
        cropper = BatchedRandSpatialCrop(roi_size, max_roi_size, random_center, random_size)
        super().__init__(keys, cropper=cropper, allow_missing_keys=allow_missing_keys, lazy=False)

    def randomize(self, data: torch.Tensor) -> None:
        """Draw the per-sample crop origins from the reference tensor ``data``."""
        self.cropper.randomize(data)

    def __call__(self, data: Mapping[Hashable, torch.Tensor], lazy: bool | None = None) -> dict:
        d = dict(data)
        keys = list(self.key_iterator(d))
        if not keys:
            return d
        check_same_batch(d, keys, type(self).__name__)
        self.randomize(d[keys[0]])
        for key in keys:
            d[key] = self.cropper(d[key], randomize=False)
        return d
