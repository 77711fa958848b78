"""Combining several data modules: side by side (Lightning ``CombinedLoader``) or concatenated."""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from lightning.pytorch import LightningDataModule
from lightning.pytorch.utilities.combined_loader import CombinedLoader
from monai.data import ThreadDataLoader
from torch import Tensor
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from viscy_data._utils import _collate_samples
from viscy_data.distributed import ShardedDistributedSampler
from viscy_data.loading import thread_worker_loader

__all__ = [
    "BatchedConcatDataModule",
    "BatchedConcatDataset",
    "CachedConcatDataModule",
    "CombineMode",
    "CombinedDataModule",
    "ConcatDataModule",
]


class CombineMode(Enum):
    """How :class:`CombinedDataModule` iterates its children (Lightning ``CombinedLoader`` modes)."""

    MIN_SIZE = "min_size"
    MAX_SIZE_CYCLE = "max_size_cycle"
    MAX_SIZE = "max_size"
    SEQUENTIAL = "sequential"


def _identity(batch: Any) -> Any:
    return batch


def _check_children(data_modules: Sequence[LightningDataModule]) -> list[LightningDataModule]:
    data_modules = list(data_modules)
    if not data_modules:
        raise ValueError("at least one data module is required")
    return data_modules


class CombinedDataModule(LightningDataModule):
    """Iterate several data modules together, one batch of each per step (or one after another).

    Parameters
    ----------
    data_modules : sequence of LightningDataModule
        The children.
    train_mode, val_mode, test_mode, predict_mode : CombineMode or str
        ``CombinedLoader`` mode of each stage's loader.

    Notes
    -----
    Children get this module's trainer in ``prepare_data`` and ``setup`` (on every rank). Their
    ``on_before_batch_transfer`` / ``on_after_batch_transfer`` hooks are forwarded: in sequential
    mode to the child the batch came from, otherwise to each child's entry of the batch list.
    """

    def __init__(
        self,
        data_modules: Sequence[LightningDataModule],
        train_mode: CombineMode | str = CombineMode.MAX_SIZE_CYCLE,
        val_mode: CombineMode | str = CombineMode.SEQUENTIAL,
        test_mode: CombineMode | str = CombineMode.SEQUENTIAL,
        predict_mode: CombineMode | str = CombineMode.SEQUENTIAL,
    ) -> None:
        super().__init__()
        self.data_modules = _check_children(data_modules)
        self.train_mode = CombineMode(train_mode)
        self.val_mode = CombineMode(val_mode)
        self.test_mode = CombineMode(test_mode)
        self.predict_mode = CombineMode(predict_mode)
        self.prepare_data_per_node = any(getattr(dm, "prepare_data_per_node", False) for dm in self.data_modules)

    def _attach_trainer(self) -> None:
        for dm in self.data_modules:
            dm.trainer = self.trainer

    def prepare_data(self) -> None:
        """Run every child's ``prepare_data``."""
        self._attach_trainer()
        for dm in self.data_modules:
            dm.prepare_data()

    def setup(self, stage: str) -> None:
        """Run every child's ``setup``."""
        self._attach_trainer()
        for dm in self.data_modules:
            dm.setup(stage)

    def teardown(self, stage: str) -> None:
        """Run every child's ``teardown``."""
        for dm in self.data_modules:
            dm.teardown(stage)

    def train_dataloader(self) -> CombinedLoader:
        """Children's training loaders combined with ``train_mode``."""
        return CombinedLoader([dm.train_dataloader() for dm in self.data_modules], mode=self.train_mode.value)

    def val_dataloader(self) -> CombinedLoader:
        """Children's validation loaders combined with ``val_mode``."""
        return CombinedLoader([dm.val_dataloader() for dm in self.data_modules], mode=self.val_mode.value)

    def test_dataloader(self) -> CombinedLoader:
        """Children's test loaders combined with ``test_mode``."""
        return CombinedLoader([dm.test_dataloader() for dm in self.data_modules], mode=self.test_mode.value)

    def predict_dataloader(self) -> CombinedLoader:
        """Children's prediction loaders combined with ``predict_mode``."""
        return CombinedLoader([dm.predict_dataloader() for dm in self.data_modules], mode=self.predict_mode.value)

    def _current_mode(self) -> CombineMode | None:
        trainer = self.trainer
        if trainer is None:
            return None
        if trainer.training:
            return self.train_mode
        if trainer.validating or trainer.sanity_checking:
            return self.val_mode
        if trainer.testing:
            return self.test_mode
        if trainer.predicting:
            return self.predict_mode
        return None

    def _forward(self, hook: str, batch: Any, dataloader_idx: int) -> Any:
        mode = self._current_mode()
        if mode is None:
            return batch
        if mode is CombineMode.SEQUENTIAL:
            return getattr(self.data_modules[dataloader_idx], hook)(batch, 0)
        # one entry per child; max_size mode pads exhausted children with None
        return [
            part if part is None else getattr(dm, hook)(part, 0)
            for dm, part in zip(self.data_modules, batch, strict=True)
        ]

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Forward to the children's ``on_before_batch_transfer``."""
        return self._forward("on_before_batch_transfer", batch, dataloader_idx)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Forward to the children's ``on_after_batch_transfer``."""
        return self._forward("on_after_batch_transfer", batch, dataloader_idx)


