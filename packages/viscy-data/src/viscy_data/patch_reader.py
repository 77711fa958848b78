"""Batched patch reads from OME-Zarr image arrays: the one module that opens arrays with tensorstore.

A :class:`PatchReader` serves the datasets that cut patches around cells (``TripletDataset``,
``dynaclr``'s ``MultiExperimentTripletDataset``). It is built once per dataset from one
:class:`FovArray` per FOV and the channels to read, and then reads whole batches of requests
(FOV, timepoint, first Z slice, top-left Y/X corner) into one preallocated ``(B, C, Z, Y, X)``
float32 tensor:

* every array is opened once per process (:func:`open_array`), with the tensorstore settings of
  :func:`tensorstore_context` (chunk cache size, decode concurrency) decided in one place;
* channel names are resolved to indices once, at construction, with errors naming the FOV;
* the patches of a batch are read in one tensorstore operation (a stacked view), so a chunk is decoded
  once however many patches touch it, and tensorstore copies (and converts, e.g. ``uint16`` to
  ``float32``) straight from the decoded chunks into the batch tensor;
* what lies outside the image (Y/X or Z) and channels a FOV does not have (``None``) read as zeros.

zarr v2 arrays (OME-Zarr 0.4) open with tensorstore's ``zarr`` driver, zarr v3 arrays (OME-Zarr 0.5,
sharded or not) with its ``zarr3`` driver, chosen from the metadata file present; the rest of the
read path is the same for both.

Handles are shared by the threads of a process (thread data-loader workers). Tensorstore must not be
used across ``fork``: in a forked child the handles (and contexts) are opened anew.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "FovArray",
    "PatchReader",
    "array_spec",
    "default_data_copy_concurrency",
    "open_array",
    "require_tensorstore",
    "tensorstore_context",
]

_INSTALL_HINT = "pip install 'viscy-data[triplet]'"


def require_tensorstore(user: str = "PatchReader") -> Any:
    """Import tensorstore, or raise an ``ImportError`` naming ``user`` and the ``triplet`` extra."""
    try:
        import tensorstore
    except ImportError as err:
        raise ImportError(f"tensorstore is required for {user}. Install with: {_INSTALL_HINT}") from err
    return tensorstore


def default_data_copy_concurrency() -> int:
    """Threads tensorstore may use to decode and copy: ``$SLURM_CPUS_PER_TASK``, else the CPU count."""
    value = os.environ.get("SLURM_CPUS_PER_TASK") or os.cpu_count() or 4
    return max(1, int(value))


class _ProcessCache:
    """Contexts and open arrays of this process; emptied in a forked child, whose tensorstore threads are gone."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pid = os.getpid()
        self.contexts: dict[tuple[int, int], Any] = {}
        self.arrays: dict[tuple[str, int, int], Any] = {}

    def check_pid(self) -> None:
        if self.pid != os.getpid():
            self.contexts, self.arrays, self.pid = {}, {}, os.getpid()


_CACHE = _ProcessCache()


def _settings(cache_pool_bytes: int, data_copy_concurrency: int | None) -> tuple[int, int]:
    if cache_pool_bytes < 0:
        raise ValueError(f"cache_pool_bytes must be >= 0, got {cache_pool_bytes}")
    concurrency = default_data_copy_concurrency() if data_copy_concurrency is None else int(data_copy_concurrency)
    if concurrency < 1:
        raise ValueError(f"data_copy_concurrency must be >= 1, got {data_copy_concurrency}")
    return int(cache_pool_bytes), concurrency


def tensorstore_context(cache_pool_bytes: int = 0, data_copy_concurrency: int | None = None) -> Any:
    """Return the tensorstore context of this process for these settings (created once).

    Parameters
    ----------
    cache_pool_bytes : int, default 0
        Size of the decoded-chunk cache shared by every array opened with these settings (0: no cache;
        each read decodes its chunks).
    data_copy_concurrency : int, optional
        Threads used to decode and copy chunks; default :func:`default_data_copy_concurrency`.

    Returns
    -------
    tensorstore.Context
    """
    key = _settings(cache_pool_bytes, data_copy_concurrency)
    with _CACHE.lock:
        _CACHE.check_pid()
        context = _CACHE.contexts.get(key)
        if context is None:
            ts = require_tensorstore()
            context = ts.Context(
                {"cache_pool": {"total_bytes_limit": key[0]}, "data_copy_concurrency": {"limit": key[1]}}
            )
            _CACHE.contexts[key] = context
    return context


