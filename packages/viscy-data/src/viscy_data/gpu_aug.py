"""DataModules whose augmentations run on the GPU, and an in-RAM cache of whole OME-Zarr volumes.

CPU transforms run in the dataset (DataLoader workers); GPU transforms are only *held* by the data
module: the LightningModule reads ``datamodule.train_gpu_transforms`` / ``val_gpu_transforms`` and
applies them to the batch once it is on the device.
"""

from __future__ import annotations

import logging
import multiprocessing
from abc import ABC, abstractmethod
from collections.abc import Callable, MutableMapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from iohub.ngff import Plate, Position, open_ome_zarr
from lightning.pytorch import LightningDataModule
from monai.data import list_data_collate
from monai.transforms import Compose
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from viscy_data._io import LazyPositions, store_root
from viscy_data._utils import _ensure_channel_list
from viscy_data.distributed import ShardedDistributedSampler
from viscy_data.errors import ImageReadError
from viscy_data.norm_meta import NORM_META_KEY, read_norm_meta, select_timepoint
from viscy_data.select import SelectWell

__all__ = ["CachedOmeZarrDataModule", "CachedOmeZarrDataset", "GPUTransformDataModule"]

_logger = logging.getLogger(__name__)


class GPUTransformDataModule(ABC, LightningDataModule):
    """Base of data modules that split augmentation between CPU workers and the GPU.

    Subclasses set ``train_dataset``, ``val_dataset``, ``batch_size``, ``num_workers``,
    ``pin_memory`` and ``prefetch_factor``, and implement the four transform properties. Batches are
    collated with MONAI ``list_data_collate``, so items that are lists (multi-sample CPU
    transforms) are flattened into the batch. Under an initialised ``torch.distributed`` process
    group the loaders use :class:`~viscy_data.distributed.ShardedDistributedSampler`.
    """

    train_dataset: Dataset
    val_dataset: Dataset
    batch_size: int
    num_workers: int
    pin_memory: bool
    prefetch_factor: int | None

    @property
    @abstractmethod
    def train_cpu_transforms(self) -> Compose:
        """Transforms applied per item by the training dataset."""

    @property
    @abstractmethod
    def train_gpu_transforms(self) -> Compose:
        """Transforms the LightningModule applies to training batches on the device."""

    @property
    @abstractmethod
    def val_cpu_transforms(self) -> Compose:
        """Transforms applied per item by the validation dataset."""

    @property
    @abstractmethod
    def val_gpu_transforms(self) -> Compose:
        """Transforms the LightningModule applies to validation batches on the device."""

    def _maybe_sampler(self, dataset: Dataset, shuffle: bool) -> ShardedDistributedSampler | None:
        if dist.is_available() and dist.is_initialized():
            return ShardedDistributedSampler(dataset, shuffle=shuffle)
        return None

    def _loader(self, dataset: Dataset | None, train: bool) -> DataLoader:
        if dataset is None:
            split = "train" if train else "val"
            raise RuntimeError(f"{type(self).__name__} has no {split} dataset; call setup('fit') first")
        sampler = self._maybe_sampler(dataset, shuffle=train)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            shuffle=train and sampler is None,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=self.pin_memory,
            drop_last=False,
            collate_fn=list_data_collate,
            # DataLoader rejects a prefetch factor without workers
            prefetch_factor=self.prefetch_factor if self.num_workers > 0 else None,
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled training loader (sharded under DDP)."""
        return self._loader(getattr(self, "train_dataset", None), train=True)

    def val_dataloader(self) -> DataLoader:
        """Return the validation loader, in dataset order (sharded under DDP)."""
        return self._loader(getattr(self, "val_dataset", None), train=False)


class _TransformListsDataModule(GPUTransformDataModule):
    """A :class:`GPUTransformDataModule` whose four transform properties compose stored lists.

    Subclasses fill ``_train_cpu_transforms``, ``_val_cpu_transforms``, ``_train_gpu_transforms`` and
    ``_val_gpu_transforms`` in their constructor.
    """

    @property
    def train_cpu_transforms(self) -> Compose:
        """Composed training CPU transforms."""
        return Compose(self._train_cpu_transforms)

    @property
    def train_gpu_transforms(self) -> Compose:
        """Composed training GPU transforms."""
        return Compose(self._train_gpu_transforms)

    @property
    def val_cpu_transforms(self) -> Compose:
        """Composed validation CPU transforms."""
        return Compose(self._val_cpu_transforms)

    @property
    def val_gpu_transforms(self) -> Compose:
        """Composed validation GPU transforms."""
        return Compose(self._val_gpu_transforms)


class _CacheFactory:
    """Hands out one empty cache mapping per dataset.

    Without workers a plain dict is the fastest cache. With workers the cache must be shared, so a
    single ``multiprocessing.Manager`` is started on first use (not once per ``setup``) and shut
    down by :meth:`shutdown`. Each dataset gets its own mapping, so splits can never read each
    other's volumes.
    """

    def __init__(self) -> None:
        self._manager = None

    def new(self, shared: bool) -> MutableMapping:
        if not shared:
            return {}
        if self._manager is None:
            self._manager = multiprocessing.Manager()
        return self._manager.dict()

    def shutdown(self) -> None:
        if self._manager is not None:
            self._manager.shutdown()
            self._manager = None

    def __getstate__(self) -> dict:
        # a Manager owns a server process and cannot be pickled; a copy starts its own when needed
        return {"_manager": None}


def _resolve_channel_indices(position: Position, channel_names: Sequence[str]) -> list[int]:
    """Channel indices of ``channel_names`` in ``position``; unknown names list the available ones."""
    available = list(position.channel_names)
    missing = [name for name in channel_names if name not in available]
    if missing:
        raise ValueError(f"channel(s) {missing} not found in FOV '{_fov_name(position)}'; available: {available}")
    return [available.index(name) for name in channel_names]


def _fov_name(position: Position) -> str:
    return position.zgroup.name.strip("/")


def _store_id(position: Position) -> str:
    """Return a string identifying the store a position lives in (its root path when on disk)."""
    store = position.zgroup.store
    return str(getattr(store, "root", None) or id(store))


def _read_channels(array: Any, t: int, channel_indices: Sequence[int]) -> Tensor:
    """Read ``(C, Z, Y, X)`` of timepoint ``t`` as float32.

    Reads the covering channel range with a slice and picks channels in numpy: a zarr orthogonal
    selection with a list of indices hangs in forked DataLoader workers (zarr 3), a slice does not.
    """
    lo, hi = min(channel_indices), max(channel_indices) + 1
    block = np.asarray(array[t, lo:hi])
    return torch.from_numpy(np.asarray(block[np.asarray(channel_indices) - lo], dtype=np.float32))


def _collect_norm_attrs(positions: Sequence[Position], fov_names: Sequence[str]) -> list[dict | None]:
    """Each FOV's statistics attribute, read once; a mix of FOVs with and without statistics is an error."""
    raw = [p.zattrs.get(NORM_META_KEY) for p in positions]
    missing = [name for name, value in zip(fov_names, raw) if value is None]
    if missing and len(missing) < len(raw):
        raise ValueError(
            f"FOVs {missing} have no normalisation metadata but others do; batches cannot mix them. "
            "Run `viscy preprocess` on the store or set load_normalization_metadata=False"
        )
    return [None if value is None else {NORM_META_KEY: value} for value in raw]