class ConcatDataModule(LightningDataModule):
    """Concatenate the datasets of several data modules and sample uniformly over all items.

    Loader settings (batch size, workers, persistent workers, prefetch factor, pin memory) come from
    the first child; all children must agree on batch size, workers and
    ``train_patches_per_stack`` (1 when a child has none). Stages ``fit`` (train + val) and
    ``validate`` (val). Batches go through the first child's batch-transfer hooks, so the children
    should be of one kind.

    Parameters
    ----------
    data_modules : sequence of LightningDataModule
        The children.

    Raises
    ------
    ValueError
        ``"Inconsistent number of workers"`` / ``"Inconsistent batch size"`` at construction,
        ``"Inconsistent patches per stack"`` in ``setup``.
    """

    _stages = ("fit", "validate")

    def __init__(self, data_modules: Sequence[LightningDataModule]) -> None:
        super().__init__()
        self.data_modules = _check_children(data_modules)
        first = self.data_modules[0]
        for attribute in ("batch_size", "num_workers"):
            lacking = [type(dm).__name__ for dm in self.data_modules if not hasattr(dm, attribute)]
            if lacking:
                raise ValueError(f"data modules {lacking} have no '{attribute}' attribute to concatenate on")
        self.num_workers = first.num_workers
        self.batch_size = first.batch_size
        self.persistent_workers = bool(getattr(first, "persistent_workers", False))
        self.prefetch_factor = getattr(first, "prefetch_factor", None)
        self.pin_memory = bool(getattr(first, "pin_memory", False))
        if any(dm.num_workers != self.num_workers for dm in self.data_modules):
            raise ValueError("Inconsistent number of workers")
        if any(dm.batch_size != self.batch_size for dm in self.data_modules):
            raise ValueError("Inconsistent batch size")
        self.prepare_data_per_node = any(getattr(dm, "prepare_data_per_node", False) for dm in self.data_modules)

    def _attach_trainer(self) -> None:
        for dm in self.data_modules:
            dm.trainer = self.trainer

    def prepare_data(self) -> None:
        """Run every child's ``prepare_data``."""
        self._attach_trainer()
        for dm in self.data_modules:
            dm.prepare_data()

    def _concat(self, datasets: list[Dataset]) -> ConcatDataset:
        return ConcatDataset(datasets)

    def setup(self, stage: str) -> None:
        """Set up the children and concatenate their datasets (``fit`` and ``validate``)."""
        if stage not in self._stages:
            raise NotImplementedError(f"Only {' and '.join(self._stages)} stages are supported, got '{stage}'")
        self._attach_trainer()
        for dm in self.data_modules:
            dm.setup(stage)
        patches = {getattr(dm, "train_patches_per_stack", 1) for dm in self.data_modules}
        if len(patches) > 1:
            raise ValueError(f"Inconsistent patches per stack: {sorted(patches)}")
        self.train_patches_per_stack = patches.pop()
        if self.batch_size % self.train_patches_per_stack:
            raise ValueError(
                f"batch size {self.batch_size} is not divisible by {self.train_patches_per_stack} patches per stack"
            )
        if stage == "fit":
            self.train_dataset = self._concat([dm.train_dataset for dm in self.data_modules])
        self.val_dataset = self._concat([dm.val_dataset for dm in self.data_modules])

    def teardown(self, stage: str) -> None:
        """Run every child's ``teardown``."""
        for dm in self.data_modules:
            dm.teardown(stage)

    def _loader_kwargs(self) -> dict[str, Any]:
        workers = self.num_workers > 0
        return {
            "num_workers": self.num_workers,
            "persistent_workers": self.persistent_workers and workers,
            "prefetch_factor": self.prefetch_factor if workers else None,
            "pin_memory": self.pin_memory,
        }

    def train_dataloader(self) -> DataLoader:
        """Shuffled loader over all children's training items; multi-patch samples are flattened."""
        return DataLoader(
            self.train_dataset,
            batch_size=self.batch_size // self.train_patches_per_stack,
            shuffle=True,
            drop_last=True,
            collate_fn=_collate_samples,
            **self._loader_kwargs(),
        )

    def val_dataloader(self) -> DataLoader:
        """Loader over all children's validation items, in order."""
        return DataLoader(self.val_dataset, batch_size=self.batch_size, shuffle=False, **self._loader_kwargs())

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Forward to the first child's hook."""
        return self.data_modules[0].on_before_batch_transfer(batch, dataloader_idx)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Forward to the first child's hook."""
        return self.data_modules[0].on_after_batch_transfer(batch, dataloader_idx)


