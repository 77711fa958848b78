"""The virtual-staining DataModule over HCS OME-Zarr plates (datasets in :mod:`viscy_data.sliding_window`)."""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from iohub.ngff import Plate, Position, open_ome_zarr
from lightning.pytorch import LightningDataModule
from monai.transforms import CenterSpatialCropd, Compose, MapTransform, MultiSampleTrait, RandAffined
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from viscy_data._io import fov_name, open_plate
from viscy_data._typing import ChannelMap, Sample
from viscy_data._utils import _collate_samples, _ensure_channel_list, _read_norm_meta
from viscy_data.sliding_window import MaskTestDataset, SlidingWindowDataset

__all__ = ["HCSDataModule", "MaskTestDataset", "SlidingWindowDataset"]

_logger = logging.getLogger(__name__)

#: marker written into a cache copy once it is complete
_CACHE_DONE = ".viscy_cache_complete"


def _is_normalize_sampled(transform: Any) -> bool:
    """Whether a transform reads stored statistics (duck-typed to avoid importing viscy-transforms)."""
    return type(transform).__name__ == "NormalizeSampled"


class HCSDataModule(LightningDataModule):
    """Virtual-staining DataModule over an HCS OME-Zarr plate.

    Parameters
    ----------
    data_path : str or pathlib.Path
        The plate; for prediction also a single FOV (``plate.zarr/A/1/0``).
    source_channel, target_channel : str or sequence of str
        Input and target channel names.
    z_window_size : int
        Z slices per sample (final).
    split_ratio : float, default 0.8
        Fraction of FOVs used for training (the rest validate).
    batch_size : int, default 16
        Samples per batch (patches, for multi-sample augmentations).
    num_workers : int, default 8
        DataLoader workers.
    target_2d : bool, default False
        Keep only the centre Z slice of ``target`` (before transfer to the device).
    yx_patch_size : tuple of int, default (256, 256)
        Final YX size (centre crop).
    normalizations, augmentations : list of MONAI dict transforms
        Applied in that order (augmentations only when training).
    caching : bool, default False
        Copy the plate to local scratch (``cache_path``) in ``prepare_data`` and read the copy.
    ground_truth_masks : str or pathlib.Path, optional
        Mask PNG directory for the test stage (:class:`MaskTestDataset`).
    persistent_workers : bool, default False
        Keep workers alive between epochs (only with workers).
    prefetch_factor : int, optional
        Batches prefetched per worker (only with workers).
    array_key : str, default "0"
        Image array of each FOV.
    pin_memory : bool, default False
        Pin batches in page-locked memory.
    seed : int, optional
        Seed of the train/val FOV split; None uses the global torch RNG (``seed_everything``).
    """

    def __init__(
        self,
        data_path: str | Path,
        source_channel: str | Sequence[str],
        target_channel: str | Sequence[str],
        z_window_size: int,
        split_ratio: float = 0.8,
        batch_size: int = 16,
        num_workers: int = 8,
        target_2d: bool = False,
        yx_patch_size: tuple[int, int] = (256, 256),
        normalizations: Sequence[MapTransform] = (),
        augmentations: Sequence[MapTransform] = (),
        caching: bool = False,
        ground_truth_masks: str | Path | None = None,
        persistent_workers: bool = False,
        prefetch_factor: int | None = None,
        array_key: str = "0",
        pin_memory: bool = False,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        self.data_path = Path(data_path)
        self.source_channel = _ensure_channel_list(source_channel)
        self.target_channel = _ensure_channel_list(target_channel)
        self.z_window_size = int(z_window_size)
        if not 0 < split_ratio <= 1:
            raise ValueError(f"split_ratio must be in (0, 1], got {split_ratio}")
        self.split_ratio = split_ratio
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.target_2d = target_2d
        self.yx_patch_size = tuple(yx_patch_size)
        self.normalizations = list(normalizations)
        self.augmentations = list(augmentations)
        self.caching = caching
        self.ground_truth_masks = ground_truth_masks
        self.persistent_workers = persistent_workers
        self.prefetch_factor = prefetch_factor
        self.array_key = array_key
        self.pin_memory = pin_memory
        self.seed = seed
        self.prepare_data_per_node = True
        self.train_patches_per_stack = 1
        self.train_z_scale_range = (0.0, 0.0)
        self._predicting = False

    # ------------------------------------------------------------------ plate access
    @property
    def cache_path(self) -> Path:
        """Local scratch copy of the plate used when ``caching``."""
        job = os.environ.get("SLURM_JOB_ID", "viscy_cache")
        return Path(tempfile.gettempdir()) / job / self.data_path.name

    @property
    def maybe_cached_data_path(self) -> Path:
        """The cache copy when ``caching``, else ``data_path``."""
        return self.cache_path if self.caching else self.data_path

    def prepare_data(self) -> None:
        """Copy the plate to ``cache_path`` once (works for zarr v2 and v3 stores alike)."""
        if not self.caching:
            return
        if (self.cache_path / _CACHE_DONE).exists():
            _logger.info("using cached copy %s of %s", self.cache_path, self.data_path)
            return
        open_plate(self.data_path).close()  # fail early and clearly on a bad store
        _logger.info("caching %s to %s", self.data_path, self.cache_path)
        shutil.copytree(self.data_path, self.cache_path, dirs_exist_ok=True)
        (self.cache_path / _CACHE_DONE).touch()

    def _open(self) -> Plate:
        path = self.maybe_cached_data_path
        if self.caching and not (path / _CACHE_DONE).exists():
            raise FileNotFoundError(f"cache copy {path} is incomplete; call prepare_data() first")
        return open_plate(path)

    @property
    def _base_channels(self) -> ChannelMap:
        return {"source": self.source_channel, "target": self.target_channel}

    # ------------------------------------------------------------------ transforms
    def _crop(self, keys: list[str], z_size: int | None = None) -> CenterSpatialCropd:
        return CenterSpatialCropd(keys=keys, roi_size=(z_size or self.z_window_size, *self.yx_patch_size))

    def _val_transform(self) -> list[Callable]:
        return [*self.normalizations, self._crop(self.source_channel + self.target_channel)]

    def _inspect_augmentations(self) -> int:
        """Set ``train_patches_per_stack`` and ``train_z_scale_range``; return the training Z window."""
        affines = [a for a in self.augmentations if isinstance(a, RandAffined)]
        if len(affines) > 1:
            raise ValueError("Only one RandAffined augmentation is allowed.")
        z_window = self.z_window_size
        if affines:
            scale = affines[0].rand_affine.rand_affine_grid.scale_range
            z_scale = scale[0] if len(scale) else 0.0
            lo, hi = (-z_scale, z_scale) if np.isscalar(z_scale) else (float(z_scale[0]), float(z_scale[1]))
            if not lo <= 0 <= hi:
                raise ValueError(f"Invalid scaling range: {(lo, hi)}")
            self.train_z_scale_range = (lo, hi)
            if hi > 0:
                # a larger stack lets the final crop cut z_window_size slices after zooming in
                z_window = max(self.z_window_size, math.ceil(self.z_window_size * (1 + hi)) // 2 * 2)
        self.train_patches_per_stack = 1
        for aug in self.augmentations:
            if isinstance(aug, MultiSampleTrait):
                n = getattr(aug, "num_samples", None) or aug.cropper.num_samples
                if self.batch_size % n:
                    raise ValueError(
                        f"Batch size must be divisible by `num_samples` per stack. Got batch size {self.batch_size} "
                        f"and {n} samples per stack."
                    )
                self.train_patches_per_stack = n
        return z_window

    def _check_norm_meta(self, positions: Sequence[Position]) -> None:
        if not any(_is_normalize_sampled(t) for t in self.normalizations):
            return
        missing = [fov_name(p) for p in positions if _read_norm_meta(p) is None]
        if missing:
            raise ValueError(
                f"NormalizeSampled needs stored statistics, but FOV(s) {missing[:5]} of {self.data_path} have no "
                "'normalization' attributes: run `viscy preprocess` or normalise on the fly "
                "(e.g. ScaleIntensityRangePercentilesd)"
            )

    # ------------------------------------------------------------------ setup
    def setup(self, stage: str | None = None) -> None:
        """Build the datasets of ``stage`` (fit, validate, test or predict)."""
        self._predicting = stage == "predict"
        if stage in ("fit", "validate"):
            self._setup_fit()
        elif stage == "test":
            self._setup_test()
        elif stage == "predict":
            self._setup_predict()
        else:
            raise NotImplementedError(f"{stage} stage")

    def _split(self, n: int) -> tuple[list[int], list[int]]:
        generator = None if self.seed is None else torch.Generator().manual_seed(self.seed)
        order = torch.randperm(n, generator=generator).tolist()
        n_train = int(n * self.split_ratio)
        return order[:n_train], order[n_train:]

    def _check_patch_size(self, positions: Sequence[Position]) -> None:
        """Fail, naming yx_patch_size, when a patch is larger than an image (the crop would be smaller)."""
        small = [(fov_name(p), p[self.array_key].height, p[self.array_key].width) for p in positions]
        small = [s for s in small if s[1] < self.yx_patch_size[0] or s[2] < self.yx_patch_size[1]]
        if small:
            name, height, width = small[0]
            raise ValueError(
                f"yx_patch_size {self.yx_patch_size} is larger than FOV '{name}' ({height}, {width})"
                f"{f' and {len(small) - 1} other FOV(s)' if len(small) > 1 else ''}: reduce yx_patch_size"
            )

    def _setup_fit(self) -> None:
        plate = self._open()
        positions = [p for _, p in plate.positions()]
        self._check_norm_meta(positions)
        self._check_patch_size(positions)
        z_train = self._inspect_augmentations()
        train_idx, val_idx = self._split(len(positions))
        if not train_idx or not val_idx:
            raise ValueError(
                f"split_ratio={self.split_ratio} of {len(positions)} FOVs leaves an empty train or validation set"
            )
        keys = self.source_channel + self.target_channel
        train_tf = Compose([*self.normalizations, *self.augmentations, self._crop(keys)])
        self.train_dataset = SlidingWindowDataset(
            [positions[i] for i in train_idx], self._base_channels, z_train, self.array_key, train_tf
        )
        self.val_dataset = SlidingWindowDataset(
            [positions[i] for i in val_idx],
            self._base_channels,
            self.z_window_size,
            self.array_key,
            Compose(self._val_transform()),
        )

    def _setup_test(self) -> None:
        plate = self._open()
        positions = [p for _, p in plate.positions()]
        self._check_norm_meta(positions)
        if self.batch_size != 1:
            _logger.warning("the test loader uses batch size 1, not %d", self.batch_size)
        transform = Compose(self.normalizations)
        if self.ground_truth_masks:
            self.test_dataset = MaskTestDataset(
                positions, self._base_channels, self.z_window_size, transform, self.ground_truth_masks
            )
        else:
            self.test_dataset = SlidingWindowDataset(
                positions, self._base_channels, self.z_window_size, self.array_key, transform
            )

    def _setup_predict(self) -> None:
        if self.caching:
            _logger.warning("caching is ignored for prediction")
        node = open_ome_zarr(self.data_path, mode="r") if self.data_path.exists() else None
        if isinstance(node, Position):
            # a single FOV: open its plate three levels up and keep that FOV only
            name = "/".join(self.data_path.parts[-3:])
            try:
                plate = open_plate(self.data_path.parents[2])
            except (FileNotFoundError, ValueError) as err:
                raise FileNotFoundError("Parent HCS store not found for single FOV input.") from err
            positions = [plate[name]]
        else:
            positions = [p for _, p in open_plate(self.data_path).positions()]
        self._check_norm_meta(positions)
        self.predict_dataset = SlidingWindowDataset(
            positions,
            {"source": self.source_channel},
            self.z_window_size,
            self.array_key,
            Compose(self.normalizations),
        )

    # ------------------------------------------------------------------ loaders
    def _loader_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"num_workers": self.num_workers, "pin_memory": self.pin_memory}
        if self.num_workers > 0:
            kwargs["persistent_workers"] = self.persistent_workers
            kwargs["prefetch_factor"] = self.prefetch_factor
        return kwargs

    def _ordered_loader(self, dataset: Dataset, batch_size: int) -> DataLoader:
        return DataLoader(
            dataset, batch_size=batch_size, shuffle=False, collate_fn=_collate_samples, **self._loader_kwargs()
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled, ``batch_size // train_patches_per_stack`` stacks per batch, incomplete batch dropped."""
        return DataLoader(
            self.train_dataset,
            batch_size=self.batch_size // self.train_patches_per_stack,
            shuffle=True,
            drop_last=True,
            collate_fn=_collate_samples,
            **self._loader_kwargs(),
        )

    def val_dataloader(self) -> DataLoader:
        """Return validation batches in order (same batch structure as training)."""
        return self._ordered_loader(self.val_dataset, self.batch_size)

    def test_dataloader(self) -> DataLoader:
        """One window per batch."""
        return self._ordered_loader(self.test_dataset, 1)

    def predict_dataloader(self) -> DataLoader:
        """Prediction batches in order."""
        return DataLoader(
            self.predict_dataset,
            batch_size=self.batch_size,
            shuffle=False,
            collate_fn=_collate_samples,
            **self._loader_kwargs(),
        )

    def on_before_batch_transfer(self, batch: Sample | Tensor, dataloader_idx: int) -> Sample | Tensor:
        """Keep the centre Z slice of ``target`` when ``target_2d`` (not when predicting)."""
        trainer = getattr(self, "trainer", None)
        predicting = trainer.predicting if trainer is not None else self._predicting
        if isinstance(batch, Tensor) or predicting or not self.target_2d or "target" not in batch:
            return batch
        target = batch["target"]
        z = target.shape[2] // 2
        batch["target"] = target[:, :, z : z + 1]
        return batch
