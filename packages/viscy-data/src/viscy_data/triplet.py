"""Contrastive (anchor, positive, negative) patches of tracked cells from HCS plates."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from iohub.ngff import Position
from monai.data.thread_buffer import ThreadDataLoader
from monai.transforms import MapTransform
from torch import Tensor
from torch.utils.data import Dataset

from viscy_data import checks
from viscy_data._io import fov_name
from viscy_data._typing import INDEX_COLUMNS, TripletSample
from viscy_data._utils import _ensure_channel_list, _read_norm_meta
from viscy_data.device_transforms import DeviceTransformMixin, DeviceTransforms
from viscy_data.hcs import HCSDataModule
from viscy_data.loading import thread_worker_loader
from viscy_data.norm_meta import select_timepoint
from viscy_data.patch_reader import FovArray, PatchReader, require_tensorstore
from viscy_data.select import _select_fovs

try:
    import pandas as pd
except ImportError:  # pragma: no cover - pandas arrives with iohub
    pd = None

__all__ = ["TripletDataModule", "TripletDataset"]

_logger = logging.getLogger(__name__)

#: columns every tracks table needs
REQUIRED_COLUMNS = ("track_id", "t", "y", "x")
#: extra columns needed to build prediction indices
PREDICT_COLUMNS = ("id", "parent_track_id", "parent_id")


def _require_extras(name: str) -> None:
    if pd is None:
        raise ImportError(f"pandas is required for {name}. Install with: pip install 'viscy-data[triplet]'")
    require_tensorstore(name)


class TripletDataset(Dataset):
    """Patches of tracked cells as contrastive triplets, read in batches.

    Parameters
    ----------
    positions : sequence of iohub Position
        FOVs to read.
    tracks_tables : sequence of pandas.DataFrame
        One tracks table per FOV (``track_id, t, y, x`` required; ``id, parent_track_id,
        parent_id`` too for prediction; optional ``z``). Not modified.
    channel_names : sequence of str
        Channels to read.
    initial_yx_patch_size : tuple of int
        ``(h, w)`` of the patches read around each cell centre.
    z_range : slice
        Z slices to read.
    fit : bool, default True
        Triplets (True) or anchors with an ``index`` (False, prediction).
    predict_cells : bool, default False
        Keep only the cells named by ``include_fov_names`` / ``include_track_ids`` (pairwise).
    include_fov_names, include_track_ids : list, optional
        Cells to keep with ``predict_cells``.
    time_interval : "any" or int, default "any"
        Positive = same cell ``time_interval`` frames later (``"any"``: the anchor itself).
    return_negative : bool, default True
        Also return a patch of a different track.
    cache_pool_bytes : int, default 0
        tensorstore chunk cache size (see :class:`~viscy_data.patch_reader.PatchReader`).
    seed : int, default 0
        Seed of negative sampling (combined with the batch indices: reproducible and thread-safe).

    Attributes
    ----------
    tracks : pandas.DataFrame
        The kept detections of all FOVs, with the derived columns ``position`` (iohub Position),
        ``fov_name`` (``"A/1/0"``) and ``global_track_id`` (``"<fov_name>_<track_id>"``).
    valid_anchors : pandas.DataFrame
        The rows of :attr:`tracks` that can be anchors (one per dataset item).

    Notes
    -----
    Patches are read by a :class:`~viscy_data.patch_reader.PatchReader` as float32, whatever the
    storage dtype, centred on the rounded cell centre.
    """

    def __init__(
        self,
        positions: Sequence[Position],
        tracks_tables: Sequence[pd.DataFrame],
        channel_names: Sequence[str],
        initial_yx_patch_size: tuple[int, int],
        z_range: slice,
        fit: bool = True,
        predict_cells: bool = False,
        include_fov_names: list[str] | None = None,
        include_track_ids: list[int] | None = None,
        time_interval: Literal["any"] | int = "any",
        return_negative: bool = True,
        cache_pool_bytes: int = 0,
        seed: int = 0,
    ) -> None:
        _require_extras("TripletDataset")
        super().__init__()
        if len(positions) != len(tracks_tables):
            raise ValueError(f"{len(positions)} positions but {len(tracks_tables)} tracks tables")
        self.positions = list(positions)
        self.channel_names = _ensure_channel_list(channel_names)
        self.yx_patch_size = tuple(int(s) for s in initial_yx_patch_size)
        if self.positions and (z_range.start is None or z_range.stop is None):
            z_range = slice(z_range.start or 0, self.positions[0]["0"].slices if z_range.stop is None else z_range.stop)
        self.z_range = z_range
        self.fit = fit
        self.time_interval = time_interval
        self.return_negative = return_negative
        self.cache_pool_bytes = cache_pool_bytes
        self.seed = seed
        # resolves (and checks) the channels of every FOV once
        self.reader = PatchReader(
            [FovArray.from_position(p) for p in self.positions],
            self.channel_names,
            self.yx_patch_size,
            self.z_range,
            cache_pool_bytes=cache_pool_bytes,
        )
        self._norm_meta = [_read_norm_meta(p) for p in self.positions]
        self.tracks = self._filter_tracks(tracks_tables)
        if predict_cells:
            pairs = pd.DataFrame({"fov_name": include_fov_names or [], "track_id": include_track_ids or []})
            self.tracks = self.tracks.merge(pairs, on=["fov_name", "track_id"]).reset_index(drop=True)
        if self.tracks.empty:
            raise ValueError(
                f"no tracked cell is far enough from the borders for initial_yx_patch_size {self.yx_patch_size} "
                "(or selected with predict_cells): reduce initial_yx_patch_size"
            )
        self.valid_anchors = self._filter_anchors(self.tracks)
        # row lookup by (track, time) and rows per time, for positives and negatives
        self._row_of = pd.Series(
            np.arange(len(self.tracks)),
            index=pd.MultiIndex.from_arrays([self.tracks["global_track_id"], self.tracks["t"]]),
        )

    def _filter_tracks(self, tables: Sequence[pd.DataFrame]) -> pd.DataFrame:
        h, w = self.yx_patch_size
        frames = []
        for fov_idx, (position, table) in enumerate(zip(self.positions, tables)):
            name = fov_name(position)
            required = REQUIRED_COLUMNS if self.fit else REQUIRED_COLUMNS + PREDICT_COLUMNS
            missing = [c for c in required if c not in table.columns]
            if missing:
                raise ValueError(
                    f"tracks of FOV '{name}' lack required column(s) {missing}; columns: {list(table.columns)}"
                )
            image = position["0"]
            fits = checks.patch_fit_problems(image.shape, self.z_range, (h, w), yx_key="initial_yx_patch_size")
            if fits:
                raise ValueError(f"FOV {name}: " + "; ".join(m for _, m in fits))
            y, x = table["y"].to_numpy(), table["x"].to_numpy()
            keep = (y > h / 2) & (y < image.height - h / 2) & (x > w / 2) & (x < image.width - w / 2)
            kept = table.loc[keep].copy()
            kept["position"] = pd.Series([position] * len(kept), index=kept.index, dtype=object)
            kept["fov_name"] = name
            kept["global_track_id"] = name + "_" + kept["track_id"].astype(str)
            kept["_fov"] = fov_idx
            frames.append(kept)
        return pd.concat(frames, ignore_index=True)

    def _filter_anchors(self, tracks: pd.DataFrame) -> pd.DataFrame:
        """Rows with a positive: all, or those whose track has a row ``time_interval`` frames later."""
        if self.time_interval == "any" or not self.fit:
            return tracks
        later = pd.MultiIndex.from_arrays([tracks["global_track_id"], tracks["t"] + int(self.time_interval)])
        present = pd.MultiIndex.from_arrays([tracks["global_track_id"], tracks["t"]])
        return tracks.loc[later.isin(present)]

    def __len__(self) -> int:
        return len(self.valid_anchors)

    def _read_patches(self, rows: pd.DataFrame) -> Tensor:
        """Read ``(B, C, Z, h, w)`` float32 patches centred on the rows, in one batched request."""
        h, w = self.yx_patch_size
        y0 = np.rint(rows["y"].to_numpy()).astype(np.int64) - h // 2
        x0 = np.rint(rows["x"].to_numpy()).astype(np.int64) - w // 2
        return self.reader.read(rows["_fov"].to_numpy(), rows["t"].to_numpy(), y0, x0)

    def _norm_metas(self, rows: pd.DataFrame) -> list[dict | None]:
        return [select_timepoint(self._norm_meta[f], int(t)) for f, t in zip(rows["_fov"], rows["t"])]

    def _negatives(self, anchors: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        """Draw a random row of a different track for each anchor (at the positive's time when possible)."""
        n = len(self.tracks)
        if self.time_interval == "any":
            target_t = None
        else:
            target_t = anchors["t"].to_numpy() + int(self.time_interval)
        gtid = self.tracks["global_track_id"].to_numpy()
        times = self.tracks["t"].to_numpy()
        picks = rng.integers(0, n, size=len(anchors))
        anchor_gtid = anchors["global_track_id"].to_numpy()
        # rejection sampling, vectorised over the batch
        for _ in range(32):
            bad = gtid[picks] == anchor_gtid
            if target_t is not None:
                bad |= times[picks] != target_t
            if not bad.any():
                break
            picks[bad] = rng.integers(0, n, size=int(bad.sum()))
        still_same = gtid[picks] == anchor_gtid
        if still_same.any():
            others = np.flatnonzero(gtid != anchor_gtid[still_same][0])
            if others.size == 0:
                raise ValueError("negatives need at least two tracks")
            picks[still_same] = rng.choice(others, size=int(still_same.sum()))
        return self.tracks.iloc[picks]

    def __getitems__(self, indices: Sequence[int]) -> dict[str, Any]:
        """Read a whole batch: ``anchor`` (+ ``positive``, ``negative`` or ``index``) and norm metadata."""
        indices = [int(i) for i in indices]
        anchors = self.valid_anchors.iloc[indices]
        batch: dict[str, Any] = {"anchor": self._read_patches(anchors), "anchor_norm_meta": self._norm_metas(anchors)}
        if not self.fit:
            batch["index"] = self._index(anchors)
            return batch
        if self.time_interval == "any":
            batch["positive"] = batch["anchor"].clone()
            batch["positive_norm_meta"] = batch["anchor_norm_meta"]
        else:
            keys = pd.MultiIndex.from_arrays([anchors["global_track_id"], anchors["t"] + int(self.time_interval)])
            positives = self.tracks.iloc[self._row_of.loc[keys].to_numpy()]
            batch["positive"] = self._read_patches(positives)
            batch["positive_norm_meta"] = self._norm_metas(positives)
        if self.return_negative:
            rng = np.random.default_rng([self.seed, *indices])
            negatives = self._negatives(anchors, rng)
            batch["negative"] = self._read_patches(negatives)
            batch["negative_norm_meta"] = self._norm_metas(negatives)
        return batch

    def __getitem__(self, index: int) -> TripletSample:
        """One sample (unbatched tensors); loaders use :meth:`__getitems__`."""
        batch = self.__getitems__([index])
        return {key: value[0] if isinstance(value, (Tensor, list)) else value for key, value in batch.items()}  # type: ignore[return-value]

    def _index(self, rows: pd.DataFrame) -> list[dict[str, Any]]:
        columns = [c for c in INDEX_COLUMNS if c in rows.columns]
        return rows[columns].to_dict(orient="records")


def _read_tracks(tracks_path: Path, position: Position) -> pd.DataFrame:
    """First ``*.csv`` (sorted) of ``<tracks_path>/<row>/<col>/<fov>/``; types as in the file."""
    folder = tracks_path / fov_name(position)
    csvs = sorted(folder.glob("*.csv"))
    if not csvs:
        raise FileNotFoundError(f"no tracks CSV for FOV '{fov_name(position)}' in {folder}")
    return pd.read_csv(csvs[0])


class TripletDataModule(DeviceTransformMixin, HCSDataModule):
    """Triplets of tracked-cell patches for contrastive learning (DynaCLR).

    Parameters
    ----------
    data_path : str or pathlib.Path
        HCS plate.
    tracks_path : str or pathlib.Path
        Root of ``<row>/<col>/<fov>/*.csv`` tracks tables.
    source_channel : str or sequence of str
        Channels to read.
    z_range : tuple of int
        ``(start, stop)`` Z slices read.
    initial_yx_patch_size, final_yx_patch_size : tuple of int
        Patch read around each cell, and centre crop after the augmentations.
    split_ratio, batch_size, num_workers, normalizations, augmentations
        As for :class:`~viscy_data.hcs.HCSDataModule` (workers are threads).
    persistent_workers, prefetch_factor, pin_memory, caching
        As for :class:`~viscy_data.hcs.HCSDataModule` (workers are threads).
    augment_validation : bool, default True
        Augment validation batches too (anchors are never augmented when ``time_interval`` is
        ``"any"`` or 0, predictions never).
    fit_include_wells, fit_exclude_fovs : list of str, optional
        FOV selection (fit and predict).
    predict_cells, include_fov_names, include_track_ids
        Predict only the named cells.
    time_interval : "any" or int, default "any"
        Frames between anchor and positive.
    return_negative : bool, default True
        Return negatives.
    z_window_size : int, optional
        Final Z size (default ``stop - start``).
    cache_pool_bytes : int, default 0
        tensorstore chunk cache.
    seed : int, optional
        Seed of the FOV split and of negative sampling.
    """

    def __init__(
        self,
        data_path: str | Path,
        tracks_path: str | Path,
        source_channel: str | Sequence[str],
        z_range: tuple[int, int],
        initial_yx_patch_size: tuple[int, int] = (512, 512),
        final_yx_patch_size: tuple[int, int] = (224, 224),
        split_ratio: float = 0.8,
        batch_size: int = 16,
        num_workers: int = 1,
        normalizations: Sequence[MapTransform] = (),
        augmentations: Sequence[MapTransform] = (),
        augment_validation: bool = True,
        caching: bool = False,
        fit_include_wells: list[str] | None = None,
        fit_exclude_fovs: list[str] | None = None,
        predict_cells: bool = False,
        include_fov_names: list[str] | None = None,
        include_track_ids: list[int] | None = None,
        time_interval: Literal["any"] | int = "any",
        return_negative: bool = True,
        persistent_workers: bool = False,
        prefetch_factor: int | None = None,
        pin_memory: bool = False,
        z_window_size: int | None = None,
        cache_pool_bytes: int = 0,
        seed: int | None = None,
    ) -> None:
        _require_extras("TripletDataModule")
        problems = checks.patch_argument_problems(
            batch_size, num_workers, z_range, initial_yx_patch_size, final_yx_patch_size, "initial_yx_patch_size"
        )
        if problems:
            raise checks.DataCheckError(problems, "TripletDataModule")
        z_start, z_stop = z_range
        z_window_size = z_window_size or (z_stop - z_start)
        if z_window_size > z_stop - z_start:
            raise ValueError(f"z_window_size={z_window_size} is larger than z_range {tuple(z_range)}")
        if num_workers > 1:
            warnings.warn("Using more than 1 thread worker will likely degrade performance.", UserWarning, stacklevel=2)
        super().__init__(
            data_path=data_path,
            source_channel=source_channel,
            target_channel=[],
            z_window_size=z_window_size,
            split_ratio=split_ratio,
            batch_size=batch_size,
            num_workers=num_workers,
            yx_patch_size=final_yx_patch_size,
            normalizations=normalizations,
            augmentations=augmentations,
            caching=caching,
            persistent_workers=persistent_workers,
            prefetch_factor=prefetch_factor,
            pin_memory=pin_memory,
            seed=seed,
        )
        self.tracks_path = Path(tracks_path)
        self.z_range = slice(z_start, z_stop)
        self.initial_yx_patch_size = tuple(initial_yx_patch_size)
        self.final_yx_patch_size = tuple(final_yx_patch_size)
        self.augment_validation = augment_validation
        self._include_wells = fit_include_wells
        self._exclude_fovs = fit_exclude_fovs
        self.predict_cells = predict_cells
        self.include_fov_names = include_fov_names
        self.include_track_ids = include_track_ids
        self.time_interval = time_interval
        self.return_negative = return_negative
        self.cache_pool_bytes = cache_pool_bytes
        self._predicting = False
        self.device_transforms = DeviceTransforms(
            self.source_channel,
            self.normalizations,
            self.augmentations,
            final_size=(z_window_size, *final_yx_patch_size),
        )

    def _dataset(self, positions: list[Position], fit: bool) -> TripletDataset:
        return TripletDataset(
            positions,
            [_read_tracks(self.tracks_path, p) for p in positions],
            self.source_channel,
            self.initial_yx_patch_size,
            self.z_range,
            fit=fit,
            predict_cells=self.predict_cells,
            include_fov_names=self.include_fov_names,
            include_track_ids=self.include_track_ids,
            time_interval=self.time_interval,
            return_negative=self.return_negative,
            cache_pool_bytes=self.cache_pool_bytes,
            seed=self.seed or 0,
        )

    def preflight_check(self, stage: str = "fit") -> None:
        """Check the plate against the arguments before a run writes anything.

        The ``viscy``/``dynaclr`` command calls this before ``fit``, ``validate`` and ``predict`` (before logs,
        checkpoints or ``config.yaml`` exist); :meth:`setup` runs the same checks.

        Parameters
        ----------
        stage : str
            The subcommand about to run (``fit``, ``validate`` and ``predict`` are checked).

        Raises
        ------
        DataCheckError
            Listing every problem: FOVs missing a ``source_channel``, a ``z_range`` beyond a FOV's Z planes, an
            ``initial_yx_patch_size`` larger than a FOV, FOVs without the statistics ``NormalizeSampled`` reads.
        """
        if stage not in ("fit", "validate", "predict"):
            return
        with self._open() as plate:
            self._check_positions(_select_fovs(plate, self._include_wells, self._exclude_fovs))

    def _check_positions(self, positions: Sequence[Position]) -> None:
        problems = checks.fov_problems(
            positions, self.source_channel, self.z_range, self.initial_yx_patch_size, "initial_yx_patch_size"
        )
        problems = [f"{self.data_path}: {m}" for m in problems]
        try:
            self._check_norm_meta(positions)
        except ValueError as err:
            problems.append(str(err))
        if problems:
            raise checks.DataCheckError(problems, str(self.data_path))

    def setup(self, stage: str | None = None) -> None:
        """Build train/val (fit, validate) or predict datasets."""
        self._predicting = stage == "predict"
        if stage == "test":
            raise NotImplementedError("Self-supervised model does not support testing")
        if stage not in ("fit", "validate", "predict"):
            raise NotImplementedError(f"{stage} stage")
        plate = self._open()
        positions = _select_fovs(plate, self._include_wells, self._exclude_fovs)
        self._check_positions(positions)
        if stage == "predict":
            self.predict_dataset = self._dataset(positions, fit=False)
            return
        train_idx, val_idx = self._split(len(positions))
        if not train_idx or not val_idx:
            raise ValueError(f"split_ratio={self.split_ratio} of {len(positions)} FOVs leaves an empty split")
        self.train_dataset = self._dataset([positions[i] for i in train_idx], fit=True)
        self.val_dataset = self._dataset([positions[i] for i in val_idx], fit=True)
        # negatives need another track and the training loader drops the incomplete batch: fail now, not later
        splits = (("training", self.train_dataset), ("validation", self.val_dataset)) if self.return_negative else ()
        problems = [checks.negative_tracks_problem(dataset.tracks, split) for split, dataset in splits]
        if stage == "fit":
            problems.append(checks.anchors_problem(len(self.train_dataset), self.batch_size, what="the training FOVs"))
        if any(problems):
            raise ValueError("; ".join(p for p in problems if p))

    def _loader(self, dataset: TripletDataset, shuffle: bool) -> ThreadDataLoader:
        kwargs: dict[str, Any] = {}
        if self.num_workers > 0:
            kwargs = {"prefetch_factor": self.prefetch_factor, "persistent_workers": self.persistent_workers}
        return thread_worker_loader(
            dataset,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            shuffle=shuffle,
            drop_last=shuffle,
            collate_fn=lambda batch: batch,
            pin_memory=self.pin_memory,
            **kwargs,
        )

    def train_dataloader(self) -> ThreadDataLoader:
        """Shuffled batches (threads), incomplete batch dropped."""
        return self._loader(self.train_dataset, shuffle=True)

    def val_dataloader(self) -> ThreadDataLoader:
        """Return validation batches in order."""
        return self._loader(self.val_dataset, shuffle=False)

    def predict_dataloader(self) -> ThreadDataLoader:
        """Return prediction batches in order."""
        return self._loader(self.predict_dataset, shuffle=False)

    # on_before_batch_transfer: DeviceTransformMixin's (collates norm_meta), not HCSDataModule's target handling

    @property
    def stage_without_trainer(self) -> str:
        """``predict`` after ``setup("predict")``, else ``train``."""
        return "predict" if self._predicting else "train"

    def augments(self, key: str, stage: str) -> bool:
        """Augment all but predictions, validation without ``augment_validation``, and still anchors."""
        if stage == "predict" or (stage != "train" and not self.augment_validation):
            return False
        return not (key == "anchor" and self.time_interval in ("any", 0))