class BatchedConcatDataset(ConcatDataset):
    """Concatenation of batch-reading datasets (``__getitems__``), one micro-batch per child.

    ``__getitems__`` groups global indices by child, calls that child's ``__getitems__`` once,
    and returns the list of micro-batch dicts, each tagged with ``"_dataset_idx"``.
    """

    def __getitem__(self, index: int) -> Any:
        """Not supported: items are only read in batches."""
        raise NotImplementedError("BatchedConcatDataset reads batches only; use __getitems__")

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        """Read a batch: one ``__getitems__`` call per child that owns some of ``indices``."""
        index = np.asarray(indices, dtype=np.int64)
        n_items = len(self)
        out_of_range = index[(index < -n_items) | (index >= n_items)]
        if out_of_range.size:
            raise ValueError(f"indices {out_of_range.tolist()} out of range for {n_items} items")
        index = np.where(index < 0, index + n_items, index)
        child = np.searchsorted(self.cumulative_sizes, index, side="right")
        starts = np.concatenate([[0], self.cumulative_sizes])
        local = index - starts[child]
        micro_batches = []
        for dataset_idx in np.unique(child):
            micro = self.datasets[dataset_idx].__getitems__(local[child == dataset_idx].tolist())
            micro["_dataset_idx"] = int(dataset_idx)
            micro_batches.append(micro)
        return micro_batches


def _merge(values: list[Any], key: str) -> Any:
    """Merge one key of several micro-batches: tensors concatenated on dim 0, lists chained, dicts per key."""
    first = values[0]
    if isinstance(first, Tensor):
        try:
            return torch.cat(values, dim=0)
        except RuntimeError as err:
            shapes = [tuple(v.shape) for v in values]
            raise ValueError(f"cannot concatenate '{key}' of the micro-batches, shapes {shapes}") from err
    if isinstance(first, list):
        return [item for value in values for item in value]
    if isinstance(first, dict):
        return {k: _merge([value[k] for value in values], f"{key}/{k}") for k in first}
    return values


class BatchedConcatDataModule(ConcatDataModule):
    """Concatenation of batch-reading data modules (e.g. triplet modules).

    Each loader batch is a list of per-child micro-batches; after transfer each micro-batch goes
    through its own child's ``on_after_batch_transfer`` (e.g. GPU augmentation) and they are merged
    into one batch (tensors concatenated on dim 0, lists chained).
    """

    def _concat(self, datasets: list[Dataset]) -> BatchedConcatDataset:
        return BatchedConcatDataset(datasets)

    def _loader(self, dataset: Dataset, train: bool) -> ThreadDataLoader:
        workers = self.num_workers > 0
        return thread_worker_loader(
            dataset,
            batch_size=self.batch_size,
            shuffle=train,
            drop_last=train,
            num_workers=self.num_workers,
            persistent_workers=self.persistent_workers and workers,
            prefetch_factor=self.prefetch_factor if workers else None,
            pin_memory=self.pin_memory,
            collate_fn=_identity,
        )

    def train_dataloader(self) -> ThreadDataLoader:
        """Shuffled loader of micro-batch lists."""
        return self._loader(self.train_dataset, train=True)

    def val_dataloader(self) -> ThreadDataLoader:
        """Loader of micro-batch lists, in order."""
        return self._loader(self.val_dataset, train=False)

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Pass batches through (children's hooks run after transfer)."""
        return batch

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Run each micro-batch through its child's hook, then merge them into one batch."""
        if not isinstance(batch, list):
            return batch
        processed = []
        for micro in batch:
            micro = dict(micro)
            child = self.data_modules[micro.pop("_dataset_idx")]
            processed.append(child.on_after_batch_transfer(micro, dataloader_idx))
        return {key: _merge([micro[key] for micro in processed], key) for key in processed[0]}


class CachedConcatDataModule(ConcatDataModule):
    """Concatenation of cached GPU-augmentation data modules (e.g. ``CachedOmeZarrDataModule``).

    Batches are lists of items (identity collation); under DDP the loaders use
    :class:`~viscy_data.distributed.ShardedDistributedSampler`, so each rank keeps touching the same
    cached volumes.
    """

    def _loader(self, dataset: Dataset, train: bool) -> DataLoader:
        sampler = None
        if dist.is_available() and dist.is_initialized():
            sampler = ShardedDistributedSampler(dataset, shuffle=train)
        workers = self.num_workers > 0
        return DataLoader(
            dataset,
            batch_size=self.batch_size // self.train_patches_per_stack if train else self.batch_size,
            sampler=sampler,
            shuffle=train and sampler is None,
            drop_last=train,
            num_workers=self.num_workers,
            persistent_workers=workers,
            prefetch_factor=self.prefetch_factor if workers else None,
            pin_memory=self.pin_memory,
            collate_fn=_identity,
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled (sharded under DDP) loader; a batch is the list of items."""
        return self._loader(self.train_dataset, train=True)

    def val_dataloader(self) -> DataLoader:
        """Return the validation loader, in order (sharded under DDP); a batch is the list of items."""
        return self._loader(self.val_dataset, train=False)
