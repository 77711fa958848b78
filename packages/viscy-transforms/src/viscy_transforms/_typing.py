"""Type aliases of the sample dictionaries the transforms operate on."""

from collections.abc import Sequence
from typing import NamedTuple, NotRequired, TypedDict, TypeVar

import torch

__all__ = [
    "ChannelMap",
    "ChannelNormStats",
    "HCSStackIndex",
    "LevelNormStats",
    "NormMeta",
    "OneOrSeq",
    "Sample",
]

T = TypeVar("T")
OneOrSeq = T | Sequence[T]


class LevelNormStats(TypedDict):
    """Statistics of one level (0-d tensors per sample, ``(B,)`` after collation)."""

    mean: torch.Tensor
    std: torch.Tensor
    median: torch.Tensor
    iqr: torch.Tensor


class ChannelNormStats(TypedDict):
    """Statistics of one channel at the dataset and FOV levels."""

    dataset_statistics: LevelNormStats
    fov_statistics: LevelNormStats


NormMeta = dict[str, ChannelNormStats]


class HCSStackIndex(NamedTuple):
    """Where a sample comes from: FOV path, time point and Z slice."""

    image: str
    time: int
    z: int


class Sample(TypedDict, total=False):
    """A sample (or collated batch) dictionary."""

    index: HCSStackIndex
    source: OneOrSeq[torch.Tensor]
    target: OneOrSeq[torch.Tensor]
    weight: OneOrSeq[torch.Tensor]
    labels: OneOrSeq[torch.Tensor]
    norm_meta: NormMeta | None


class ChannelMap(TypedDict):
    """Source (required) and target (optional) channel names."""

    source: OneOrSeq[str]
    target: NotRequired[OneOrSeq[str]]
