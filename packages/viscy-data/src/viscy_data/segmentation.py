"""Pairs of predicted and ground-truth label images for segmentation evaluation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from iohub.ngff import Plate, open_ome_zarr
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from viscy_data._io import LazyPositions
from viscy_data._typing import SegmentationSample

__all__ = ["SegmentationDataModule", "SegmentationDataset"]

_INT16 = np.iinfo(np.int16)


def _channel_index(plate: Plate, channel: str, role: str) -> int:
    if channel not in plate.channel_names:
        raise ValueError(f"{role} channel '{channel}' not found; available: {list(plate.channel_names)}")
    return plate.get_channel_index(channel)


def _as_int16(labels: np.ndarray, where: str) -> torch.Tensor:
    """Labels as int16, refusing values that would wrap around."""
    if labels.size and (labels.min() < _INT16.min or labels.max() > _INT16.max):
        raise ValueError(
            f"{where}: label values span [{labels.min()}, {labels.max()}], outside the int16 range of the batch"
        )
    return torch.from_numpy(labels.astype(np.int16))


class SegmentationDataset(Dataset):
    """One item per (target FOV, timepoint): predicted and ground-truth labels of one Z slice.

    Parameters
    ----------
    pred_dataset, target_dataset : iohub Plate
        Plates with predictions and ground truth; predictions are looked up by the target FOV name.
    pred_channel, target_channel : str
        Channel holding the labels in each plate.
    pred_z_slice, target_z_slice : int or slice
        Z index (or range) read from each plate.
    img_name : str, default "0"
        Image array inside each FOV.

    Raises
    ------
    KeyError
        If a target FOV has no prediction.
    ValueError
        If a prediction and its target differ in the number of timepoints, or a channel is unknown.
    """

    def __init__(
        self,
        pred_dataset: Plate,
        target_dataset: Plate,
        pred_channel: str,
        target_channel: str,
        pred_z_slice: int | slice,
        target_z_slice: int | slice,
        img_name: str = "0",
    ) -> None:
        super().__init__()
        self.pred_dataset = pred_dataset
        self.target_dataset = target_dataset
        self.pred_channel = _channel_index(pred_dataset, pred_channel, "prediction")
        self.target_channel = _channel_index(target_dataset, target_channel, "target")
        self.pred_z_slice = pred_z_slice
        self.target_z_slice = target_z_slice
        self.img_name = img_name
        pred_fovs = dict(pred_dataset.positions())
        target_fovs = list(target_dataset.positions())
        self._items: list[tuple[str, int, int]] = []
        for position_idx, (name, target_fov) in enumerate(target_fovs):
            if name not in pred_fovs:
                raise KeyError(f"no prediction for target FOV '{name}'; prediction FOVs: {sorted(pred_fovs)[:10]}")
            n_target = target_fov[img_name].frames
            n_pred = pred_fovs[name][img_name].frames
            if n_target != n_pred:
                raise ValueError(f"Shape mismatch in FOV '{name}': {n_pred} predicted vs {n_target} target timepoints")
            self._items.extend((name, position_idx, t) for t in range(n_target))
        # worker processes reopen the plates themselves (see LazyPositions for why)
        self._pred_fovs = LazyPositions([pred_fovs[name] for name, _ in target_fovs])
        self._target_fovs = LazyPositions([fov for _, fov in target_fovs])

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: int) -> SegmentationSample:
        """Return ``{"pred", "target": int16 labels, "position_idx", "time_idx"}``."""
        name, position_idx, t = self._items[index]
        pred = self._pred_fovs[position_idx][self.img_name].oindex[t, self.pred_channel, self.pred_z_slice]
        target = self._target_fovs[position_idx][self.img_name].oindex[t, self.target_channel, self.target_z_slice]
        return {
            "pred": _as_int16(np.asarray(pred), f"prediction FOV '{name}' t={t}"),
            "target": _as_int16(np.asarray(target), f"target FOV '{name}' t={t}"),
            "position_idx": position_idx,
            "time_idx": t,
        }


class SegmentationDataModule(LightningDataModule):
    """Test-only data module pairing predicted and ground-truth label plates.

    Parameters
    ----------
    pred_dataset, target_dataset : str or Path
        HCS OME-Zarr plates (opened at construction).
    pred_channel, target_channel : str
        Label channels.
    pred_z_slice, target_z_slice : int
        Z slice of each plate.
    batch_size : int
        Items per batch.
    num_workers : int
        DataLoader workers.
    """

    def __init__(
        self,
        pred_dataset: str | Path,
        target_dataset: str | Path,
        pred_channel: str,
        target_channel: str,
        pred_z_slice: int,
        target_z_slice: int,
        batch_size: int,
        num_workers: int,
    ) -> None:
        super().__init__()
        self.pred_dataset = open_ome_zarr(pred_dataset, layout="hcs", mode="r")
        self.target_dataset = open_ome_zarr(target_dataset, layout="hcs", mode="r")
        self.pred_channel = pred_channel
        self.target_channel = target_channel
        self.pred_z_slice = pred_z_slice
        self.target_z_slice = target_z_slice
        self.batch_size = batch_size
        self.num_workers = num_workers

    def setup(self, stage: str) -> None:
        """Build the test dataset (``test`` only)."""
        if stage != "test":
            raise NotImplementedError("Only test stage is supported!")
        self.test_dataset = SegmentationDataset(
            self.pred_dataset,
            self.target_dataset,
            self.pred_channel,
            self.target_channel,
            self.pred_z_slice,
            self.target_z_slice,
        )

    def test_dataloader(self) -> DataLoader:
        """Test loader in dataset order."""
        return DataLoader(self.test_dataset, batch_size=self.batch_size, num_workers=self.num_workers)
