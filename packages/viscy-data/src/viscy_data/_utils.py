"""Helpers shared by the datasets and data modules (private, but used by downstream packages)."""

from __future__ import annotations

import re
import signal
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from queue import Empty, Full, Queue
from typing import Any

import torch
from monai.data import ThreadDataLoader
from monai.data.utils import collate_meta_tensor
from monai.transforms import MapTransform
from torch import Tensor

from viscy_data.norm_meta import read_norm_meta

__all__ = [
    "BatchedCenterSpatialCropd",
    "ThreadWorkerLoader",
    "_collate_samples",
    "_ensure_channel_list",
    "_gather_channels",
    "_read_norm_meta",
    "_scatter_channels",
    "_search_int_in_str",
    "_transform_channel_wise",
    "thread_worker_loader",
]


def _center_crop_slices(spatial_shape: Sequence[int], roi_size: Sequence[int]) -> tuple[slice, ...]:
    """Slices of a centre crop, with MONAI ``CenterSpatialCrop`` semantics.

    Non-positive ROI entries keep the whole axis; the window starts at ``size // 2 - roi // 2``
    (clipped at 0), so odd/even rounding matches MONAI exactly.
    """
    if len(roi_size) != len(spatial_shape):
        raise ValueError(f"roi_size {tuple(roi_size)} has {len(roi_size)} axes, the data has {len(spatial_shape)}")
    slices = []
    for size, roi in zip(spatial_shape, roi_size):
        roi = size if roi is None or roi <= 0 else int(roi)
        start = max(size // 2 - roi // 2, 0)
        slices.append(slice(start, min(start + roi, size)))
    return tuple(slices)


class BatchedCenterSpatialCropd(MapTransform):
    """Centre-crop the spatial axes of batched ``(B, C, *spatial)`` tensors.

    Parameters
    ----------
    keys : str or sequence of str
        Keys of the tensors to crop.
    roi_size : int or sequence of int
        Output spatial size; an int applies to every spatial axis, non-positive entries keep the axis.
    allow_missing_keys : bool, default False
        Do not raise if a key is absent.
    """

    def __init__(self, keys: str | Sequence[str], roi_size: int | Sequence[int], allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.roi_size = roi_size

    def __call__(self, data: dict[Hashable, Tensor]) -> dict[Hashable, Tensor]:
        """Return a shallow copy of ``data`` with the selected tensors cropped (views, no copy)."""
        d = dict(data)
        for key in self.key_iterator(d):
            image = d[key]
            spatial = image.shape[2:]
            roi = [self.roi_size] * len(spatial) if isinstance(self.roi_size, int) else list(self.roi_size)
            d[key] = image[(slice(None), slice(None), *_center_crop_slices(spatial, roi))]
        return d


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


def _collate_norm_meta(norm_metas: Sequence[dict | None]) -> dict | None:
    """Collate per-sample statistics into ``(B,)`` tensors; ``None`` when no sample carries any."""
    missing = sum(meta is None for meta in norm_metas)
    if missing == len(norm_metas):
        return None
    if missing:
        raise ValueError(
            f"{missing} of {len(norm_metas)} samples in the batch have no normalisation metadata; "
            "compute it for every FOV (viscy preprocess) or normalise on the fly"
        )
    return collate_meta_tensor(list(norm_metas))


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
            meta = _collate_norm_meta(values)
            if meta is not None:
                collated[key] = meta
        else:
            collated[key] = collate_meta_tensor(values)
    return collated


def _scatter_channels(
    channel_names: Sequence[str], patch: Tensor, norm_meta: Sequence[dict | None] | dict | None
) -> dict[str, Tensor | dict]:
    """Split ``(B, C, ...)`` into ``{name: (B, 1, ...)}`` and attach collated ``norm_meta``.

    ``norm_meta`` may be a list of per-sample dicts (collated here), an already collated dict, or
    ``None`` / a list of ``None`` (then the key is omitted).
    """
    if patch.shape[1] != len(channel_names):
        raise ValueError(f"patch has {patch.shape[1]} channels but {len(channel_names)} names: {list(channel_names)}")
    channels: dict[str, Tensor | dict] = {name: patch[:, i : i + 1] for i, name in enumerate(channel_names)}
    if isinstance(norm_meta, (list, tuple)):
        norm_meta = _collate_norm_meta(norm_meta)
    if norm_meta is not None:
        channels["norm_meta"] = norm_meta
    return channels


def _gather_channels(patch_channels: dict[str, Tensor | dict]) -> Tensor:
    """Concatenate every value but ``norm_meta`` along dim 1, in dict order."""
    return torch.cat([value for key, value in patch_channels.items() if key != "norm_meta"], dim=1)


def _transform_channel_wise(
    transform: Callable[[dict], dict],
    channel_names: Sequence[str],
    patch: Tensor,
    norm_meta: Sequence[dict | None] | dict | None,
) -> Tensor:
    """Apply a dictionary transform to a ``(B, C, ...)`` patch with one key per channel.

    The transform must return exactly the channel keys (plus ``norm_meta`` if it was given).
    """
    transformed = transform(_scatter_channels(channel_names, patch, norm_meta))
    return _gather_channels({name: transformed[name] for name in channel_names})


def _read_norm_meta(position: Any) -> dict | None:
    """Read an iohub Position's normalisation statistics (see :mod:`viscy_data.norm_meta`)."""
    return read_norm_meta(position.zattrs)


class _ThreadWorkerInit:
    """``worker_init_fn`` of thread workers: undoes the worker loop's process-wide settings.

    - ``torch.set_num_threads(1)`` (meant for worker processes) is set back to the caller's count;
    - each worker reports that it has started, so that the loader can then take back SIGTERM (see
      :meth:`ThreadWorkerLoader.__iter__`).
    """

    def __init__(self, num_threads: int) -> None:
        self.num_threads = num_threads
        self.started = threading.Semaphore(0)

    def __call__(self, worker_id: int) -> None:
        torch.set_num_threads(self.num_threads)
        self.started.release()


#: what the prefetch thread puts in the queue after the last batch (with the exception that ended it, if any)
_END = object()


def _prefetch(source: Iterator[Any], buffer_size: int, repeats: int) -> Iterator[Any]:
    """Yield the items of ``source``, read ahead by a background thread; re-raise its errors here.

    MONAI's ``ThreadBuffer`` lets an exception end its thread silently: the consumer sees a short (or
    empty) epoch and the run goes on. Here the exception that ended ``source`` travels through the
    queue and is raised in the consuming thread with its original traceback.
    """
    buffer: Queue = Queue(maxsize=max(1, buffer_size))
    stop = threading.Event()

    def put(item: tuple[Any, BaseException | None]) -> bool:
        while not stop.is_set():
            try:
                buffer.put(item, timeout=0.05)
                return True
            except Full:
                continue
        return False

    def produce() -> None:
        error = None
        try:
            for value in source:
                if not put((value, None)):
                    return
        except BaseException as err:  # noqa: BLE001 - every error must reach the consumer
            error = err
        put((_END, error))

    thread = threading.Thread(target=produce, name="viscy-loader-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            try:
                value, error = buffer.get(timeout=1.0)
            except Empty:
                if not thread.is_alive() and buffer.empty():
                    raise RuntimeError("the loader's prefetch thread ended without a result") from None
                continue
            if value is _END:
                if error is not None:
                    raise error
                return
            for _ in range(repeats):
                yield value
    finally:
        stop.set()
        thread.join()


#: how long the loader waits for its worker threads to start before taking back SIGTERM anyway
_WORKER_START_TIMEOUT_S = 60.0


class ThreadWorkerLoader(ThreadDataLoader):
    """``ThreadDataLoader`` whose read-ahead thread passes loader errors on to the training loop.

    Built by :func:`thread_worker_loader`; see there.
    """

    def __iter__(self) -> Iterator[Any]:
        init = self.worker_init_fn if isinstance(self.worker_init_fn, _ThreadWorkerInit) else None
        if init is not None:
            init.started = threading.Semaphore(0)
        source = super(ThreadDataLoader, self).__iter__()
        if init is not None and self.num_workers > 0:
            _reclaim_sigterm(init.started, self.num_workers)
        return _prefetch(source, self.buffer_size, self.repeats)


def _reclaim_sigterm(started: threading.Semaphore, num_workers: int) -> None:
    """Reinstall the process's Python SIGTERM handler once the worker threads have started.

    torch's worker loop installs C signal handlers meant for worker *processes*; from a worker thread
    they replace the whole process's: a SIGTERM from the parent process (a scheduler's step daemon,
    a shell) then ends the process at once with status 0, and Lightning never sees it. Re-setting the
    Python-level handler (from the main thread) restores it; the window in between is a few
    milliseconds per epoch.
    """
    deadline = time.monotonic() + _WORKER_START_TIMEOUT_S
    for _ in range(num_workers):
        if not started.acquire(timeout=max(0.0, deadline - time.monotonic())):
            break
    if threading.current_thread() is threading.main_thread():
        handler = signal.getsignal(signal.SIGTERM)
        if handler is not None:
            signal.signal(signal.SIGTERM, handler)


def thread_worker_loader(dataset: Any, **kwargs: Any) -> ThreadWorkerLoader:
    """Build a MONAI ``ThreadDataLoader`` with thread workers that keeps the torch thread count.

    torch's worker loop calls ``torch.set_num_threads(1)``, which is meant for worker processes; in a
    worker *thread* it sets the count for the whole process, so the transforms that then run on the
    batches in the main thread (``on_after_batch_transfer``) lose their intra-op parallelism. The
    worker init function sets the count back to what it was when the loader was built. The worker loop
    also installs worker-process signal handlers process-wide (a SIGTERM from the parent would end
    the process with status 0); the loader reinstalls the Python SIGTERM handler once the workers run.

    An exception raised while reading a batch (in a worker thread or in the read-ahead thread) is
    raised by the loader's iterator in the consuming thread, with its original traceback: a failed
    read stops the run instead of ending the epoch early.

    Parameters
    ----------
    dataset : Dataset
        The dataset.
    **kwargs
        Passed to ``monai.data.ThreadDataLoader`` (``worker_init_fn`` is not accepted).

    Returns
    -------
    ThreadWorkerLoader
        A ``monai.data.ThreadDataLoader``.
    """
    return ThreadWorkerLoader(
        dataset, use_thread_workers=True, worker_init_fn=_ThreadWorkerInit(torch.get_num_threads()), **kwargs
    )