def _timepoint_index(n_frames: Sequence[int]) -> np.ndarray:
    """Offsets of each FOV's first item when items enumerate (FOV, timepoint) FOV by FOV."""
    return np.concatenate([[0], np.cumsum(n_frames, dtype=np.int64)])


class _FovTimepointItems:
    """Items enumerating (FOV, timepoint) FOV by FOV, from the offsets ``self._offsets`` of ``_timepoint_index``."""

    _offsets: np.ndarray

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def _locate(self, index: int) -> tuple[int, int]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        index %= len(self)
        fov = int(np.searchsorted(self._offsets, index, side="right")) - 1
        return fov, index - int(self._offsets[fov])


class CachedOmeZarrDataset(_FovTimepointItems, Dataset):
    """One item per (FOV, timepoint): the full ``(C, Z, Y, X)`` volume, cached after the first read.

    Parameters
    ----------
    positions : sequence of iohub Position
        FOVs to serve; items enumerate them in order, then time.
    channel_names : str or sequence of str
        Channels to load (in this order).
    cache_map : MutableMapping
        Where volumes are cached: a ``dict`` for single-process loading, a
        ``multiprocessing.Manager().dict()`` to share it with DataLoader workers. Keys are
        ``(store, FOV name, array key, t)``, unique across stores, so a map shared by two datasets
        never hands one dataset the other's volume.
    transform : callable, optional
        Dictionary transform applied to ``{channel: (1, Z, Y, X), "norm_meta": ...}``; may return a
        list of samples.
    array_key : str, default "0"
        Image array inside each FOV (multiscale level).
    load_normalization_metadata : bool, default True
        Add the FOV's normalisation statistics under ``"norm_meta"`` (``timepoint_statistics``
        already selected for the item's timepoint). FOVs without statistics give no key.
    skip_cache : bool, default False
        Read every item from the store instead of caching.

    Notes
    -----
    Items are always lists of sample dicts. Volumes are returned as float32 copies, so transforms
    may modify them in place without corrupting the cache.
    """

    def __init__(
        self,
        positions: Sequence[Position],
        channel_names: str | Sequence[str],
        cache_map: MutableMapping,
        transform: Callable | None = None,
        array_key: str = "0",
        load_normalization_metadata: bool = True,
        skip_cache: bool = False,
    ) -> None:
        super().__init__()
        positions = list(positions)
        if not positions:
            raise ValueError("CachedOmeZarrDataset needs at least one FOV")
        # zarr handles opened before a DataLoader forks hang in the workers: reopen per process
        self.positions = LazyPositions(positions)
        self.channel_names = _ensure_channel_list(channel_names)
        self.cache_map = cache_map
        self.transform = transform
        self.array_key = array_key
        self.load_normalization_metadata = load_normalization_metadata
        self.skip_cache = skip_cache
        self._channel_indices = _resolve_channel_indices(positions[0], self.channel_names)
        self._fov_names = [_fov_name(p) for p in positions]
        self._store_ids = [_store_id(p) for p in positions]
        for position, name in zip(positions, self._fov_names):
            if array_key not in position.array_keys():
                raise KeyError(f"FOV '{name}' has no array '{array_key}'; arrays: {list(position.array_keys())}")
        self._offsets = _timepoint_index([p[array_key].frames for p in positions])
        # attributes are read once here, never per item
        self._norm_attrs = _collect_norm_attrs(positions, self._fov_names) if load_normalization_metadata else None

    def _read_volume(self, fov: int, t: int) -> Tensor:
        position = self.positions[fov]
        array = position[self.array_key]
        try:
            return _read_channels(array, t, self._channel_indices)
        except Exception as err:  # a missing, truncated or corrupt chunk
            raise ImageReadError.describe(
                err,
                path=store_root(position) / array.path,
                fov=self._fov_names[fov],
                timepoint=t,
                array=self.array_key,
                request={"c": list(self._channel_indices)},
                shape=array.shape,
            ) from err

    def _volume(self, fov: int, t: int) -> Tensor:
        if self.skip_cache:
            return self._read_volume(fov, t)
        key = (self._store_ids[fov], self._fov_names[fov], self.array_key, t)
        volume = self.cache_map.get(key)
        if volume is None:
            volume = self._read_volume(fov, t)
            self.cache_map[key] = volume
        return volume.clone()

    def _norm_meta(self, fov: int, t: int) -> dict | None:
        if self._norm_attrs is None or self._norm_attrs[fov] is None:
            return None
        return select_timepoint(read_norm_meta(self._norm_attrs[fov]), t)

    def __getitem__(self, index: int) -> list[dict[str, Any]]:
        """Return ``[{channel: (1, Z, Y, X) float32, ..., "norm_meta": ...}]`` after the transform."""
        fov, t = self._locate(index)
        volume = self._volume(fov, t)
        sample: dict[str, Any] = {name: volume[i : i + 1] for i, name in enumerate(self.channel_names)}
        norm_meta = self._norm_meta(fov, t)
        if norm_meta is not None:
            sample["norm_meta"] = norm_meta
        if self.transform is not None:
            sample = self.transform(sample)
        return sample if isinstance(sample, list) else [sample]


