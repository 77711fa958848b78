"""Patches of annotated cells with a class label (e.g. infection state) from an HCS plate."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from iohub.ngff import Plate
from lightning.pytorch import LightningDataModule
from monai.transforms import Compose
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from viscy_data._io import LazyPositions, channel_indices, fov_name, open_plate
from viscy_data._typing import INDEX_COLUMNS
from viscy_data._utils import _read_norm_meta

try:
    import pandas as pd
except ImportError:  # pragma: no cover - pandas arrives with iohub
    pd = None

__all__ = ["ClassificationDataModule", "ClassificationDataset"]

#: annotation columns every dataset needs (besides the label column)
REQUIRED_COLUMNS = ("fov_name", "t", "y", "x")
#: guards the division by a FOV's standard deviation
_STD_EPS = 1e-8


def _require_pandas(name: str) -> None:
    if pd is None:
        raise ImportError(f"pandas is required for {name}. Install with: pip install 'viscy-data[triplet]'")


def _strip_fov_names(names: Any) -> Any:
    """FOV names without leading/trailing ``/`` (CSVs and configs use both conventions)."""
    if isinstance(names, str):
        return names.strip("/")
    return names.astype(str).str.strip("/")


class ClassificationDataset(Dataset):
    """One labelled patch per annotated cell.

    Each item is ``(image, label)`` or, with ``return_indices``, ``(image, label, index)``: ``image``
    is the ``(1, Z, h, w)`` float32 patch of ``channel_name`` centred on the cell, normalised with the
    FOV's ``fov_statistics`` (``(x - mean) / std``), then passed through ``transform``; ``label`` is a
    float ``(1,)`` tensor (NaN when the annotation has no label column, e.g. for prediction);
    ``index`` holds the annotation's :data:`~viscy_data._typing.INDEX_COLUMNS` that are present.

    Parameters
    ----------
    plate : iohub Plate
        The HCS plate the annotations refer to.
    annotation : pandas.DataFrame
        One row per cell: ``fov_name`` (``"A/1/0"`` or ``"/A/1/0"``), ``t``, ``y``, ``x`` (pixel
        centre, full resolution) and ``label_column``. Not modified.
    channel_name : str
        Channel to read.
    z_range : tuple of int
        ``(start, stop)`` Z slices to read.
    transform : callable, optional
        Array transform applied to each normalised ``(1, Z, h, w)`` patch.
    initial_yx_patch_size : tuple of int
        ``(h, w)`` of the patch; cells closer than half a patch to a border are dropped.
    return_indices : bool, default False
        Also return the cell's index metadata.
    label_column : str, default "infection_state"
        Column with integer class codes (see the ``LABEL_*`` maps of :mod:`viscy_data._typing`).

    Raises
    ------
    ValueError
        If a required column is missing, an annotated FOV is not in the plate, the channel is
        unknown, ``z_range`` or the patch exceeds the image, or a FOV lacks ``fov_statistics`` for
        the channel.
    """

    def __init__(
        self,
        plate: Plate,
        annotation: pd.DataFrame,
        channel_name: str,
        z_range: tuple[int, int],
        transform: Callable[[Tensor], Tensor] | None,
        initial_yx_patch_size: tuple[int, int],
        return_indices: bool = False,
        label_column: str = "infection_state",
    ) -> None:
        _require_pandas("ClassificationDataset")
        super().__init__()
        required = list(REQUIRED_COLUMNS) + ([] if return_indices else [label_column])
        missing = [c for c in required if c not in annotation.columns]
        if missing:
            raise ValueError(f"annotation lacks column(s) {missing}; columns: {list(annotation.columns)}")
        self.channel_name = channel_name
        self.z_range = (int(z_range[0]), int(z_range[1]))
        self.transform = transform
        self.yx_patch_size = (int(initial_yx_patch_size[0]), int(initial_yx_patch_size[1]))
        self.return_indices = return_indices
        self.label_column = label_column

        annotation = annotation.assign(fov_name=_strip_fov_names(annotation["fov_name"]))
        names = list(dict.fromkeys(annotation["fov_name"]))
        plate_fovs = {fov_name(p): p for _, p in plate.positions()}
        unknown = [n for n in names if n not in plate_fovs]
        if unknown:
            raise ValueError(f"annotated FOV(s) {unknown[:5]} are not in the plate; plate FOVs: {sorted(plate_fovs)}")
        positions = [plate_fovs[n] for n in names]
        self.positions = LazyPositions(positions)
        self._channel_idx = channel_indices(positions[0], [channel_name])[0] if positions else 0
        # FOV shapes and statistics are read once here, never per item
        shapes = np.array([_zyx_shape(p) for p in positions], dtype=np.int64).reshape(-1, 3)
        self._mean_std = np.array([self._fov_mean_std(p) for p in positions], dtype=np.float32).reshape(-1, 2)

        z0, z1 = self.z_range
        if not 0 <= z0 < z1:
            raise ValueError(f"z_range {z_range} must satisfy 0 <= start < stop")
        h, w = self.yx_patch_size
        for name, (z, height, width) in zip(names, shapes):
            if z1 > z:
                raise ValueError(f"z_range {z_range} exceeds the {z} Z slices of FOV '{name}'")
            if h > height or w > width:
                raise ValueError(f"patch size {self.yx_patch_size} is larger than FOV '{name}' ({height}, {width})")

        fov_idx = annotation["fov_name"].map({n: i for i, n in enumerate(names)}).to_numpy(dtype=np.int64)
        y = np.rint(annotation["y"].to_numpy(dtype=np.float64)).astype(np.int64)
        x = np.rint(annotation["x"].to_numpy(dtype=np.float64)).astype(np.int64)
        height, width = shapes[fov_idx, 1], shapes[fov_idx, 2]
        keep = (y > h / 2) & (y < height - h / 2) & (x > w / 2) & (x < width - w / 2)
        self.annotation = annotation.loc[keep].reset_index(drop=True)
        self._fov = fov_idx[keep]
        self._t = annotation["t"].to_numpy(dtype=np.int64)[keep]
        self._y0 = y[keep] - h // 2
        self._x0 = x[keep] - w // 2
        if label_column in annotation.columns:
            labels = annotation[label_column].to_numpy(dtype=np.float32)[keep]
        else:
            labels = np.full(int(keep.sum()), np.nan, dtype=np.float32)
        self._labels = torch.from_numpy(labels).unsqueeze(1)
        index_columns = [c for c in INDEX_COLUMNS if c in self.annotation.columns]
        self._index = self.annotation[index_columns].to_dict(orient="records") if return_indices else None

    def _fov_mean_std(self, position: Any) -> tuple[float, float]:
        meta = _read_norm_meta(position) or {}
        stats = meta.get(self.channel_name, {}).get("fov_statistics")
        if stats is None or "mean" not in stats or "std" not in stats:
            raise ValueError(
                f"FOV '{fov_name(position)}' has no fov_statistics (mean, std) for channel '{self.channel_name}'; "
                "run `viscy preprocess` on the store"
            )
        return float(stats["mean"]), max(float(stats["std"]), _STD_EPS)

    def __len__(self) -> int:
        return len(self._t)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor] | tuple[Tensor, Tensor, dict[str, Any]]:
        fov = int(self._fov[index])
        h, w = self.yx_patch_size
        y0, x0 = int(self._y0[index]), int(self._x0[index])
        patch = self.positions[fov]["0"][
            int(self._t[index]), self._channel_idx, slice(*self.z_range), y0 : y0 + h, x0 : x0 + w
        ]
        mean, std = self._mean_std[fov]
        image = (torch.from_numpy(np.asarray(patch, dtype=np.float32)).unsqueeze(0) - mean) / std
        if self.transform is not None:
            image = self.transform(image)
        label = self._labels[index]
        if self.return_indices:
            return image, label, self._index[index]
        return image, label


def _zyx_shape(position: Any) -> tuple[int, int, int]:
    """``(Z, Y, X)`` of a FOV's full-resolution image."""
    image = position["0"]
    return image.slices, image.height, image.width


