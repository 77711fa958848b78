"""Preprocess OME-Zarr volumes once into a memory-mapped file, then train from it (extra ``[mmap]``)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, MutableMapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from iohub.ngff import Position, open_ome_zarr
from monai.transforms import Compose
from torch import Tensor

from viscy_data._utils import _ensure_channel_list
from viscy_data.gpu_transform import TransformListsDataModule
from viscy_data.norm_meta import NORM_META_KEY, read_norm_meta, select_timepoint
from viscy_data.select import SelectWell
from viscy_data.volumes import FovTimepointItems, split_positions

try:
    from tensordict.memmap import MemoryMappedTensor
except ImportError:  # optional extra
    MemoryMappedTensor = None

__all__ = ["MmappedDataModule", "MmappedDataset"]


def _require_tensordict(user: str) -> None:
    if MemoryMappedTensor is None:
        raise ImportError(f"tensordict is required for {user}. Install with: pip install 'viscy-data[mmap]'")


class _SharedFlags:
    """Which buffer rows are filled, in a shared-memory bool tensor every DataLoader worker sees.

    A mapping-like stand-in for a ``Manager().dict()`` of booleans without a server process: one
    byte per item, written by whichever worker fills the row.
    """

    def __init__(self, n_items: int) -> None:
        self._flags = torch.zeros(n_items, dtype=torch.bool).share_memory_()

    def get(self, index: int, default: bool = False) -> bool:
        if not 0 <= index < len(self._flags):
            return default
        return bool(self._flags[index])

    def __getitem__(self, index: int) -> bool:
        return bool(self._flags[index])

    def __setitem__(self, index: int, value: bool) -> None:
        self._flags[index] = bool(value)

    def __contains__(self, index: object) -> bool:
        return isinstance(index, int) and self.get(index)

    def __len__(self) -> int:
        return int(self._flags.sum())


class MmappedDataset(FovTimepointItems, torch.utils.data.Dataset):
    """One item per (FOV, timepoint), preprocessed once into a memory-mapped buffer.

    Parameters
    ----------
    positions : sequence of iohub Position
        FOVs to serve; all must share the buffer's ``(Z, Y, X)`` shape.
    channel_names : str or sequence of str
        Channels to load (in this order).
    cache_map : MutableMapping
        Records which rows of ``buffer`` are filled (``cache_map[index] = True``); a dict, a
        ``Manager().dict()`` or the shared flags :class:`MmappedDataModule` uses.
    buffer : tensordict.MemoryMappedTensor
        ``(n_items, C, Z, Y, X)`` float32 buffer (``n_items >= len(dataset)``).
    preprocess_transforms : callable, optional
        Applied once per item, before caching, to ``{channel: (1, Z, Y, X), "norm_meta": ...}``;
        must keep every channel's shape (normalise here: cached items carry no ``norm_meta``).
    cpu_transform : callable, optional
        Applied to ``{channel: (1, Z, Y, X)}`` on every access; may return a list.
    array_key : str, default "0"
        Image array inside each FOV.
    load_normalization_metadata : bool, default True
        Give ``preprocess_transforms`` the FOV's statistics (timepoint level selected for the item).
    """

    def __init__(
        self,
        positions: Sequence[Position],
        channel_names: str | Sequence[str],
        cache_map: MutableMapping,
        buffer: Any,
        preprocess_transforms: Callable | None = None,
        cpu_transform: Callable | None = None,
        array_key: str = "0",
        load_normalization_metadata: bool = True,
    ) -> None:
        _require_tensordict("MmappedDataset")
        super().__init__(positions, channel_names, array_key)
        positions = list(positions)
        self.cache_map = cache_map
        self.buffer = buffer
        self.preprocess_transforms = preprocess_transforms
        self.cpu_transform = cpu_transform
        self.load_normalization_metadata = load_normalization_metadata
        row_shape = (len(self.channel_names), *_volume_shape(positions[0], array_key))
        if tuple(buffer.shape[1:]) != row_shape or buffer.shape[0] < len(self):
            raise ValueError(
                f"buffer of shape {tuple(buffer.shape)} cannot hold {len(self)} items of shape {row_shape}"
            )
        for position, name in zip(positions, self._fov_names):
            if _volume_shape(position, array_key) != row_shape[1:]:
                raise ValueError(
                    f"FOV '{name}' has (Z, Y, X) {_volume_shape(position, array_key)}, "
                    f"the buffer expects {row_shape[1:]}"
                )
        self._norm_attrs = (
            [{NORM_META_KEY: p.zattrs.get(NORM_META_KEY)} for p in positions] if load_normalization_metadata else None
        )

    def _preprocess(self, fov: int, t: int) -> Tensor:
        volume = self._read_volume(fov, t)
        sample: dict[str, Any] = {name: volume[i : i + 1] for i, name in enumerate(self.channel_names)}
        if self._norm_attrs is not None:
            norm_meta = select_timepoint(read_norm_meta(self._norm_attrs[fov]), t)
            if norm_meta is not None:
                sample["norm_meta"] = norm_meta
        if self.preprocess_transforms is not None:
            sample = self.preprocess_transforms(sample)
        for name in self.channel_names:
            if tuple(sample[name].shape) != (1, *volume.shape[1:]):
                raise ValueError(
                    f"preprocess_transforms changed channel '{name}' from {(1, *volume.shape[1:])} to "
                    f"{tuple(sample[name].shape)}; they must keep the shape (crop in cpu_transform instead)"
                )
        return torch.cat([torch.as_tensor(sample[name]) for name in self.channel_names])

    def __getitem__(self, index: int) -> list[dict[str, Tensor]]:
        """Return ``[{channel: (1, Z, Y, X) float32}]`` after ``cpu_transform``."""
        fov, t = self._locate(index)
        index %= len(self)
        if not self.cache_map.get(index, False):
            self.buffer[index] = self._preprocess(fov, t)
            self.cache_map[index] = True
        # a copy: transforms must not write into the cache file
        volume = torch.as_tensor(self.buffer[index]).clone()
        sample = {name: volume[i : i + 1] for i, name in enumerate(self.channel_names)}
        if self.cpu_transform is not None:
            sample = self.cpu_transform(sample)
        return sample if isinstance(sample, list) else [sample]


def _volume_shape(position: Position, array_key: str) -> tuple[int, int, int]:
    array = position[array_key]
    return (array.slices, array.height, array.width)


class MmappedDataModule(TransformListsDataModule, SelectWell):
    """GPU-augmentation data module reading from per-split memory-mapped caches.

    Parameters
    ----------
    data_path : str or Path
        HCS OME-Zarr plate.
    channels : str or sequence of str
        Channels to load.
    batch_size, num_workers : int
        Loader settings.
    split_ratio : float
        Fraction of FOVs used for training.
    preprocess_transforms : list
        Applied once per item before caching (e.g. normalisation); must keep shapes.
    train_cpu_transforms, val_cpu_transforms, train_gpu_transforms, val_gpu_transforms : list
        Dictionary transforms, composed by the properties of the same name.
    pin_memory : bool, default True
        Pin batches.
    prefetch_factor : int, optional
        Batches prefetched per worker (ignored without workers).
    array_key : str, default "0"
        Image array inside each FOV.
    scratch_dir : str or Path, optional
        Where the caches go (default: the system temp directory).
    include_wells : list of str, optional
        Wells to use.
    exclude_fovs : list of str, optional
        FOVs to leave out.
    """

    def __init__(
        self,
        data_path: str | Path,
        channels: str | Sequence[str],
        batch_size: int,
        num_workers: int,
        split_ratio: float,
        preprocess_transforms: Sequence[Callable],
        train_cpu_transforms: Sequence[Callable],
        val_cpu_transforms: Sequence[Callable],
        train_gpu_transforms: Sequence[Callable],
        val_gpu_transforms: Sequence[Callable],
        pin_memory: bool = True,
        prefetch_factor: int | None = None,
        array_key: str = "0",
        scratch_dir: str | Path | None = None,
        include_wells: list[str] | None = None,
        exclude_fovs: list[str] | None = None,
    ) -> None:
        _require_tensordict("MmappedDataModule")
        super().__init__(train_cpu_transforms, val_cpu_transforms, train_gpu_transforms, val_gpu_transforms)
        self.data_path = Path(data_path)
        self.channels = _ensure_channel_list(channels)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.split_ratio = split_ratio
        self._preprocessing_transforms = list(preprocess_transforms)
        self.pin_memory = pin_memory
        self.prefetch_factor = prefetch_factor if num_workers > 0 else None
        self.array_key = array_key
        self.scratch_dir = Path(scratch_dir) if scratch_dir is not None else Path(tempfile.gettempdir())
        self._include_wells = include_wells
        self._exclude_fovs = exclude_fovs
        self.prepare_data_per_node = True

    @property
    def preprocessing_transforms(self) -> Compose:
        """Composed transforms applied once, before caching."""
        return Compose(self._preprocessing_transforms)

    def _rank(self) -> int:
        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            return int(trainer.global_rank)
        return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0

    @property
    def cache_dir(self) -> Path:
        """``<scratch_dir>/<$SLURM_JOB_ID or viscy_cache>/<rank>/<plate name>``, created on access."""
        job = os.environ.get("SLURM_JOB_ID", "viscy_cache")
        path = self.scratch_dir / job / str(self._rank()) / self.data_path.name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _dataset(self, positions: list[Position], split: str, cpu_transform: Compose) -> MmappedDataset:
        n_items = sum(p[self.array_key].frames for p in positions)
        shape = (n_items, len(self.channels), *_volume_shape(positions[0], self.array_key))
        buffer = MemoryMappedTensor.empty(
            shape, dtype=torch.float32, filename=self.cache_dir / f"{split}.mmap", existsok=True
        )
        return MmappedDataset(
            positions,
            self.channels,
            # fresh flags every setup: rows left in the file by an earlier run are refilled, never trusted
            cache_map=_SharedFlags(n_items),
            buffer=buffer,
            preprocess_transforms=self.preprocessing_transforms,
            cpu_transform=cpu_transform,
            array_key=self.array_key,
        )

    def setup(self, stage: str) -> None:
        """Split FOVs and build the training and validation datasets (``fit`` and ``validate``)."""
        if stage not in ("fit", "validate"):
            raise NotImplementedError("Only fit and validate stages are supported.")
        plate = open_ome_zarr(self.data_path, layout="hcs", mode="r")
        train_positions, val_positions = split_positions(self._filter_fit_fovs(plate), self.split_ratio)
        self.train_dataset = self._dataset(train_positions, "train", self.train_cpu_transforms)
        self.val_dataset = self._dataset(val_positions, "val", self.val_cpu_transforms)
