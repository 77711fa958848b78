"""Contrastive triplets from per-track image stacks of dividing cells (``.npy`` files)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from monai.transforms import CenterSpatialCropd, Compose, MapTransform
from torch import Tensor
from torch.utils.data import Dataset

from viscy_data._utils import _ensure_channel_list
from viscy_data.hcs import HCSDataModule

__all__ = ["CellDivisionTripletDataModule", "CellDivisionTripletDataset"]

#: channel names understood besides plain integer indices
CHANNEL_MAPPING = {"bf": 0, "brightfield": 0, "h2b": 1, "nuclei": 1}


def _channel_index(name: str) -> int:
    if name.lower() in CHANNEL_MAPPING:
        return CHANNEL_MAPPING[name.lower()]
    try:
        return int(name)
    except ValueError as err:
        raise ValueError(
            f"unknown channel '{name}': use one of {sorted(CHANNEL_MAPPING)} or an integer channel index"
        ) from err


class CellDivisionTripletDataset(Dataset):
    """Anchor/positive/negative patches from ``(T, C, Y, X)`` track stacks, one ``.npy`` per track.

    Files are memory-mapped, not loaded into RAM. A sample is ``(C, 1, Y, X)`` per patch (``(C, Y, X)``
    with ``output_2d``); the channel axis is kept first so MONAI dictionary transforms see one
    ``(1, 1, Y, X)`` image per channel, whatever the number of channels.

    Parameters
    ----------
    data_paths : sequence of path
        ``.npy`` files; the file stem is the track name.
    channel_names : sequence of str
        ``bf``/``brightfield`` (0), ``h2b``/``nuclei`` (1) or integer indices as strings.
    anchor_transform, positive_transform, negative_transform : callable, optional
        Dictionary transforms applied to ``{channel: (1, 1, Y, X)}``.
    fit : bool, default True
        Triplets (True) or anchors with an ``index`` (False, prediction).
    time_interval : "any" or int, default "any"
        The positive is the anchor's timepoint (``"any"``) or ``time_interval`` frames later.
    return_negative : bool, default True
        Also return a patch of another track (at the positive's time when it exists).
    output_2d : bool, default False
        Drop the singleton Z axis.

    Raises
    ------
    ValueError
        For no file, a file that is not ``(T, C, Y, X)``, or a channel beyond a file's channels.
    """

    def __init__(
        self,
        data_paths: Sequence[str | Path],
        channel_names: Sequence[str],
        anchor_transform: Callable | None = None,
        positive_transform: Callable | None = None,
        negative_transform: Callable | None = None,
        fit: bool = True,
        time_interval: Literal["any"] | int = "any",
        return_negative: bool = True,
        output_2d: bool = False,
    ) -> None:
        super().__init__()
        self.data_paths = [Path(p) for p in data_paths]
        if not self.data_paths:
            raise ValueError("CellDivisionTripletDataset needs at least one .npy file")
        self.channel_names = _ensure_channel_list(channel_names)
        self.channel_idx = [_channel_index(c) for c in self.channel_names]
        self.anchor_transform = anchor_transform
        self.positive_transform = positive_transform
        self.negative_transform = negative_transform
        self.fit = fit
        self.time_interval = time_interval
        self.return_negative = return_negative
        self.output_2d = output_2d
        self._tracks = [np.load(p, mmap_mode="r") for p in self.data_paths]
        for path, track in zip(self.data_paths, self._tracks):
            if track.ndim != 4:
                raise ValueError(f"{path} has shape {track.shape}; expected (T, C, Y, X)")
            if max(self.channel_idx) >= track.shape[1]:
                raise ValueError(
                    f"channels {self.channel_names} need index {max(self.channel_idx)}; {path} has "
                    f"{track.shape[1]} channels"
                )
        self._frames = np.array([t.shape[0] for t in self._tracks], dtype=np.int64)
        shift = 0 if time_interval == "any" or not fit else int(time_interval)
        usable = np.maximum(self._frames - shift, 0)
        self._anchor_file = np.repeat(np.arange(len(self._tracks)), usable)
        self._anchor_t = np.concatenate([np.arange(n) for n in usable]) if usable.any() else np.zeros(0, np.int64)
        self._shift = shift

    def __len__(self) -> int:
        return len(self._anchor_file)

    def __getstate__(self) -> dict:
        # memory maps would be pickled as full arrays; spawned workers map the files again
        state = dict(self.__dict__)
        state["_tracks"] = None
        return state

    def _track(self, file: int) -> np.ndarray:
        if self._tracks is None:
            self._tracks = [np.load(p, mmap_mode="r") for p in self.data_paths]
        return self._tracks[file]

    def _patch(self, file: int, t: int, transform: Callable | None) -> Tensor:
        data = torch.from_numpy(np.asarray(self._track(file)[t, self.channel_idx], dtype=np.float32))
        sample = {name: data[i : i + 1].unsqueeze(1) for i, name in enumerate(self.channel_names)}
        if transform is not None:
            sample = transform(sample)
        patch = torch.cat([torch.as_tensor(sample[name]) for name in self.channel_names], dim=0)
        return patch[:, 0] if self.output_2d else patch

    def _negative(self, file: int, t_positive: int) -> tuple[int, int]:
        """Another track (torch RNG: seeded per worker by the DataLoader) at the positive's time if it has it."""
        n_files = len(self._tracks)
        if n_files == 1:  # only one track: another timepoint of it, if there is one
            frames = int(self._frames[file])
            if frames == 1:
                return file, 0
            t = int(torch.randint(frames - 1, ()).item())
            return file, t + int(t >= t_positive)
        other = int(torch.randint(n_files - 1, ()).item())
        other += other >= file
        if self.time_interval != "any" and t_positive < self._frames[other]:
            return other, t_positive
        return other, int(torch.randint(int(self._frames[other]), ()).item())

    def __getitem__(self, index: int) -> dict[str, Any]:
        file, t = int(self._anchor_file[index]), int(self._anchor_t[index])
        anchor = self._patch(file, t, self.anchor_transform)
        if not self.fit:
            return {"anchor": anchor, "index": {"fov_name": self.data_paths[file].stem, "id": t}}
        sample = {"anchor": anchor, "positive": self._patch(file, t + self._shift, self.positive_transform)}
        if self.return_negative:
            other, t_other = self._negative(file, t + self._shift)
            sample["negative"] = self._patch(other, t_other, self.negative_transform)
        return sample


class CellDivisionTripletDataModule(HCSDataModule):
    """Contrastive triplets of dividing-cell tracks stored as ``.npy`` files, split by track.

    Parameters
    ----------
    data_path : str or pathlib.Path
        Directory of ``*.npy`` track stacks ``(T, C, Y, X)``.
    source_channel : str or sequence of str
        Channels (see :class:`CellDivisionTripletDataset`).
    final_yx_patch_size : tuple of int, default (64, 64)
        Centre crop after augmentation.
    split_ratio, batch_size, num_workers, normalizations, augmentations
        As for :class:`~viscy_data.hcs.HCSDataModule`.
    persistent_workers, prefetch_factor, pin_memory, seed
        As for :class:`~viscy_data.hcs.HCSDataModule`.
    augment_validation : bool, default True
        Augment validation triplets like training ones (else normalise and crop only).
    time_interval : "any" or int, default "any"
        Frames between anchor and positive.
    return_negative : bool, default True
        Return negatives.
    output_2d : bool, default False
        Patches ``(C, Y, X)`` instead of ``(C, 1, Y, X)``.

    Raises
    ------
    ValueError
        If ``data_path`` holds no ``.npy`` file.
    """

    def __init__(
        self,
        data_path: str | Path,
        source_channel: str | Sequence[str],
        final_yx_patch_size: tuple[int, int] = (64, 64),
        split_ratio: float = 0.8,
        batch_size: int = 16,
        num_workers: int = 8,
        normalizations: Sequence[MapTransform] = (),
        augmentations: Sequence[MapTransform] = (),
        augment_validation: bool = True,
        time_interval: Literal["any"] | int = "any",
        return_negative: bool = True,
        output_2d: bool = False,
        persistent_workers: bool = False,
        prefetch_factor: int | None = None,
        pin_memory: bool = False,
        seed: int | None = None,
    ) -> None:
        super().__init__(
            data_path,
            source_channel,
            [],
            z_window_size=1,
            split_ratio=split_ratio,
            batch_size=batch_size,
            num_workers=num_workers,
            yx_patch_size=final_yx_patch_size,
            normalizations=normalizations,
            augmentations=augmentations,
            persistent_workers=persistent_workers,
            prefetch_factor=prefetch_factor,
            pin_memory=pin_memory,
            seed=seed,
        )
        self.files = sorted(self.data_path.glob("*.npy"))
        if not self.files:
            raise ValueError(f"No .npy files found in {self.data_path}")
        self.final_yx_patch_size = tuple(final_yx_patch_size)
        self.augment_validation = augment_validation
        self.time_interval = time_interval
        self.return_negative = return_negative
        self.output_2d = output_2d

    def _transforms(self) -> tuple[Compose, Compose]:
        crop = CenterSpatialCropd(keys=self.source_channel, roi_size=(1, *self.final_yx_patch_size))
        augment = Compose([*self.normalizations, *self.augmentations, crop])
        no_augment = Compose([*self.normalizations, crop])
        return augment, no_augment

    def _dataset(self, files: Sequence[Path], anchor: Callable, other: Callable, fit: bool = True):
        return CellDivisionTripletDataset(
            files,
            self.source_channel,
            anchor_transform=anchor,
            positive_transform=other,
            negative_transform=other,
            fit=fit,
            time_interval=self.time_interval,
            return_negative=self.return_negative,
            output_2d=self.output_2d,
        )

    def setup(self, stage: str | None = None) -> None:
        """Build train/val triplets (fit, validate) or prediction anchors (predict)."""
        self._predicting = stage == "predict"
        if stage == "predict":
            self.predict_dataset = self._dataset(self.files, Compose(self.normalizations), None, fit=False)
            return
        if stage not in ("fit", "validate"):
            raise NotImplementedError(f"{stage} stage is not supported by CellDivisionTripletDataModule")
        augment, no_augment = self._transforms()
        train_idx, val_idx = self._split(len(self.files))
        if not train_idx or not val_idx:
            raise ValueError(
                f"split_ratio={self.split_ratio} of {len(self.files)} .npy files leaves an empty train or "
                "validation set"
            )
        # with "any" (or 0) the positive is the anchor itself, so only the positive is augmented
        anchor = no_augment if self.time_interval in ("any", 0) else augment
        self.train_dataset = self._dataset([self.files[i] for i in train_idx], anchor, augment)
        if self.augment_validation:
            self.val_dataset = self._dataset([self.files[i] for i in val_idx], anchor, augment)
        else:
            self.val_dataset = self._dataset([self.files[i] for i in val_idx], no_augment, no_augment)