class ClassificationDataModule(LightningDataModule):
    """Labelled cell patches for training a classifier, split by FOV.

    Parameters
    ----------
    image_path : str or pathlib.Path
        HCS plate.
    annotation_path : str or pathlib.Path
        Annotation CSV (see :class:`ClassificationDataset`; ``fov_name`` with or without a leading ``/``).
    val_fovs : list of str
        FOVs used for validation (``"A/1/0"`` or ``"/A/1/0"``); all others train.
    channel_name : str
        Channel to read.
    z_range : tuple of int
        ``(start, stop)`` Z slices.
    train_exclude_timepoints : list of int
        Timepoints left out of training (e.g. ambiguous frames around an infection onset).
    train_transforms, val_transforms : list of callable
        Array transforms composed for the train and validation patches (None or empty: none).
    initial_yx_patch_size : tuple of int
        Patch size read around each cell.
    batch_size : int
        Samples per batch.
    num_workers : int
        DataLoader worker processes.
    label_column : str, default "infection_state"
        Label column of the annotation CSV (used in every stage).
    """

    def __init__(
        self,
        image_path: str | Path,
        annotation_path: str | Path,
        val_fovs: Sequence[str],
        channel_name: str,
        z_range: tuple[int, int],
        train_exclude_timepoints: Sequence[int],
        train_transforms: Sequence[Callable] | None,
        val_transforms: Sequence[Callable] | None,
        initial_yx_patch_size: tuple[int, int],
        batch_size: int,
        num_workers: int,
        label_column: str = "infection_state",
    ) -> None:
        _require_pandas("ClassificationDataModule")
        super().__init__()
        self.image_path = Path(image_path)
        self.annotation_path = Path(annotation_path)
        self.val_fovs = val_fovs
        self.channel_name = channel_name
        self.z_range = tuple(z_range)
        self.train_exclude_timepoints = list(train_exclude_timepoints or [])
        self.train_transform = Compose(list(train_transforms or []))
        self.val_transform = Compose(list(val_transforms or []))
        self.initial_yx_patch_size = tuple(initial_yx_patch_size)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.label_column = label_column

    def _read_annotation(self) -> pd.DataFrame:
        if not self.annotation_path.is_file():
            raise FileNotFoundError(f"annotation CSV not found: {self.annotation_path}")
        annotation = pd.read_csv(self.annotation_path)
        if "fov_name" not in annotation.columns:
            raise ValueError(f"{self.annotation_path} has no 'fov_name' column; columns: {list(annotation.columns)}")
        return annotation.assign(fov_name=_strip_fov_names(annotation["fov_name"]))

    def _dataset(self, plate: Plate, annotation: pd.DataFrame, transform: Callable | None, **kwargs: Any):
        return ClassificationDataset(
            plate,
            annotation,
            self.channel_name,
            self.z_range,
            transform,
            self.initial_yx_patch_size,
            label_column=self.label_column,
            **kwargs,
        )

    def setup(self, stage: str | None = None) -> None:
        """Build train and validation sets (None, fit, validate) or the prediction set (predict)."""
        if stage in (None, "fit", "validate"):
            self._setup_fit()
        elif stage == "predict":
            self.predict_dataset = self._dataset(
                open_plate(self.image_path), self._read_annotation(), None, return_indices=True
            )
        else:
            raise NotImplementedError(f"{stage} stage is not supported by ClassificationDataModule")

    def _setup_fit(self) -> None:
        if not self.val_fovs:
            raise ValueError("val_fovs must name at least one FOV for validation")
        plate = open_plate(self.image_path)
        annotation = self._read_annotation()
        val_fovs = {_strip_fov_names(str(name)) for name in self.val_fovs}
        annotated = set(annotation["fov_name"])
        unknown = sorted(val_fovs - annotated)
        if unknown:
            raise ValueError(
                f"val_fovs {unknown} have no annotation in {self.annotation_path}; annotated FOVs: {sorted(annotated)}"
            )
        is_val = annotation["fov_name"].isin(val_fovs)
        train = annotation.loc[~is_val & ~annotation["t"].isin(self.train_exclude_timepoints)]
        if train.empty:
            raise ValueError(f"no training annotation left outside val_fovs {sorted(val_fovs)}")
        self.train_dataset = self._dataset(plate, train, self.train_transform)
        self.val_dataset = self._dataset(plate, annotation.loc[is_val], self.val_transform)

    def _loader(self, dataset: Dataset, shuffle: bool) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        """Return shuffled training batches ``(image, label)``."""
        return self._loader(self.train_dataset, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        """Return validation batches in annotation order."""
        return self._loader(self.val_dataset, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        """Return prediction batches ``(image, label, index)`` in annotation order."""
        return self._loader(self.predict_dataset, shuffle=False)
