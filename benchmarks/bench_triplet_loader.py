"""Throughput of the TripletDataModule train loader on a synthetic plate.

Batch 64, patch Z=8, 256x256 patches read and centre-cropped to 160x160, with 0 and 2 (thread)
workers; compared with a plain tensorstore read of the same patches (the I/O ceiling).
Run: ``uv run python benchmarks/bench_triplet_loader.py``.
"""

import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from viscy_data.patch_reader import FovArray, open_array
from viscy_data.synthetic import write_synthetic_plate
from viscy_data.triplet import TripletDataModule

BATCH = 64
N_BATCHES = 6


def main() -> None:
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        plate = write_synthetic_plate(
            Path(tmp) / "plate.zarr",
            fovs_per_well=2,
            n_timepoints=8,
            z_size=8,
            yx_size=(512, 512),
            cells_per_fov=48,
            division_probability=0.0,
            chunks=(1, 1, 8, 256, 256),
        )
        print(f"synthetic plate written in {time.perf_counter() - t0:.1f} s")
        for workers in (0, 2):
            dm = TripletDataModule(
                plate.store_path,
                plate.tracks_path,
                source_channel=["Phase3D", "GFP"],
                z_range=(0, 8),
                initial_yx_patch_size=(256, 256),
                final_yx_patch_size=(160, 160),
                batch_size=BATCH,
                num_workers=workers,
                seed=0,
            )
            dm.setup("fit")
            loader = iter(dm.train_dataloader())
            next(loader)  # warm-up: opens stores
            t0 = time.perf_counter()
            n = 0
            for _ in range(N_BATCHES):
                batch = dm.on_after_batch_transfer(next(loader), 0)
                n += batch["anchor"].shape[0]
            rate = n / (time.perf_counter() - t0)
            print(f"TripletDataModule train loader, num_workers={workers}: {rate:.1f} samples/s")
            if workers == 0:
                base = rate
        # I/O ceiling: the same number of patch reads (anchor + positive + negative) with tensorstore
        ds = dm.train_dataset
        rows = ds.valid_anchors.iloc[:BATCH]
        t0 = time.perf_counter()
        for _ in range(N_BATCHES):
            for _ in range(3):
                ds._read_patches(rows)
        ours_io = BATCH * N_BATCHES / (time.perf_counter() - t0)
        handles = {}
        t0 = time.perf_counter()
        for _ in range(N_BATCHES):
            for _ in range(3):
                for fov, t, y, x in zip(rows["_fov"], rows["t"], rows["y"], rows["x"]):
                    if fov not in handles:
                        handles[fov] = open_array(FovArray.from_position(ds.positions[fov]).path)
                    y0, x0 = int(np.rint(y)) - 128, int(np.rint(x)) - 128
                    handles[fov][int(t), 0:2, 0:8, y0 : y0 + 256, x0 : x0 + 256].read().result()
        plain = BATCH * N_BATCHES / (time.perf_counter() - t0)
        print(f"plain tensorstore reads, one request per patch: {plain:.1f} samples/s (I/O ceiling)")
        print(f"our stacked reads alone: {ours_io:.1f} samples/s")
        print(f"loader (0 workers) as a fraction of the ceiling: {base / plain:.2f}")


if __name__ == "__main__":
    main()
