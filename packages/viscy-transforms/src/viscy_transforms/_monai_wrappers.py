"""MONAI dictionary transforms re-declared with explicit parameters.

MONAI constructors take ``**kwargs``, which jsonargparse / LightningCLI cannot introspect; these subclasses
name the parameters so YAML configs can set them, and forward everything to MONAI. Behaviour is MONAI's:
they expect single samples ``(C, *spatial)`` and draw one set of random parameters per call, so on a
batched ``(B, C, Z, Y, X)`` tensor they either fail or treat the batch as one sample. Use the ``Batched*``
transforms for batches.
"""

from __future__ import annotations

from collections.abc import Sequence

import monai.transforms as mt
import numpy as np
import torch
from monai.data.meta_tensor import get_spatial_ndim
from monai.transforms import GaussianSmooth, RandGaussianSmooth

__all__ = [
    "CenterSpatialCropd",
    "Decollated",
    "NormalizeIntensityd",
    "RandAdjustContrastd",
    "RandAffined",
    "RandFlipd",
    "RandGaussianNoised",
    "RandGaussianSmoothd",
    "RandScaleIntensityd",
    "RandSpatialCropd",
    "RandWeightedCropd",
    "ScaleIntensityRangePercentilesd",
    "ToDeviced",
]

Keys = Sequence[str] | str


class Decollated(mt.Decollated):
    """MONAI ``Decollated``: split batched entries into a list of samples."""

    def __init__(self, keys: Keys, detach: bool = True, pad_batch: bool = True, fill_value=None, **kwargs) -> None:
        super().__init__(keys=keys, detach=detach, pad_batch=pad_batch, fill_value=fill_value, **kwargs)


class ToDeviced(mt.ToDeviced):
    """MONAI ``ToDeviced``: move entries to ``device`` (given in ``kwargs``)."""

    def __init__(self, keys: Keys, **kwargs) -> None:
        super().__init__(keys=keys, **kwargs)


class RandWeightedCropd(mt.RandWeightedCropd):
    """MONAI ``RandWeightedCropd``: ``num_samples`` crops sampled with probability given by ``w_key``."""

    def __init__(self, keys: Keys, w_key: str, spatial_size: Sequence[int] | int, num_samples: int = 1, **kwargs):
        super().__init__(keys=keys, w_key=w_key, spatial_size=spatial_size, num_samples=num_samples, **kwargs)


class RandAffined(mt.RandAffined):
    """MONAI ``RandAffined`` (MONAI units: radians, shear factors, translation in voxels, scale offsets from 1)."""

    def __init__(self, keys: Keys, prob: float, rotate_range, shear_range, scale_range, **kwargs) -> None:
        super().__init__(
            keys=keys, prob=prob, rotate_range=rotate_range, shear_range=shear_range, scale_range=scale_range, **kwargs
        )


class RandAdjustContrastd(mt.RandAdjustContrastd):
    """MONAI ``RandAdjustContrastd`` (a scalar ``gamma`` g means the range (0.5, g))."""

    def __init__(self, keys: Keys, prob: float, gamma, **kwargs) -> None:
        super().__init__(keys=keys, prob=prob, gamma=gamma, **kwargs)


class RandScaleIntensityd(mt.RandScaleIntensityd):
    """MONAI ``RandScaleIntensityd``: ``x * (1 + f)`` with one ``f`` per call."""

    def __init__(self, keys: Keys, factors, prob: float, **kwargs) -> None:
        super().__init__(keys=keys, factors=factors, prob=prob, **kwargs)


class RandGaussianNoised(mt.RandGaussianNoised):
    """MONAI ``RandGaussianNoised``: the same noise added to every key."""

    def __init__(self, keys: Keys, prob: float, mean: float, std: float, **kwargs) -> None:
        super().__init__(keys=keys, prob=prob, mean=mean, std=std, **kwargs)


class _AxisNamedRandGaussianSmooth(RandGaussianSmooth):
    """``RandGaussianSmooth`` whose ``sigma_x/y/z`` apply to the X, Y, Z axes (the last spatial axes)."""

    def __call__(self, img: torch.Tensor, randomize: bool = True) -> torch.Tensor:
        img = torch.as_tensor(img) if not isinstance(img, torch.Tensor) else img
        if randomize:
            self.randomize()
        if not self._do_transform:
            return img
        ndim = get_spatial_ndim(img)
        sigma = (self.z, self.y, self.x)[3 - ndim :]
        return GaussianSmooth(sigma=sigma, approx=self.approx)(img)


class RandGaussianSmoothd(mt.RandGaussianSmoothd):
    """MONAI ``RandGaussianSmoothd`` with axis-named sigmas: ``sigma_x`` blurs X, ``sigma_y`` Y, ``sigma_z`` Z.

    Unlike plain MONAI (where ``sigma_x`` is the first spatial axis, i.e. Z of ZYX data), the names match
    :class:`~viscy_transforms.BatchedRandGaussianSmooth`. The random draws are MONAI's.
    """

    def __init__(self, keys: Keys, prob: float, sigma_x, sigma_y, sigma_z, **kwargs) -> None:
        super().__init__(keys=keys, prob=prob, sigma_x=sigma_x, sigma_y=sigma_y, sigma_z=sigma_z, **kwargs)
        inner = self.rand_smooth
        self.rand_smooth = _AxisNamedRandGaussianSmooth(
            sigma_x=inner.sigma_x, sigma_y=inner.sigma_y, sigma_z=inner.sigma_z, approx=inner.approx, prob=1.0
        )


class ScaleIntensityRangePercentilesd(mt.ScaleIntensityRangePercentilesd):
    """MONAI ``ScaleIntensityRangePercentilesd`` (percentiles over the whole input; ``dtype=None`` keeps it)."""

    def __init__(
        self,
        keys: Keys,
        lower: float,
        upper: float,
        b_min: float | None,
        b_max: float | None,
        clip: bool = False,
        relative: bool = False,
        channel_wise: bool = False,
        dtype: np.dtype | torch.dtype | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(
            keys=keys,
            lower=lower,
            upper=upper,
            b_min=b_min,
            b_max=b_max,
            clip=clip,
            relative=relative,
            channel_wise=channel_wise,
            dtype=dtype,
            allow_missing_keys=allow_missing_keys,
        )


class RandSpatialCropd(mt.RandSpatialCropd):
    """MONAI ``RandSpatialCropd``."""

    def __init__(self, keys: Keys, roi_size: Sequence[int] | int, random_center: bool = True, **kwargs) -> None:
        super().__init__(keys=keys, roi_size=roi_size, random_center=random_center, **kwargs)


class CenterSpatialCropd(mt.CenterSpatialCropd):
    """MONAI ``CenterSpatialCropd``."""

    def __init__(self, keys: Keys, roi_size: Sequence[int] | int, **kwargs) -> None:
        super().__init__(keys=keys, roi_size=roi_size, **kwargs)


class RandFlipd(mt.RandFlipd):
    """MONAI ``RandFlipd``: flips all ``spatial_axis`` together with one decision per call."""

    def __init__(self, keys: Keys, prob: float, spatial_axis: Sequence[int] | int | None, **kwargs) -> None:
        super().__init__(keys=keys, prob=prob, spatial_axis=spatial_axis, **kwargs)


class NormalizeIntensityd(mt.NormalizeIntensityd):
    """MONAI ``NormalizeIntensityd``."""

    def __init__(self, keys: Keys, **kwargs) -> None:
        super().__init__(keys=keys, **kwargs)
