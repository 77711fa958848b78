"""Base classes of the DataModules that split augmentation between CPU workers and the GPU.

CPU transforms run in the dataset (DataLoader workers); GPU transforms are only *held* by the data
module: the LightningModule reads ``datamodule.train_gpu_transforms`` / ``val_gpu_transforms`` and
applies them to the batch once it is on the device. Subclasses: ``CachedOmeZarrDataModule``
(:mod:`viscy_data.gpu_aug`), ``MmappedDataModule``, ``CTMCv1DataModule``, ``LiveCellDataModule``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

import torch.distributed as dist
from lightning.pytorch import LightningDataModule
from monai.data import list_data_collate
from monai.transforms import Compose
from torch.utils.data import DataLoader, Dataset

from viscy_data.distributed import ShardedDistributedSampler

__all__ = ["GPUTransformDataModule", "TransformListsDataModule"]


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


class TransformListsDataModule(GPUTransformDataModule):
    """A :class:`GPUTransformDataModule` whose four transform properties compose lists given at construction.

    Parameters
    ----------
    train_cpu_transforms, val_cpu_transforms, train_gpu_transforms, val_gpu_transforms : sequence, optional
        Dictionary transforms (``None``: none), composed by the properties of the same name.
    """

    def __init__(
        self,
        train_cpu_transforms: Sequence[Callable] | None = None,
        val_cpu_transforms: Sequence[Callable] | None = None,
        train_gpu_transforms: Sequence[Callable] | None = None,
        val_gpu_transforms: Sequence[Callable] | None = None,
    ) -> None:
        super().__init__()
        self._train_cpu_transforms = list(train_cpu_transforms or [])
        self._val_cpu_transforms = list(val_cpu_transforms or [])
        self._train_gpu_transforms = list(train_gpu_transforms or [])
        self._val_gpu_transforms = list(val_gpu_transforms or [])

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
