"""Batched, GPU-friendly MONAI-style dictionary transforms for (B, C, Z, Y, X) microscopy stacks."""

from importlib.metadata import PackageNotFoundError, version

from viscy_transforms._adjust_contrast import BatchedRandAdjustContrast, BatchedRandAdjustContrastd
from viscy_transforms._affine import BatchedRandAffined
from viscy_transforms._crop import (
    BatchedCenterSpatialCrop,
    BatchedCenterSpatialCropd,
    BatchedRandSpatialCrop,
    BatchedRandSpatialCropd,
)
from viscy_transforms._decollate import Decollate
from viscy_transforms._elastic import BatchedRand3DElasticd
from viscy_transforms._flip import BatchedRandFlip, BatchedRandFlipd
from viscy_transforms._gaussian_smooth import BatchedRandGaussianSmooth, BatchedRandGaussianSmoothd
from viscy_transforms._histogram_shift import BatchedRandHistogramShiftd
from viscy_transforms._invert_intensity import RandInvertIntensityd
from viscy_transforms._monai_wrappers import (
    CenterSpatialCropd,
    Decollated,
    NormalizeIntensityd,
    RandAdjustContrastd,
    RandAffined,
    RandFlipd,
    RandGaussianNoised,
    RandGaussianSmoothd,
    RandScaleIntensityd,
    RandSpatialCropd,
    RandWeightedCropd,
    ScaleIntensityRangePercentilesd,
    ToDeviced,
)
from viscy_transforms._noise import (
    BatchedRandGaussianNoise,
    BatchedRandGaussianNoised,
    RandGaussianNoiseTensor,
    RandGaussianNoiseTensord,
)
from viscy_transforms._normalize import NormalizeSampled
from viscy_transforms._percentile_scale import (
    BatchedScaleIntensityRangePercentiles,
    BatchedScaleIntensityRangePercentilesd,
)
from viscy_transforms._pixel_shuffle import BatchedRandLocalPixelShufflingd
from viscy_transforms._scale_intensity import BatchedRandScaleIntensity, BatchedRandScaleIntensityd
from viscy_transforms._sharpen import BatchedRandSharpend
from viscy_transforms._stack_channels import StackChannelsd
from viscy_transforms._tiled_crop import TiledSpatialCropSamplesd
from viscy_transforms._zoom import BatchedZoom, BatchedZoomd
from viscy_transforms._zstack_shift import BatchedRandZStackShiftd

try:
    __version__ = version("viscy-transforms")
except PackageNotFoundError:  # source tree without installation
    __version__ = "0.0.0"

__all__ = [
    "BatchedCenterSpatialCrop",
    "BatchedCenterSpatialCropd",
    "BatchedRand3DElasticd",
    "BatchedRandAdjustContrast",
    "BatchedRandAdjustContrastd",
    "BatchedRandAffined",
    "BatchedRandFlip",
    "BatchedRandFlipd",
    "BatchedRandGaussianNoise",
    "BatchedRandGaussianNoised",
    "BatchedRandGaussianSmooth",
    "BatchedRandGaussianSmoothd",
    "BatchedRandHistogramShiftd",
    "BatchedRandLocalPixelShufflingd",
    "BatchedRandScaleIntensity",
    "BatchedRandScaleIntensityd",
    "BatchedRandSharpend",
    "BatchedRandSpatialCrop",
    "BatchedRandSpatialCropd",
    "BatchedRandZStackShiftd",
    "BatchedScaleIntensityRangePercentiles",
    "BatchedScaleIntensityRangePercentilesd",
    "BatchedZoom",
    "BatchedZoomd",
    "CenterSpatialCropd",
    "Decollate",
    "Decollated",
    "NormalizeIntensityd",
    "NormalizeSampled",
    "RandAdjustContrastd",
    "RandAffined",
    "RandFlipd",
    "RandGaussianNoiseTensor",
    "RandGaussianNoiseTensord",
    "RandGaussianNoised",
    "RandGaussianSmoothd",
    "RandInvertIntensityd",
    "RandScaleIntensityd",
    "RandSpatialCropd",
    "RandWeightedCropd",
    "ScaleIntensityRangePercentilesd",
    "StackChannelsd",
    "TiledSpatialCropSamplesd",
    "ToDeviced",
]