def array_spec(path: str | Path) -> dict[str, Any]:
    """Tensorstore spec of a local zarr array: ``zarr3`` driver when ``zarr.json`` exists, else ``zarr``.

    Parameters
    ----------
    path : str or Path
        Directory of the array (e.g. ``plate.zarr/A/1/0/0``).

    Raises
    ------
    FileNotFoundError
        If the directory holds no zarr array (a group is not an array).
    """
    path = Path(path)
    if (path / ".zarray").exists():
        driver = "zarr"
    elif (path / "zarr.json").exists() and json.loads((path / "zarr.json").read_text()).get("node_type") == "array":
        driver = "zarr3"
    else:
        raise FileNotFoundError(f"no zarr array at {path} (neither a zarr v3 array's zarr.json nor .zarray)")
    # cached chunks are revalidated against the files only when the array is opened
    return {"driver": driver, "kvstore": {"driver": "file", "path": str(path)}, "recheck_cached_data": "open"}


def open_array(path: str | Path, cache_pool_bytes: int = 0, data_copy_concurrency: int | None = None) -> Any:
    """Open a local zarr array read-only with tensorstore, once per process and settings.

    Parameters
    ----------
    path : str or Path
        Directory of the array (zarr v2 or v3, sharded or not).
    cache_pool_bytes, data_copy_concurrency
        Settings of the shared context, see :func:`tensorstore_context`.

    Returns
    -------
    tensorstore.TensorStore
        The same handle for every call with the same path and settings in this process.
    """
    cache_bytes, concurrency = _settings(cache_pool_bytes, data_copy_concurrency)
    key = (str(Path(path).resolve()), cache_bytes, concurrency)
    with _CACHE.lock:
        _CACHE.check_pid()
        handle = _CACHE.arrays.get(key)
    if handle is not None:
        return handle
    context = tensorstore_context(cache_bytes, concurrency)
    handle = require_tensorstore().open(array_spec(path), read=True, context=context).result()
    if handle.rank != 5:
        raise ValueError(f"{path}: expected a 5-D (T, C, Z, Y, X) image array, got shape {tuple(handle.shape)}")
    with _CACHE.lock:
        return _CACHE.arrays.setdefault(key, handle)


@dataclass(frozen=True)
class FovArray:
    """Where one FOV's image array lives and the names of its channels.

    Parameters
    ----------
    path : str
        Directory of the ``(T, C, Z, Y, X)`` array, e.g. ``plate.zarr/A/1/0/0``.
    channel_names : tuple of str
        Names of the array's channels, in array order.
    label : str
        Name used in error messages (e.g. ``"A/1/0"`` or ``"experiment:A/1/0"``).
    """

    path: str
    channel_names: tuple[str, ...]
    label: str

    @classmethod
    def from_position(cls, position: Any, array_key: str = "0", label: str | None = None) -> FovArray:
        """Describe an iohub ``Position``'s array ``array_key`` (only paths and names are kept).

        Parameters
        ----------
        position : iohub.ngff.Position
            FOV of a plate on the local file system.
        array_key : str, default "0"
            Array inside the FOV (multiscale level).
        label : str, optional
            Name in error messages; default the FOV name (``"A/1/0"``).
        """
        name = position.zgroup.name.strip("/")
        if array_key not in position.array_keys():
            raise KeyError(f"FOV '{name}' has no array '{array_key}'; arrays: {list(position.array_keys())}")
        root = Path(str(position.zgroup.store.root))
        return cls(str(root / position[array_key].path), tuple(position.channel_names), label or name)


@dataclass(frozen=True)
class _ChannelPlan:
    """Which output channels of a FOV are read, from which array channels (resolved once)."""

    out_channels: list[int] | slice
    array_channels: list[int] | slice
    complete: bool  # every output channel is read (nothing to zero-fill)
    empty: bool  # no channel is read


def _as_index(indices: list[int]) -> list[int] | slice:
    """Return a contiguous ascending run as a slice (cheaper for tensorstore than an index array)."""
    if indices and indices == list(range(indices[0], indices[0] + len(indices))):
        return slice(indices[0], indices[0] + len(indices))
    return indices


def _plan(fov: FovArray, channels: Sequence[str | None]) -> _ChannelPlan:
    available = list(fov.channel_names)
    missing = [c for c in channels if c is not None and c not in available]
    if missing:
        raise ValueError(f"channel(s) {missing} not found in FOV '{fov.label}'; available channels: {available}")
    out = [i for i, c in enumerate(channels) if c is not None]
    src = [available.index(channels[i]) for i in out]
    return _ChannelPlan(_as_index(out), _as_index(src), len(out) == len(channels), not out)


