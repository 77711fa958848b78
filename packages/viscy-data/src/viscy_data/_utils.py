"""Small helpers of the datasets and data modules.

Names once used by downstream code stay importable from here (``BatchedCenterSpatialCropd``,
``_scatter_channels``, ``_gather_channels``, ``_transform_channel_wise``, ``_read_norm_meta``,
``thread_worker_loader``); new code imports the public modules: :mod:`viscy_data.device_transforms`,
:mod:`viscy_data.norm_meta`, ``viscy_data.thread_worker_loader``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from monai.data.utils import collate_meta_tensor

from viscy_data.device_transforms import BatchedCenterSpatialCropd
from viscy_data.device_transforms import gather_channels as _gather_channels
from viscy_data.device_transforms import scatter_channels as _scatter_channels
from viscy_data.device_transforms import transform_channel_wise as _transform_channel_wise
from viscy_data.norm_meta import collate_norm_meta, read_norm_meta

__all__ = [
    "BatchedCenterSpatialCropd",
    "_collate_samples",
    "_ensure_channel_list",
    "_gather_channels",
    "_read_norm_meta",
    "_scatter_channels",
    "_search_int_in_str",
    "_transform_channel_wise",
    "thread_worker_loader",
]


def _ensure_channel_list(str_or_seq: str | Iterable[str]) -> list[str]:
    """Return channel names as a list (a single name becomes a one-element list).

    Raises
    ------
    TypeError
        If the argument is neither a string nor an iterable.
    """
    if isinstance(str_or_seq, str):
        return [str_or_seq]
    try:
        return list(str_or_seq)
    except TypeError as err:
        raise TypeError(f"channel names must be a string or a sequence of strings, got {str_or_seq!r}") from err


def _search_int_in_str(pattern: str, file_name: str) -> str:
    """Return the text matched by regex ``pattern`` in ``file_name``.

    Raises
    ------
    ValueError
        If the pattern does not occur.
    """
    match = re.search(pattern, file_name)
    if match is None:
        raise ValueError(f"cannot find pattern '{pattern}' in '{file_name}'")
    return match.group()


def _collate_samples(batch: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Collate samples whose values may be lists of patches (multi-sample transforms).

    List values (one entry per patch) are concatenated across samples; every other value (the
    ``index`` tuple, ``norm_meta``) is repeated once per patch of its sample, so every key of the
    batch has the same length. ``index`` tuples are collated like the default collate function
    (``[names, t, z]``), never flattened. ``norm_meta`` is omitted when no sample has it.

    Parameters
    ----------
    batch : sequence of dict
        Samples as returned by a dataset (keys of the first sample are used).

    Returns
    -------
    dict
        The batch.
    """
    out: dict[str, Any] = {}
    for sample in batch:
        n_patches = {len(v) for v in sample.values() if isinstance(v, list)}
        if len(n_patches) > 1:
            raise ValueError(f"sample list values have different lengths {sorted(n_patches)}")
        n_patches = n_patches.pop() if n_patches else 1
        for key in batch[0]:
            value = sample[key]
            values = value if isinstance(value, list) else [value] * n_patches
            out.setdefault(key, []).extend(values)
    collated = {}
    for key, values in out.items():
        if key == "norm_meta":
            meta = collate_norm_meta(values)
            if meta is not None:
                collated[key] = meta
        else:
            collated[key] = collate_meta_tensor(values)
    return collated


def _read_norm_meta(position: Any) -> dict | None:
    """Read an iohub Position's normalisation statistics (see :mod:`viscy_data.norm_meta`)."""
    return read_norm_meta(position.zattrs)


def _restore_torch_threads(num_threads: int, worker_id: int) -> None:
    """``worker_init_fn`` that undoes the DataLoader worker's ``torch.set_num_threads(1)``."""
    torch.set_num_threads(num_threads)


def thread_worker_loader(dataset: Any, **kwargs: Any):
    """Build a MONAI ``ThreadDataLoader`` with thread workers that keeps the torch thread count.

    torch's worker loop calls ``torch.set_num_threads(1)``, which is meant for worker processes; in a
    worker *thread* it sets the count for the whole process, so the transforms that then run on the
    batches in the main thread (``on_after_batch_transfer``) lose their intra-op parallelism. The
    worker init function sets the count back to what it was when the loader was built.

    Parameters
    ----------
    dataset : Dataset
        The dataset.
    **kwargs
        Passed to ``monai.data.ThreadDataLoader`` (``worker_init_fn`` is not accepted).

    Returns
    -------
    monai.data.ThreadDataLoader
    """
    from functools import partial

    from monai.data import ThreadDataLoader

    return ThreadDataLoader(
        dataset,
        use_thread_workers=True,
        worker_init_fn=partial(_restore_torch_threads, torch.get_num_threads()),
        **kwargs,
    )
