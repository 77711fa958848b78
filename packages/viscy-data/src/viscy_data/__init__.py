"""OME-Zarr (iohub) datasets and Lightning DataModules for live-cell microscopy.

Public names are exported lazily: ``import viscy_data`` loads no dataset module (and no optional
extra); ``viscy_data.TripletDataModule`` imports :mod:`viscy_data.triplet` on first access.
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("viscy-data")
except PackageNotFoundError:  # source tree without installation
    __version__ = "0.0.0"

_TYPES = (
    "AnnotationColumns",
    "ChannelMap",
    "ChannelNormStats",
    "DictTransform",
    "HCSStackIndex",
    "INDEX_COLUMNS",
    "LABEL_CELL_CYCLE_STATE",
    "LABEL_CELL_DIVISION_STATE",
    "LABEL_CELL_REMODELING_STATE",
    "LABEL_INFECTION_STATE",
    "LevelNormStats",
    "NormMeta",
    "OneOrSeq",
    "Sample",
    "SegmentationSample",
    "TrackingIndex",
    "TripletSample",
)

#: public name -> module (relative to this package) that defines it
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(_TYPES, "_typing"),
    "ChannelDropout": "channel_dropout",
    "FlexibleBatchSampler": "sampler",
    "SelectWell": "select",
    "ShardedDistributedSampler": "distributed",
    "HCSDataModule": "hcs",
    "MaskTestDataset": "hcs",
    "SlidingWindowDataset": "hcs",
    "CachedOmeZarrDataModule": "gpu_aug",
    "CachedOmeZarrDataset": "gpu_aug",
    "GPUTransformDataModule": "gpu_transform",
    "TripletDataModule": "triplet",
    "TripletDataset": "triplet",
    "ClassificationDataModule": "cell_classification",
    "ClassificationDataset": "cell_classification",
    "CellDivisionTripletDataModule": "cell_division_triplet",
    "CellDivisionTripletDataset": "cell_division_triplet",
    "MmappedDataModule": "mmap_cache",
    "MmappedDataset": "mmap_cache",
    "LiveCellDataModule": "livecell",
    "LiveCellDataset": "livecell",
    "LiveCellTestDataset": "livecell",
    "CTMCv1DataModule": "ctmc_v1",
    "SegmentationDataModule": "segmentation",
    "SegmentationDataset": "segmentation",
    "BatchedConcatDataModule": "combined",
    "BatchedConcatDataset": "combined",
    "CachedConcatDataModule": "combined",
    "CombinedDataModule": "combined",
    "CombineMode": "combined",
    "ConcatDataModule": "combined",
}

__all__ = [*sorted(_EXPORTS), "__version__"]


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'viscy_data' has no attribute '{name}'")
    value = getattr(import_module(f".{module_name}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