def _split_positions(positions: Sequence[Position], split_ratio: float) -> tuple[list[Position], list[Position]]:
    """Shuffle FOVs and split them; the shuffle is seeded from torch's seed, never drawing from the global RNG."""
    if not 0.0 < split_ratio < 1.0:
        raise ValueError(f"split_ratio must be in (0, 1), got {split_ratio}")
    generator = torch.Generator().manual_seed(torch.initial_seed())
    order = torch.randperm(len(positions), generator=generator).tolist()
    n_train = int(len(positions) * split_ratio)
    if n_train == 0 or n_train == len(positions):
        raise ValueError(
            f"split_ratio {split_ratio} of {len(positions)} FOVs leaves an empty training or validation set"
        )
    shuffled = [positions[i] for i in order]
    return shuffled[:n_train], shuffled[n_train:]


class CachedOmeZarrDataModule(_TransformListsDataModule, SelectWell):
    """Whole-volume cached OME-Zarr training with GPU augmentation.

    Parameters
    ----------
    data_path : str or Path
        HCS OME-Zarr plate.
    channels : str or sequence of str
        Channels to load.
    batch_size : int
        Items per batch (multi-sample CPU transforms multiply it).
    num_workers : int
        DataLoader workers; with workers the caches live in a ``multiprocessing.Manager``.
    split_ratio : float
        Fraction of FOVs used for training (FOVs shuffled under ``torch.initial_seed()``).
    train_cpu_transforms, val_cpu_transforms, train_gpu_transforms, val_gpu_transforms : list
        Dictionary transforms, composed by the properties of the same name.
    pin_memory : bool, default True
        Pin batches in page-locked memory.
    skip_cache : bool, default False
        Read every item from the store.
    include_wells : list of str, optional
        Wells (``"A/1"``) to use; all by default.
    exclude_fovs : list of str, optional
        FOVs (``"A/1/0"``) to leave out.
    prefetch_factor : int, optional
        Batches prefetched per worker.

    Notes
    -----
    Training and validation datasets get separate caches (and store-unique keys), so validation can
    never be served a training volume.
    """

    def __init__(
        self,
        data_path: str | Path,
        channels: str | Sequence[str],
        batch_size: int,
        num_workers: int,
        split_ratio: float,
        train_cpu_transforms: Sequence[Callable],
        val_cpu_transforms: Sequence[Callable],
        train_gpu_transforms: Sequence[Callable],
        val_gpu_transforms: Sequence[Callable],
        pin_memory: bool = True,
        skip_cache: bool = False,
        include_wells: list[str] | None = None,
        exclude_fovs: list[str] | None = None,
        prefetch_factor: int | None = None,
    ) -> None:
        super().__init__()
        self.data_path = Path(data_path)
        self.channels = _ensure_channel_list(channels)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.split_ratio = split_ratio
        self._train_cpu_transforms = list(train_cpu_transforms)
        self._val_cpu_transforms = list(val_cpu_transforms)
        self._train_gpu_transforms = list(train_gpu_transforms)
        self._val_gpu_transforms = list(val_gpu_transforms)
        self.pin_memory = pin_memory
        self.skip_cache = skip_cache
        self._include_wells = include_wells
        self._exclude_fovs = exclude_fovs
        self.prefetch_factor = prefetch_factor
        self._caches = _CacheFactory()

    def _open_plate(self) -> Plate:
        return open_ome_zarr(self.data_path, layout="hcs", mode="r")

    def setup(self, stage: str) -> None:
        """Split FOVs and build the training and validation datasets (``fit`` and ``validate``)."""
        if stage not in ("fit", "validate"):
            raise NotImplementedError("Only fit and validate stages are supported.")
        positions = self._filter_fit_fovs(self._open_plate())
        train_positions, val_positions = _split_positions(positions, self.split_ratio)
        shared = self.num_workers > 0
        self.train_dataset = CachedOmeZarrDataset(
            train_positions,
            self.channels,
            cache_map=self._caches.new(shared),
            transform=self.train_cpu_transforms,
            skip_cache=self.skip_cache,
        )
        self.val_dataset = CachedOmeZarrDataset(
            val_positions,
            self.channels,
            cache_map=self._caches.new(shared),
            transform=self.val_cpu_transforms,
            skip_cache=self.skip_cache,
        )
        _logger.debug("%d training and %d validation items", len(self.train_dataset), len(self.val_dataset))

    def teardown(self, stage: str) -> None:
        """Stop the cache server process, if one was started."""
        self._caches.shutdown()
