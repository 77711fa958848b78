"""Whole-volume OME-Zarr training with GPU augmentation: an in-RAM cache of (FOV, timepoint) volumes.

CPU transforms run in the dataset (DataLoader workers); GPU transforms are only *held* by the data
module (see :class:`~viscy_data.gpu_transform.GPUTransformDataModule`, re-exported here).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, MutableMapping, Sequence
from pathlib import Path
from typing import Any

from iohub.ngff import Plate, Position, open_ome_zarr
from torch import Tensor
from torch.utils.data import Dataset

from viscy_data._utils import _ensure_channel_list
from viscy_data.gpu_transform import GPUTransformDataModule, TransformListsDataModule
from viscy_data.norm_meta import NORM_META_KEY, read_norm_meta, select_timepoint
from viscy_data.select import SelectWell
from viscy_data.volumes import FovTimepointItems, VolumeCacheFactory, split_positions

__all__ = ["CachedOmeZarrDataModule", "CachedOmeZarrDataset", "GPUTransformDataModule"]

_logger = logging.getLogger(__name__)


def _store_id(position: Position) -> str:
    """Return a string identifying the store a position lives in (its root path when on disk)."""
    store = position.zgroup.store
    return str(getattr(store, "root", None) or id(store))


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


class CachedOmeZarrDataset(FovTimepointItems, Dataset):
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
        super().__init__(positions, channel_names, array_key)
        positions = list(positions)
        self.cache_map = cache_map
        self.transform = transform
        self.load_normalization_metadata = load_normalization_metadata
        self.skip_cache = skip_cache
        self._store_ids = [_store_id(p) for p in positions]
        # attributes are read once here, never per item
        self._norm_attrs = _collect_norm_attrs(positions, self._fov_names) if load_normalization_metadata else None

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


class CachedOmeZarrDataModule(TransformListsDataModule, SelectWell):
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
        super().__init__(train_cpu_transforms, val_cpu_transforms, train_gpu_transforms, val_gpu_transforms)
        self.data_path = Path(data_path)
        self.channels = _ensure_channel_list(channels)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.split_ratio = split_ratio
        self.pin_memory = pin_memory
        self.skip_cache = skip_cache
        self._include_wells = include_wells
        self._exclude_fovs = exclude_fovs
        self.prefetch_factor = prefetch_factor
        self._caches = VolumeCacheFactory()

    def _open_plate(self) -> Plate:
        return open_ome_zarr(self.data_path, layout="hcs", mode="r")

    def setup(self, stage: str) -> None:
        """Split FOVs and build the training and validation datasets (``fit`` and ``validate``)."""
        if stage not in ("fit", "validate"):
            raise NotImplementedError("Only fit and validate stages are supported.")
        positions = self._filter_fit_fovs(self._open_plate())
        train_positions, val_positions = split_positions(positions, self.split_ratio)
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
