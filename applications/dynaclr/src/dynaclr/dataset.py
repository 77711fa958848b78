"""Batched patch reads of anchors and their positives across experiments."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from dynaclr.index import MultiExperimentIndex
from viscy_data import INDEX_COLUMNS
from viscy_data.norm_meta import read_norm_meta, select_timepoint
from viscy_data.patch_reader import FovArray, PatchReader, require_tensorstore

__all__ = ["MultiExperimentTripletDataset"]

#: statistics given to a zero-filled channel so normalisation leaves its zeros alone
_IDENTITY_STATS = {"mean": 0.0, "std": 1.0, "median": 0.0, "iqr": 1.0}
#: rejection rounds when drawing negatives of another lineage before falling back to a full search
_NEGATIVE_DRAWS = 16


class MultiExperimentTripletDataset(Dataset):
    """Anchor/positive patches of a :class:`~dynaclr.index.MultiExperimentIndex`, read in batches.

    Parameters
    ----------
    index : MultiExperimentIndex
        Observations, lineage and valid anchors. Its ``tau_range_hours`` defines the positives.
    fit : bool
        True: items are valid anchors with a positive. False (prediction): items are **all**
        observations of ``index.tracks``, with an ``index`` entry of tracking metadata.
    tau_range_hours : tuple[float, float] or None
        Must equal the index's range if given (one source of truth for tau).
    tau_decay_rate : float
        Decay of the temporal-offset distribution (see :func:`~dynaclr.tau_sampling.sample_tau`).
    return_negative : bool
        Fit mode: also return ``negative`` (and ``negative_norm_meta``), one observation per anchor
        from another lineage of the same experiment, for losses that take explicit negatives
        (``TripletMarginLoss``). NT-Xent losses use in-batch negatives and need none.
    cache_pool_bytes : int
        Size of the tensorstore chunk cache shared by all stores (see
        :class:`~viscy_data.patch_reader.PatchReader`).
    seed : int
        Positives of a batch are drawn from ``(seed, epoch, rank, indices)``: reproducible, and
        different for different batches, epochs and ranks.

    Notes
    -----
    Patches are read by a :class:`~viscy_data.patch_reader.PatchReader`: one array per (experiment,
    FOV), so experiments with equal FOV names never share pixels; channels resolved once per FOV and
    zero-filled where an experiment lacks one. Normalisation metadata is read once per FOV and
    re-keyed from zarr channel names to the generic ``ch_<i>`` keys of the model-input positions;
    ``timepoint_statistics`` are resolved to the sample's frame. Patches are ``float32`` of exactly
    ``yx_patch_size``, shifted inside the image (zero padded where the image is smaller).
    """

    def __init__(
        self,
        index: MultiExperimentIndex,
        fit: bool = True,
        tau_range_hours: tuple[float, float] | None = (0.5, 2.0),
        tau_decay_rate: float = 2.0,
        return_negative: bool = False,
        cache_pool_bytes: int = 0,
        seed: int = 0,
    ) -> None:
        require_tensorstore("MultiExperimentTripletDataset")
        if fit and tau_range_hours is not None and tuple(map(float, tau_range_hours)) != index.tau_range_hours:
            raise ValueError(
                f"tau_range_hours={tuple(tau_range_hours)} differs from the index's {index.tau_range_hours}; "
                "build the index with the range the dataset should use"
            )
        self.index = index
        self.fit = fit
        self.tau_range_hours = index.tau_range_hours
        self.tau_decay_rate = float(tau_decay_rate)
        self.return_negative = bool(return_negative)
        self.cache_pool_bytes = int(cache_pool_bytes)
        self.seed = int(seed)
        self.epoch = 0
        self.rank = 0
        self._rows = index.anchor_track_rows if fit else np.arange(len(index.tracks))
        registry = index.registry
        self._n_channels = registry.num_source_channels
        tracks = index.tracks
        self._t = tracks["t"].to_numpy(dtype=np.int64)
        ph, pw = index.yx_patch_size
        self._y0 = np.floor(tracks["y_clamp"].to_numpy()).astype(np.int64) - ph // 2
        self._x0 = np.floor(tracks["x_clamp"].to_numpy()).astype(np.int64) - pw // 2
        self._fov = index.fov_codes
        self._fov_hw = index.fov_shapes  # (height, width) per FOV, to keep patches inside the image
        exps = {e.name: e for e in registry.experiments}
        fov_keys = index.fov_keys
        self._fov_channels = [registry.channel_maps[e] for e, _ in fov_keys]
        self._fov_channel_names = [exps[e].channel_names for e, _ in fov_keys]
        self._fov_labels = [f"{e}:{fov}" for e, fov in fov_keys]
        arrays = [
            FovArray(str(Path(exps[e].data_path) / fov / "0"), tuple(exps[e].channel_names), label)
            for (e, fov), label in zip(fov_keys, self._fov_labels)
        ]
        # model-input position i of a FOV reads its experiment's source_channel[i] (None: zero-filled)
        channels = [
            [exps[e].source_channel[i] if i in cmap else None for i in range(self._n_channels)]
            for (e, _), cmap in zip(fov_keys, self._fov_channels)
        ]
        self.reader = PatchReader(arrays, channels, index.yx_patch_size, index.z_range, cache_pool_bytes)
        self._norm: dict[int, dict | None] = {}
        self._negative_pools: tuple[list[np.ndarray], np.ndarray] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Use a new stream of positives for this epoch."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return int(self._rows.size)

    # ------------------------------------------------------------------ metadata
    def _norm_meta(self, fov: int) -> dict | None:
        if fov not in self._norm:
            raw = read_norm_meta(self.index.positions[fov].zattrs)
            meta = None
            if raw is not None:
                names = self._fov_channel_names[fov]
                meta = {}
                for i in range(self._n_channels):
                    zarr_idx = self._fov_channels[fov].get(i)
                    if zarr_idx is None:
                        level = {k: torch.tensor(v) for k, v in _IDENTITY_STATS.items()}
                        meta[f"ch_{i}"] = {"fov_statistics": level, "dataset_statistics": level}
                        continue
                    name = names[zarr_idx]
                    if name not in raw:
                        raise KeyError(
                            f"{self._fov_labels[fov]}: normalisation metadata has no channel '{name}' "
                            f"(has {sorted(raw)})"
                        )
                    meta[f"ch_{i}"] = raw[name]
            self._norm[fov] = meta
        return self._norm[fov]

    def _sample_norm_meta(self, rows: np.ndarray) -> list[dict | None]:
        out = []
        for fov, t in zip(self._fov[rows].tolist(), self._t[rows].tolist()):
            meta = self._norm_meta(fov)
            if meta is not None and any("timepoint_statistics" in v for v in meta.values()):
                meta = select_timepoint(meta, t)
            out.append(meta)
        return out

    # ------------------------------------------------------------------ reading
    def _read_patches(self, rows: np.ndarray) -> torch.Tensor:
        """Read (len(rows), C, Z, Y, X) float32 patches, kept inside the image where it is large enough."""
        height, width = self._fov_hw[self._fov[rows]].T
        ph, pw = self.index.yx_patch_size
        y0 = np.minimum(np.maximum(self._y0[rows], 0), np.maximum(height - ph, 0))
        x0 = np.minimum(np.maximum(self._x0[rows], 0), np.maximum(width - pw, 0))
        return self.reader.read(self._fov[rows], self._t[rows], y0, x0)

    def _negatives(self, anchor_rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One observation per anchor from another lineage of the same experiment (rows of ``tracks``)."""
        if self._negative_pools is None:  # built once: per-experiment rows and lineage codes
            self._negative_pools = (self.index.experiment_rows, self.index.lineage_codes)
        groups, lineage = self._negative_pools
        experiment = self.index.experiment_codes[anchor_rows]
        picks = np.empty(anchor_rows.size, dtype=np.int64)
        for code in np.unique(experiment):
            sel = np.flatnonzero(experiment == code)
            pool = groups[code]
            drawn = pool[rng.integers(0, pool.size, sel.size)]
            for _ in range(_NEGATIVE_DRAWS):  # rejection sampling, vectorised over the batch
                same = lineage[drawn] == lineage[anchor_rows[sel]]
                if not same.any():
                    break
                drawn[same] = pool[rng.integers(0, pool.size, int(same.sum()))]
            for k in np.flatnonzero(lineage[drawn] == lineage[anchor_rows[sel]]):
                others = pool[lineage[pool] != lineage[anchor_rows[sel[k]]]]
                if others.size == 0:
                    name = self.index.experiment_names[code]
                    raise ValueError(f"experiment '{name}' has a single lineage: return_negative needs two or more")
                drawn[k] = others[rng.integers(0, others.size)]
            picks[sel] = drawn
        return picks

    def __getitems__(self, indices: list[int]) -> dict[str, Any]:
        """Read a batch: anchors (and positives in fit mode) as (B, C, Z, Y, X) tensors.

        Parameters
        ----------
        indices : list[int]
            Item positions (rows of ``valid_anchors`` in fit mode, of ``tracks`` otherwise).

        Returns
        -------
        dict
            ``anchor``, ``anchor_norm_meta`` (list of per-sample dicts or None), and
            ``positive``/``positive_norm_meta`` (fit; ``negative``/``negative_norm_meta`` too with
            ``return_negative``) or ``index`` (list of dicts, prediction).
        """
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"indices out of range for a dataset of {len(self)} items: {indices}")
        anchor_rows = self._rows[idx]
        if self.fit:
            entropy = [self.seed, self.epoch, self.rank, *idx.tolist()]
            rng = np.random.default_rng(np.random.SeedSequence(entropy))
            positive_rows = self.index.sample_positives(anchor_rows, rng, self.tau_decay_rate)
            reads = {"anchor": anchor_rows, "positive": positive_rows}
            if self.return_negative:
                reads["negative"] = self._negatives(anchor_rows, rng)
            patches = self._read_patches(np.concatenate(list(reads.values())))  # one batched read
            n = idx.size
            batch: dict[str, Any] = {}
            for k, (key, rows) in enumerate(reads.items()):
                batch[key] = patches[k * n : (k + 1) * n]
                batch[f"{key}_norm_meta"] = self._sample_norm_meta(rows)
            return batch
        columns = [c for c in INDEX_COLUMNS if c in self.index.tracks.columns]
        records = self.index.tracks.iloc[anchor_rows][columns].astype(object).to_dict("records")
        return {
            "anchor": self._read_patches(anchor_rows),
            "anchor_norm_meta": self._sample_norm_meta(anchor_rows),
            "index": records,
        }

    def __getitem__(self, i: int) -> dict[str, Any]:
        """One item, without the batch dimension (prefer batched access)."""
        batch = self.__getitems__([i])
        return {k: (v[0] if isinstance(v, (torch.Tensor, list)) else v) for k, v in batch.items()}
