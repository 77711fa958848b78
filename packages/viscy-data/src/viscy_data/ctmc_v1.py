"""CTMC v1 (Cell Tracking with Mitosis Detection Challenge) stored as two HCS OME-Zarr plates."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from iohub.ngff import open_ome_zarr
from monai.transforms import Compose
from torch.utils.data import Subset

from viscy_data.gpu_aug import CachedOmeZarrDataset
from viscy_data.gpu_transform import TransformListsDataModule
from viscy_data.volumes import VolumeCacheFactory

__all__ = ["CTMCv1DataModule"]


class CTMCv1DataModule(TransformListsDataModule):
    """Autoregression/pre-training data module for CTMC v1: one plate for training, one for validation.

    Every FOV and timepoint of each plate is an item (whole volume of one channel, cached); the
    validation set keeps every ``val_subsample_ratio``-th item. Normalisation metadata is not read.

    Parameters
    ----------
    train_data_path, val_data_path : str or Path
        HCS OME-Zarr plates.
    train_cpu_transforms, val_cpu_transforms, train_gpu_transforms, val_gpu_transforms : list
        Dictionary transforms, composed by the properties of the same name.
    batch_size : int, default 16
        Items per batch.
    num_workers : int, default 8
        DataLoader workers.
    val_subsample_ratio : int, default 30
        Keep one validation item in this many.
    channel_name : str, default "DIC"
        The channel to load.
    pin_memory : bool, default True
        Pin batches.
    """

    def __init__(
        self,
        train_data_path: str | Path,
        val_data_path: str | Path,
        train_cpu_transforms: Sequence[Callable],
        val_cpu_transforms: Sequence[Callable],
        train_gpu_transforms: Sequence[Callable],
        val_gpu_transforms: Sequence[Callable],
        batch_size: int = 16,
        num_workers: int = 8,
        val_subsample_ratio: int = 30,
        channel_name: str = "DIC",
        pin_memory: bool = True,
    ) -> None:
        super().__init__(train_cpu_transforms, val_cpu_transforms, train_gpu_transforms, val_gpu_transforms)
        if val_subsample_ratio < 1:
            raise ValueError(f"val_subsample_ratio must be >= 1, got {val_subsample_ratio}")
        self.train_data_path = Path(train_data_path)
        self.val_data_path = Path(val_data_path)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.val_subsample_ratio = val_subsample_ratio
        self.channel_name = channel_name
        self.pin_memory = pin_memory
        self.prefetch_factor = None
        self._caches = VolumeCacheFactory()

    def _dataset(self, data_path: Path, transform: Compose) -> CachedOmeZarrDataset:
        plate = open_ome_zarr(data_path, layout="hcs", mode="r")
        positions = [position for _, position in plate.positions()]
        if not positions:
            raise ValueError(f"plate '{data_path}' has no FOVs")
        return CachedOmeZarrDataset(
            positions,
            [self.channel_name],
            # one cache per split: the two plates share FOV names
            cache_map=self._caches.new(self.num_workers > 0),
            transform=transform,
            load_normalization_metadata=False,
        )

    def setup(self, stage: str) -> None:
        """Build the training set and the subsampled validation set (``fit`` only)."""
        if stage != "fit":
            raise NotImplementedError("Only fit stage is supported")
        self.train_dataset = self._dataset(self.train_data_path, self.train_cpu_transforms)
        full_val = self._dataset(self.val_data_path, self.val_cpu_transforms)
        self.val_dataset = Subset(full_val, range(0, len(full_val), self.val_subsample_ratio))

    def teardown(self, stage: str) -> None:
        """Stop the cache server process, if one was started."""
        self._caches.shutdown()
