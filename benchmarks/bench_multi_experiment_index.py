"""MultiExperimentIndex build time and memory for ~1.2 million observations.

2 experiments x 256 FOVs x 50 frames x 43 cells, a fifth of them dividing once (2 daughters each). Plates hold
only metadata (no pixels are written); tracks are real CSV files. Also times writing the parquet
index cache, its size on disk, and a reload from it.

Run: ``uv run python benchmarks/bench_multi_experiment_index.py``. Target: build < 15 s, < 1 GB;
reload a few seconds.
"""

import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from iohub.ngff import open_ome_zarr

from dynaclr.experiment import ExperimentConfig, ExperimentRegistry
from dynaclr.index import MultiExperimentIndex

N_FOV_ROWS, N_FOV_COLS = 16, 16  # 256 FOVs per experiment (one FOV per well)
N_T, N_CELLS, SIZE = 50, 43, 2048


def fov_tracks(rng: np.random.Generator) -> pd.DataFrame:
    n_div = N_CELLS // 5
    n_full = N_CELLS - n_div
    t = np.arange(N_T)
    half = np.arange(N_T // 2)
    parts = [
        # full-length tracks
        (np.repeat(np.arange(n_full), N_T), np.tile(t, n_full), -1),
        # mothers (first half) and their two daughters (second half)
        (np.repeat(np.arange(n_full, N_CELLS), N_T // 2), np.tile(half, n_div), -1),
    ]
    daughters = N_CELLS + np.arange(2 * n_div)
    parts.append((np.repeat(daughters, N_T // 2), np.tile(half + N_T // 2, 2 * n_div), None))
    frames = []
    for tid, tt, parent in parts:
        p = np.full(tid.size, -1) if parent is not None else n_full + (tid - N_CELLS) // 2
        frames.append(pd.DataFrame({"track_id": tid, "t": tt, "parent_track_id": p}))
    df = pd.concat(frames, ignore_index=True)
    df["y"] = rng.uniform(0, SIZE, len(df))
    df["x"] = rng.uniform(0, SIZE, len(df))
    df["id"] = np.arange(len(df))
    df["parent_id"] = -1
    return df


def make_experiment(root: Path, name: str, rng: np.random.Generator) -> ExperimentConfig:
    store, tracks = root / f"{name}.zarr", root / f"{name}_tracks"
    rows = [chr(ord("A") + i) for i in range(N_FOV_ROWS)]
    with open_ome_zarr(store, layout="hcs", mode="w-", channel_names=["Phase3D", "GFP"]) as plate:
        for r in rows:
            for c in range(1, N_FOV_COLS + 1):
                pos = plate.create_position(r, str(c), "0")
                pos.create_zeros("0", (N_T, 2, 8, SIZE, SIZE), dtype=np.float32, chunks=(1, 1, 8, 512, 512))
                out = tracks / r / str(c) / "0"
                out.mkdir(parents=True)
                fov_tracks(rng).to_csv(out / "tracks.csv", index=False)
    wells = [f"{r}/{c}" for r in rows for c in range(1, N_FOV_COLS + 1)]
    return ExperimentConfig(
        name,
        str(store),
        str(tracks),
        ["Phase3D", "GFP"],
        ["Phase3D", "GFP"],
        {"uninfected": wells[::2], "infected": wells[1::2]},
    )


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        registry = ExperimentRegistry([make_experiment(root, f"exp_{i}", rng) for i in range(2)])
        print(f"setup (plates + CSVs): {time.perf_counter() - start:.1f} s")
        base = rss_mb()
        start = time.perf_counter()
        index = MultiExperimentIndex(registry, slice(0, 8), (160, 160), tau_range_hours=(0.5, 2.0))
        build = time.perf_counter() - start
        print(
            f"index build: {build:.2f} s for {len(index.tracks):,} observations, "
            f"{len(index.valid_anchors):,} valid anchors; extra peak RSS {rss_mb() - base:.0f} MB"
        )
        start = time.perf_counter()
        rows = index.anchor_track_rows[rng.integers(0, len(index.anchor_track_rows), 64)]
        for _ in range(100):
            index.sample_positives(rows, rng)
        print(f"positive sampling: {1e3 * (time.perf_counter() - start) / 100:.2f} ms per batch of 64")
        cache = root / "cache"
        path = index._cache_file(cache)
        start = time.perf_counter()
        index._save_cache(path)
        print(f"save cache (parquet): {time.perf_counter() - start:.2f} s, {path.stat().st_size / 2**20:.1f} MiB")
        start = time.perf_counter()
        loaded = MultiExperimentIndex(registry, slice(0, 8), (160, 160), cache_dir=cache)
        print(f"reload from cache: {time.perf_counter() - start:.2f} s ({len(loaded.tracks):,} observations)")


if __name__ == "__main__":
    main()
