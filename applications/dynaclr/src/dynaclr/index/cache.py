"""The parquet cache of a built index: one file per experiments, parameters and tracking files.

The file holds the table of observations (column dtypes kept, categories included) plus, as side data,
two hidden columns (FOV and track code of every row) and a ``DataFrame.attrs`` entry kept in the pandas
schema metadata (FOV keys and shapes, the parent of every track). Its name hashes everything the index
depends on, CSV sizes and modification times included, so any change makes a new name.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import logging
import os
import uuid
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from dynaclr.experiment import ExperimentRegistry

__all__ = ["CACHE_VERSION", "CachedIndex", "cache_path", "read_cache", "write_cache"]

_logger = logging.getLogger(__name__)

CACHE_VERSION = 2  # 1 was the .npz cache
_CACHE_ATTR = "dynaclr.multi_experiment_index"
_FOV_CODE_COLUMN = "__dynaclr_fov_code"
_TRACK_CODE_COLUMN = "__dynaclr_track_code"


class CachedIndex(NamedTuple):
    """What a cache file restores (FOV positions are looked up again in the plates).

    Attributes
    ----------
    tracks : pandas.DataFrame
        The table without its ``position`` column.
    fov_keys : list of (str, str)
        ``(experiment, fov_name)`` of every FOV.
    fov_shapes : list of (int, int)
        Image height and width of every FOV.
    parent : numpy.ndarray
        Parent track of every track (-1 for roots).
    fov_code, track_code : numpy.ndarray
        FOV and track of every row.
    """

    tracks: pd.DataFrame
    fov_keys: list[tuple[str, str]]
    fov_shapes: list[tuple[int, int]]
    parent: np.ndarray
    fov_code: np.ndarray
    track_code: np.ndarray


def cache_path(
    cache_dir: str | Path,
    registry: ExperimentRegistry,
    z_range: slice,
    yx_patch_size: tuple[int, int],
    tau_range_hours: tuple[float, float],
    include_wells: list[str] | None,
    exclude_fovs: list[str] | None,
) -> Path:
    """``<cache_dir>/multi_experiment_index_<key>.parquet`` for these experiments, parameters and CSVs."""
    files = []
    for exp in registry.experiments:
        for csv in sorted(Path(exp.tracks_path).glob("*/*/*/*.csv")):
            stat = csv.stat()
            files.append([str(csv), stat.st_size, stat.st_mtime_ns])
    payload = {
        "version": CACHE_VERSION,
        "experiments": [dataclasses.asdict(e) for e in registry.experiments],
        "zero_fill": registry.zero_fill_missing_channels,
        "z_range": [z_range.start, z_range.stop, z_range.step],
        "patch": yx_patch_size,
        "tau": tau_range_hours,
        "include_wells": include_wells,
        "exclude_fovs": exclude_fovs,
        "files": files,
    }
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:20]
    return Path(cache_dir) / f"multi_experiment_index_{digest}.parquet"


def _categories(table: pd.DataFrame) -> dict[str, int]:
    return {name: len(col.cat.categories) for name, col in table.items() if isinstance(col.dtype, pd.CategoricalDtype)}


def write_cache(path: Path, index: CachedIndex) -> None:
    """Write ``index`` to ``path`` atomically; a failed write leaves no file and only warns."""
    if index.tracks.empty:
        # parquet keeps no categories for a column without rows, and an empty index is cheap to rebuild
        _logger.info("No observations: the index cache %s is not written", path)
        return
    table = index.tracks.drop(columns="position", errors="ignore")
    clash = {_FOV_CODE_COLUMN, _TRACK_CODE_COLUMN} & set(table.columns)
    if clash:
        _logger.warning("Index cache not written: the tracking CSVs have reserved column(s) %s", sorted(clash))
        return
    table[_FOV_CODE_COLUMN] = index.fov_code
    table[_TRACK_CODE_COLUMN] = index.track_code
    table.attrs = {
        _CACHE_ATTR: {
            "version": CACHE_VERSION,
            "key": path.stem,
            "n_categories": _categories(table),
            "fov_keys": [list(k) for k in index.fov_keys],
            "fov_shapes": [list(s) for s in index.fov_shapes],
            # one int per track: compact and exact as little-endian int64 bytes
            "parent": base64.b64encode(index.parent.astype("<i8").tobytes()).decode("ascii"),
        }
    }
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # a unique sibling, so concurrent writers (one per DDP rank) never share a half-written file;
        # not mkstemp, whose 0600 mode would hide a shared cache from other users
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
        table.to_parquet(tmp, engine="pyarrow", index=False)
        os.replace(tmp, path)
    except Exception as err:  # a cache is an optimisation: never fail the index because of it
        _logger.warning(
            "Could not write the index cache %s (%s: %s); continuing without it", path, type(err).__name__, err
        )
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        return
    _logger.info("Saved the multi-experiment index cache to %s", path)


def read_cache(path: Path) -> CachedIndex:
    """Read a cache file written by :func:`write_cache` for the key of ``path``.

    Raises
    ------
    Exception
        Any defect (unreadable, foreign, stale or inconsistent file): ``ValueError`` with the reason,
        or the reader's own error.
    """
    tracks = pd.read_parquet(path, engine="pyarrow")
    meta = tracks.attrs.get(_CACHE_ATTR)
    tracks.attrs = {}
    if not isinstance(meta, dict) or meta.get("version") != CACHE_VERSION or meta.get("key") != path.stem:
        raise ValueError(f"not a version-{CACHE_VERSION} index cache for key {path.stem}")
    if _categories(tracks) != meta["n_categories"]:
        raise ValueError("categorical columns differ from those written")
    fov_keys = [(str(e), str(f)) for e, f in meta["fov_keys"]]
    fov_shapes = [(int(h), int(w)) for h, w in meta["fov_shapes"]]
    parent = np.frombuffer(base64.b64decode(meta["parent"]), dtype="<i8").astype(np.int64)
    fov_code = tracks.pop(_FOV_CODE_COLUMN).to_numpy(dtype=np.int64)
    track_code = tracks.pop(_TRACK_CODE_COLUMN).to_numpy(dtype=np.int64)
    if len(fov_shapes) != len(fov_keys) or np.any((fov_code < 0) | (fov_code >= len(fov_keys))):
        raise ValueError("FOV codes out of range")
    if np.any((track_code < 0) | (track_code >= parent.size)) or np.any((parent < -1) | (parent >= parent.size)):
        raise ValueError("track codes or parents out of range")
    return CachedIndex(tracks, fov_keys, fov_shapes, parent, fov_code, track_code)
