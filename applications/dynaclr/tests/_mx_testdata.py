"""Synthetic experiments for the multi-experiment tests.

Loaded by the test modules with ``importlib`` from this directory (no ``sys.path`` changes):
see ``_load_testdata`` in ``test_multi_experiment_testdata.py``.

Pixel values encode where they come from: ``code * 1000 + zarr_channel * 100 + t``, constant over
Z, Y and X, so a test can tell which experiment, channel and frame a patch was read from.
"""

import numpy as np
import pandas as pd
from iohub.ngff import open_ome_zarr

from dynaclr.experiment import ExperimentConfig


def default_tracks(n_t=10, n_tracks=3, height=64, width=64, seed=0, division=False):
    """Tracks of one FOV: ``n_tracks`` full-length tracks; optionally track 0 divides at n_t // 2."""
    rng = np.random.default_rng(seed)
    rows = []
    for track in range(n_tracks):
        y, x = rng.uniform(16, height - 16), rng.uniform(16, width - 16)
        end = n_t // 2 if (division and track == 0) else n_t
        rows += [(track, t, y, x, -1) for t in range(end)]
    if division:
        for daughter in (n_tracks, n_tracks + 1):
            rows += [(daughter, t, height / 2, width / 2, 0) for t in range(n_t // 2, n_t)]
    df = pd.DataFrame(rows, columns=["track_id", "t", "y", "x", "parent_track_id"])
    df["id"] = np.arange(len(df)) + 1000
    df["parent_id"] = -1
    df["z"] = 0
    return df


def make_experiment(
    root,
    name,
    channel_names=("Phase3D", "GFP"),
    source_channel=("Phase3D", "GFP"),
    condition_wells=None,
    fovs_per_well=1,
    n_t=10,
    n_z=4,
    size=64,
    code=1,
    tracks=None,
    norm=True,
    timepoint_stats=False,
    interval_minutes=30.0,
    start_hpi=0.0,
    version="0.4",
    chunks=None,
):
    """Write a plate and its tracks under ``root/name`` and return the ExperimentConfig.

    ``tracks`` is a DataFrame, a callable ``(fov_name) -> DataFrame``, or None for default_tracks.
    """
    condition_wells = condition_wells or {"uninfected": ["A/1"], "infected": ["B/1"]}
    store = root / f"{name}.zarr"
    tracks_root = root / f"{name}_tracks"
    n_c = len(channel_names)
    with open_ome_zarr(store, layout="hcs", mode="w-", channel_names=list(channel_names), version=version) as plate:
        for wells in condition_wells.values():
            for well in wells:
                row, col = well.split("/")
                for f in range(fovs_per_well):
                    fov_name = f"{row}/{col}/{f}"
                    pos = plate.create_position(row, col, str(f))
                    t_idx = np.arange(n_t, dtype=np.float32)[:, None]
                    c_idx = np.arange(n_c, dtype=np.float32)[None, :]
                    values = code * 1000 + c_idx * 100 + t_idx
                    data = np.broadcast_to(values[:, :, None, None, None], (n_t, n_c, n_z, size, size))
                    pos.create_image("0", np.ascontiguousarray(data, dtype=np.float32), chunks=chunks)
                    if norm:
                        stats = {}
                        for c, ch in enumerate(channel_names):
                            level = {"mean": float(code * 1000 + c * 100), "std": 2.0, "median": 0.0, "iqr": 1.0}
                            stats[ch] = {"fov_statistics": level, "dataset_statistics": dict(level)}
                            if timepoint_stats:
                                stats[ch]["timepoint_statistics"] = {
                                    str(t): {**level, "mean": float(code * 1000 + c * 100 + t)} for t in range(n_t)
                                }
                        pos.zattrs["normalization"] = stats
                    df = tracks(fov_name) if callable(tracks) else (tracks if tracks is not None else None)
                    if df is None:
                        df = default_tracks(n_t=n_t, height=size, width=size, seed=f)
                    out = tracks_root / fov_name
                    out.mkdir(parents=True)
                    df.to_csv(out / "tracks.csv", index=False)
    return ExperimentConfig(
        name=name,
        data_path=str(store),
        tracks_path=str(tracks_root),
        channel_names=list(channel_names),
        source_channel=list(source_channel),
        condition_wells={k: list(v) for k, v in condition_wells.items()},
        interval_minutes=interval_minutes,
        start_hpi=start_hpi,
    )


def write_experiments_yaml(path, configs, **top_level):
    """Write an experiments file for ``ExperimentRegistry.from_yaml``."""
    import dataclasses

    import yaml

    path.write_text(yaml.safe_dump({"experiments": [dataclasses.asdict(c) for c in configs], **top_level}))
    return path
