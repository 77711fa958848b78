"""Type aliases, typed dicts and label constants shared by the datasets.

The typed dicts document the structure of samples and batches; at runtime every sample is a plain
``dict`` (and :class:`HCSStackIndex` a plain named tuple).
"""

from collections.abc import Callable, Sequence
from typing import Literal, NamedTuple, NotRequired, TypedDict, TypeVar

from torch import ShortTensor, Tensor

__all__ = [
    "INDEX_COLUMNS",
    "LABEL_CELL_CYCLE_STATE",
    "LABEL_CELL_DIVISION_STATE",
    "LABEL_CELL_REMODELING_STATE",
    "LABEL_INFECTION_STATE",
    "AnnotationColumns",
    "ChannelMap",
    "ChannelNormStats",
    "DictTransform",
    "HCSStackIndex",
    "LevelNormStats",
    "NormMeta",
    "OneOrSeq",
    "Sample",
    "SegmentationSample",
    "TrackingIndex",
    "TripletSample",
]

T = TypeVar("T")

#: a single value or a sequence of them
OneOrSeq = T | Sequence[T]

#: a MONAI-style dictionary transform
DictTransform = Callable[[dict[str, Tensor | dict]], dict[str, Tensor]]


class LevelNormStats(TypedDict):
    """Statistics of one channel at one level (each a 0-d tensor, ``(B,)`` after collation)."""

    mean: Tensor
    std: Tensor
    median: Tensor
    iqr: Tensor


class ChannelNormStats(TypedDict):
    """Statistics of one channel at each level."""

    dataset_statistics: LevelNormStats
    fov_statistics: LevelNormStats


#: normalisation statistics keyed by channel name
NormMeta = dict[str, ChannelNormStats]


class HCSStackIndex(NamedTuple):
    """Where a sample comes from: array path (e.g. ``"A/1/0/0"``), timepoint and first Z slice."""

    image: str
    time: int
    z: int


class Sample(TypedDict, total=False):
    """A virtual-staining sample (or batch)."""

    index: HCSStackIndex
    source: OneOrSeq[Tensor]
    target: OneOrSeq[Tensor]
    weight: OneOrSeq[Tensor]
    labels: OneOrSeq[Tensor]
    norm_meta: NormMeta | None


class SegmentationSample(TypedDict):
    """A prediction/target pair of label images for segmentation evaluation."""

    pred: ShortTensor
    target: ShortTensor
    position_idx: OneOrSeq[int]
    time_idx: OneOrSeq[int]


class ChannelMap(TypedDict):
    """Source (input) and optional target channel names."""

    source: OneOrSeq[str]
    target: NotRequired[OneOrSeq[str]]


class TrackingIndex(TypedDict):
    """Identifies a tracked cell: FOV name and cell id."""

    fov_name: OneOrSeq[str]
    id: OneOrSeq[int]


class TripletSample(TypedDict):
    """A contrastive sample (or batch): anchor, optional positive/negative and index."""

    anchor: Tensor
    positive: NotRequired[Tensor]
    negative: NotRequired[Tensor]
    index: NotRequired[TrackingIndex]


#: names of annotation columns with a label map below
AnnotationColumns = Literal["infection_state", "cell_division_state", "cell_remodeling_state", "cell_cycle_state"]

LABEL_INFECTION_STATE = {"uninfected": 0, "infected": 1, "unknown": -1}
LABEL_CELL_DIVISION_STATE = {"interphase": 0, "mitosis": 1, "unknown": -1}
LABEL_CELL_CYCLE_STATE = {
    "G1": 0,
    "S": 1,
    "G2": 2,
    "prophase": 3,
    "metaphase": 4,
    "anaphase": 5,
    "telophase": 6,
    "unknown": -1,
}
LABEL_CELL_REMODELING_STATE = {"no_remodel": 0, "remodeling": 1, "unknown": -1}

#: columns that identify a tracked cell in prediction indices and embeddings
INDEX_COLUMNS = ["fov_name", "track_id", "t", "id", "parent_track_id", "parent_id", "z", "y", "x"]
