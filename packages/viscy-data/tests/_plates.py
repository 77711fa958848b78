"""Tiny HCS plates whose voxel values say where they came from (for the GPU-aug family tests).

Voxel value = 1000 * FOV ordinal + 10 * t + channel, so any item can be traced back to its FOV,
timepoint and channel.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from iohub.ngff import open_ome_zarr

DEFAULT_FOVS = (("A", "1", "0"), ("A", "1", "1"), ("A", "2", "0"), ("B", "1", "0"))


def voxel_value(fov: int, t: int, c: int, offset: float = 0.0) -> float:
    return 1000.0 * fov + 10.0 * t + c + offset


def make_plate(
    path: Path,
    fovs=DEFAULT_FOVS,
    channel_names=("Phase", "GFP"),
    shape=(2, 3, 8, 16),
    version: str = "0.4",
    dtype=np.float32,
    norm: bool = True,
    timepoint_stats: bool = True,
    offset: float = 0.0,
) -> Path:
    """Write a plate; ``shape`` is (T, Z, Y, X); ``offset`` is added to every voxel. Returns the store path."""
    t_count, z, y, x = shape
    with open_ome_zarr(path, layout="hcs", mode="w-", channel_names=list(channel_names), version=version) as plate:
        for ordinal, (row, col, fov) in enumerate(fovs):
            position = plate.create_position(row, col, fov)
            data = np.empty((t_count, len(channel_names), z, y, x), dtype=dtype)
            for t in range(t_count):
                for c in range(len(channel_names)):
                    data[t, c] = voxel_value(ordinal, t, c, offset)
            position.create_image("0", data)
            if norm:
                meta = {}
                for c, name in enumerate(channel_names):
                    level = {"mean": float(ordinal), "std": 2.0, "median": float(ordinal), "iqr": 1.0}
                    meta[name] = {"dataset_statistics": dict(level), "fov_statistics": dict(level)}
                    if timepoint_stats:
                        meta[name]["timepoint_statistics"] = {
                            str(t): {**level, "mean": float(10 * t + c)} for t in range(t_count)
                        }
                position.zattrs["normalization"] = meta
    return Path(path)
