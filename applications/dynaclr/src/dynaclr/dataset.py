"""Batched patch reads of anchors and their positives across experiments."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from dynaclr.index import MultiExperimentIndex
from viscy_data._typing import INDEX_COLUMNS
from viscy_data.errors import ImageReadError
from viscy_data.norm_meta import check_norm_meta_complete, read_norm_meta, select_timepoint

__all__ = ["MultiExperimentTripletDataset"]

#: statistics given to a zero-filled channel so normalisation leaves its zeros alone
_IDENTITY_STATS = {"mean": 0.0, "std": 1.0, "median": 0.0, "iqr": 1.0}


def _import_tensorstore():
    try:
        import tensorstore
    except ImportError as err:
        raise ImportError(
            'tensorstore is required for MultiExperimentTripletDataset: pip install "viscy-data[triplet]"'
        ) from err
    return tensorstore


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
        Reserved; in-batch negatives are used.
    cache_pool_bytes : int
        Size of the tensorstore chunk cache shared by all stores.
    seed : int
        Positives of a batch are drawn from ``(seed, epoch, rank, indices)``: reproducible, and
        different for different batches, epochs and ranks.

    Notes
    -----
    Stores are opened lazily, one per (experiment, FOV): experiments with equal FOV names never
    share pixels. Normalisation metadata is read once per FOV and re-keyed from zarr channel names
    to the generic ``ch_<i>`` keys of the model-input positions; ``timepoint_statistics`` are
    resolved to the sample's frame. Patches are ``float32`` of exactly ``yx_patch_size`` (zero
    padded where the image is smaller).
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
        if fit and tau_range_hours is not None and tuple(map(float, tau_range_hours)) != index.tau_range_hours:
            raise ValueError(
                f"tau_range_hours={tuple(tau_range_hours)} differs from the index's {index.tau_range_hours}; "
                "build the index with the range the dataset should use"
            )
        self._ts = _import_tensorstore()
        self.index = index
        self.fit = fit
        self.tau_range_hours = index.tau_range_hours
        self.tau_decay_rate = float(tau_decay_rate)
        self.return_negative = return_negative
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
        fov_keys = index.fov_keys
        exps = {e.name: e for e in registry.experiments}
        self._fov_channels = [registry.channel_maps[e] for e, _ in fov_keys]
        # per FOV: the batch channel positions a read fills and the zarr channels it reads for them
        self._fov_reads = [(sorted(cmap), [cmap[i] for i in sorted(cmap)]) for cmap in self._fov_channels]
        self._fov_paths = [str(Path(exps[e].data_path) / fov / "0") for e, fov in fov_keys]
        self._fov_channel_names = [exps[e].channel_names for e, _ in fov_keys]
        self._fov_labels = [f"{e}:{fov}" for e, fov in fov_keys]
        self._stores: dict[int, Any] = {}
        self._norm: dict[int, dict | None] = {}
        self._experiments = exps
        self._complete_plates: set[str] = set()
        self._lock = threading.Lock()
        self._context = None

    def set_epoch(self, epoch: int) -> None:
        """Use a new stream of positives for this epoch."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return int(self._rows.size)

    # ------------------------------------------------------------------ stores and metadata
    def _get_context(self):
        if self._context is None:
            cpus = os.environ.get("SLURM_CPUS_PER_TASK") or os.cpu_count() or 4
            self._context = self._ts.Context(
                {
                    "data_copy_concurrency": {"limit": int(cpus)},
                    "cache_pool": {"total_bytes_limit": self.cache_pool_bytes},
                }
            )
        return self._context

    def _store(self, fov: int):
        store = self._stores.get(fov)
        if store is None:
            with self._lock:
                store = self._stores.get(fov)
                if store is None:
                    path = self._fov_paths[fov]
                    driver = "zarr3" if (Path(path) / "zarr.json").exists() else "zarr"
                    spec = {
                        "driver": driver,
                        "kvstore": {"driver": "file", "path": path},
                        "recheck_cached_data": "open",
                    }
                    store = self._ts.open(spec, read=True, context=self._get_context()).result()
                    self._stores[fov] = store
        return store

    def _check_plate_complete(self, fov: int) -> None:
        experiment = self.index.fov_keys[fov][0]
        if experiment not in self._complete_plates:
            from iohub.ngff import open_ome_zarr

            data_path = self._experiments[experiment].data_path
            with open_ome_zarr(data_path, layout="hcs", mode="r") as plate:
                check_norm_meta_complete(plate.zattrs, data_path)
            self._complete_plates.add(experiment)

    def _norm_meta(self, fov: int) -> dict | None:
        if fov not in self._norm:
            raw = read_norm_meta(self.index.positions[fov].zattrs)
            meta = None
            if raw is not None:
                self._check_plate_complete(fov)
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

    def _open_or_raise(self, fov: int, t: int):
        try:
            return self._store(fov)
        except Exception as err:
            experiment, fov_name = self.index.fov_keys[fov]
            source = f"experiment '{experiment}'"
            raise ImageReadError.describe(
                err, path=self._fov_paths[fov], fov=fov_name, timepoint=t, array="0", request={}, source=source
            ) from err

    def _read_error(self, err: Exception, fov: int, request: tuple, shape) -> ImageReadError:
        t, channels, z, y, x = request
        experiment, fov_name = self.index.fov_keys[fov]
        names = self._fov_channel_names[fov]
        return ImageReadError.describe(
            err,
            path=self._fov_paths[fov],
            fov=fov_name,
            timepoint=t,
            array="0",
            request={"c": [names[c] for c in channels], "z": z, "y": y, "x": x},
            shape=shape,
            source=f"experiment '{experiment}'",
        )

    # ------------------------------------------------------------------ reading
    def _read_patches(self, rows: np.ndarray) -> torch.Tensor:
        """Read (len(rows), C, Z, Y, X) float32 patches; all reads are issued before any wait.

        Tensorstore copies each patch straight from the (decoded or cached) chunks into the batch tensor: no
        intermediate array per patch, and only the parts no read covers (image edges, absent channels) are zeroed.
        """
        z = self.index.z_range
        ph, pw = self.index.yx_patch_size
        n_z = len(range(*z.indices(1 << 30)))
        out = torch.empty((rows.size, self._n_channels, n_z, ph, pw), dtype=torch.float32)
        dest = self._ts.array(out.numpy(), copy=False, write=True)
        pending = []
        for k, (row, fov) in enumerate(zip(rows.tolist(), self._fov[rows].tolist())):
            store = self._open_or_raise(fov, int(self._t[row]))
            height, width = store.shape[-2], store.shape[-1]
            y0 = min(max(int(self._y0[row]), 0), max(height - ph, 0))
            x0 = min(max(int(self._x0[row]), 0), max(width - pw, 0))
            y1, x1 = min(y0 + ph, height), min(x0 + pw, width)
            positions, zarr_channels = self._fov_reads[fov]
            if len(positions) < self._n_channels or y1 - y0 < ph or x1 - x0 < pw:
                out[k] = 0.0  # zero-filled channel or image smaller than the patch
            if not positions:
                continue
            request = (int(self._t[row]), zarr_channels, z, slice(y0, y1), slice(x0, x1))
            try:
                source = store[request]
                target = dest[k, positions, :, : y1 - y0, : x1 - x0]
                pending.append((request, fov, target.write(source)))
            except Exception as err:  # an index outside the array (e.g. z_range beyond the plate's Z)
                raise self._read_error(err, fov, request, store.shape) from err
        for request, fov, future in pending:
            try:
                future.result()
            except Exception as err:  # a missing, truncated or corrupt chunk
                raise self._read_error(err, fov, request, self._stores[fov].shape) from err
        return out

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
            ``positive``/``positive_norm_meta`` (fit) or ``index`` (list of dicts, prediction).
        """
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"indices out of range for a dataset of {len(self)} items: {indices}")
        anchor_rows = self._rows[idx]
        if self.fit:
            entropy = [self.seed, self.epoch, self.rank, *idx.tolist()]
            rng = np.random.default_rng(np.random.SeedSequence(entropy))
            positive_rows = self.index.sample_positives(anchor_rows, rng, self.tau_decay_rate)
            patches = self._read_patches(np.concatenate([anchor_rows, positive_rows]))
            n = idx.size
            return {
                "anchor": patches[:n],
                "anchor_norm_meta": self._sample_norm_meta(anchor_rows),
                "positive": patches[n:],
                "positive_norm_meta": self._sample_norm_meta(positive_rows),
            }
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