class PatchReader:
    """Read batches of ``(C, Z, Y, X)`` patches from the image arrays of many FOVs.

    Parameters
    ----------
    arrays : sequence of FovArray
        One entry per FOV; requests refer to FOVs by their position in this list.
    channels : sequence of (str or None), or one such sequence per FOV
        Output channels, by name in each FOV's array. ``None`` is a channel the FOV does not have: it
        reads as zeros. One sequence applies to every FOV; a list of sequences (one per FOV, all of the
        same length) lets FOVs of different experiments fill the same output channels from differently
        named or ordered channels.
    yx_patch_size : tuple of int
        ``(h, w)`` of every patch.
    z_range : slice or tuple of int
        ``(start, stop)`` Z slices read by default; requests may give their own first slice (same depth).
    cache_pool_bytes : int, default 0
        Chunk cache shared by all arrays read with the same settings (see :func:`tensorstore_context`).
    data_copy_concurrency : int, optional
        Decode/copy threads; default ``$SLURM_CPUS_PER_TASK`` or the CPU count.

    Raises
    ------
    ValueError
        If a named channel is not in a FOV (the message names the FOV and its channels), the channel
        lists have different lengths, or sizes are not positive.

    Examples
    --------
    >>> reader = PatchReader([FovArray.from_position(p) for p in positions], ["Phase3D", "GFP"], (64, 64), (0, 5))
    >>> patches = reader.read(fov=[0, 1], t=[3, 0], y0=[10, 200], x0=[40, -8])  # (2, 2, 5, 64, 64) float32
    """

    def __init__(
        self,
        arrays: Sequence[FovArray],
        channels: Sequence[str | None] | Sequence[Sequence[str | None]],
        yx_patch_size: tuple[int, int],
        z_range: slice | tuple[int, int],
        cache_pool_bytes: int = 0,
        data_copy_concurrency: int | None = None,
    ) -> None:
        require_tensorstore()
        self.arrays = list(arrays)
        per_fov = bool(channels) and not isinstance(channels[0], str) and channels[0] is not None
        channel_lists = [list(c) for c in channels] if per_fov else [list(channels)] * len(self.arrays)
        if len(channel_lists) != len(self.arrays):
            raise ValueError(f"{len(channel_lists)} channel lists for {len(self.arrays)} FOVs")
        lengths = {len(c) for c in channel_lists}
        if len(lengths) > 1:
            raise ValueError(f"channel lists of different lengths {sorted(lengths)}; every FOV fills the same channels")
        self.n_channels = lengths.pop() if lengths else len(channels)
        if self.n_channels < 1:
            raise ValueError("PatchReader needs at least one channel")
        self._plans = [_plan(fov, names) for fov, names in zip(self.arrays, channel_lists)]
        self.yx_patch_size = (int(yx_patch_size[0]), int(yx_patch_size[1]))
        z_range = z_range if isinstance(z_range, slice) else slice(*z_range)
        if z_range.start is None or z_range.stop is None or z_range.step not in (None, 1):
            raise ValueError(f"z_range must have a start and a stop and step 1, got {z_range}")
        self.z_range = z_range
        self.z_size = z_range.stop - z_range.start
        if self.z_size < 1 or min(self.yx_patch_size) < 1:
            raise ValueError(f"empty patches: z_range {z_range}, yx_patch_size {self.yx_patch_size}")
        self.cache_pool_bytes, self.data_copy_concurrency = _settings(cache_pool_bytes, data_copy_concurrency)
        self._handles: list[Any] = [None] * len(self.arrays)

    def __len__(self) -> int:
        return len(self.arrays)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_handles"] = [None] * len(self.arrays)  # reopened (once per process) where unpickled
        return state

    @property
    def patch_shape(self) -> tuple[int, int, int, int]:
        """``(C, Z, h, w)`` of one patch."""
        return (self.n_channels, self.z_size, *self.yx_patch_size)

    def array(self, fov: int) -> Any:
        """Return the open tensorstore array of FOV ``fov`` (opened on first use, once per process)."""
        handle = self._handles[fov]
        if handle is None:
            handle = open_array(self.arrays[fov].path, self.cache_pool_bytes, self.data_copy_concurrency)
            self._handles[fov] = handle
        return handle

    def read(
        self,
        fov: Sequence[int] | np.ndarray,
        t: Sequence[int] | np.ndarray,
        y0: Sequence[int] | np.ndarray,
        x0: Sequence[int] | np.ndarray,
        z0: Sequence[int] | np.ndarray | None = None,
        out: Tensor | None = None,
    ) -> Tensor:
        """Read one patch per request into a ``(B, C, Z, h, w)`` float32 tensor.

        Parameters
        ----------
        fov, t, y0, x0 : sequence of int
            Per request: FOV (position in :attr:`arrays`), timepoint, and the top-left corner of the
            window in pixels. Corners may lie outside the image: what falls outside reads as zeros.
        z0 : sequence of int, optional
            First Z slice per request (default ``z_range.start``); slices beyond the stack read as zeros.
        out : Tensor, optional
            Contiguous CPU float32 tensor of shape ``(B, *patch_shape)`` to fill (e.g. pinned memory).

        Returns
        -------
        Tensor
            ``out`` (or a new tensor) with the patches.

        Raises
        ------
        IndexError
            If a FOV or a timepoint does not exist.
        """
        fov = np.asarray(fov, dtype=np.int64).ravel()
        n = fov.size
        t, y0, x0 = (np.asarray(a, dtype=np.int64).ravel() for a in (t, y0, x0))
        z0 = np.full(n, self.z_range.start, dtype=np.int64) if z0 is None else np.asarray(z0, np.int64).ravel()
        if not all(a.size == n for a in (t, y0, x0, z0)):
            raise ValueError("fov, t, y0, x0 (and z0) must have one entry per request")
        if n and (fov.min() < 0 or fov.max() >= len(self.arrays)):
            raise IndexError(f"FOV index out of range for {len(self.arrays)} FOVs: {sorted(set(fov.tolist()))}")
        shape = (n, *self.patch_shape)
        if out is None:
            out = torch.empty(shape, dtype=torch.float32)
        elif tuple(out.shape) != shape or out.dtype != torch.float32 or out.device.type != "cpu":
            raise ValueError(f"out must be a CPU float32 tensor of shape {shape}, got {out.dtype} {tuple(out.shape)}")
        if not out.is_contiguous():
            raise ValueError("out must be contiguous")
        if n == 0:
            return out
        ts = require_tensorstore()
        dest = ts.array(out.numpy(), copy=False, write=True)
        h, w = self.yx_patch_size
        # whole patches (every channel, inside the image) of one dtype are read as one stacked view: one
        # tensorstore operation decodes each chunk once however many patches of the batch it touches
        whole: dict[str, tuple[list[int], list[Any]]] = {}
        pending = []
        for k, (f, tk, zk, yk, xk) in enumerate(zip(fov.tolist(), t.tolist(), z0.tolist(), y0.tolist(), x0.tolist())):
            plan = self._plans[f]
            array = self.array(f)
            frames, _, depth, height, width = array.shape
            if not 0 <= tk < frames:
                raise IndexError(f"timepoint {tk} out of range for FOV '{self.arrays[f].label}' ({frames} frames)")
            z_lo, z_hi = max(zk, 0), min(zk + self.z_size, depth)
            y_lo, y_hi = max(yk, 0), min(yk + h, height)
            x_lo, x_hi = max(xk, 0), min(xk + w, width)
            inside = (z_lo, z_hi, y_lo, y_hi, x_lo, x_hi) == (zk, zk + self.z_size, yk, yk + h, xk, xk + w)
            if plan.complete and inside:
                view = array[tk, plan.array_channels, z_lo:z_hi, y_lo:y_hi, x_lo:x_hi].translate_to[0]
                rows, views = whole.setdefault(str(array.dtype), ([], []))
                rows.append(k)
                views.append(view)
                continue
            out[k] = 0.0  # only patches that need it are zeroed
            if plan.empty or z_lo >= z_hi or y_lo >= y_hi or x_lo >= x_hi:
                continue
            source = array[tk, plan.array_channels, z_lo:z_hi, y_lo:y_hi, x_lo:x_hi]
            target = dest[k, plan.out_channels, z_lo - zk : z_hi - zk, y_lo - yk : y_hi - yk, x_lo - xk : x_hi - xk]
            pending.append(target.write(source))
        for rows, views in whole.values():
            target = dest if len(rows) == n else dest[rows]
            pending.append(target.write(ts.stack(views)))
        for future in pending:
            future.result()
        return out
