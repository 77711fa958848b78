"""MultiExperimentTripletDataset.__getitems__ throughput vs. direct tensorstore reads of the same patches.

Batch 64 (anchor + positive), 2 channels, Z = 8, 160 x 160 patches from 512 x 512 float32 chunks of
(1, 1, 8, 512, 512), stored with iohub's default (blosc/zstd) compression. Images are smooth blobs plus
mild noise quantised like camera counts, so they compress like real microscopy (uniform random
float32 does not compress and makes decoding dominate). Run:
``uv run python benchmarks/bench_multi_experiment_dataset.py``.
Targets: >= 250 samples/s and >= 70 % of the direct-read ceiling. Like ``dynaclr fit``, the script tunes
the CPU runtime first (:func:`viscy_utils.cpu_runtime.tune_cpu_runtime`).
"""

from viscy_utils.cpu_runtime import tune_cpu_runtime

tune_cpu_runtime()  # before torch is imported, as `dynaclr fit --tune_cpu` does

import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _common import smooth_stack
from iohub.ngff import open_ome_zarr

from dynaclr.dataset import MultiExperimentTripletDataset
from dynaclr.experiment import ExperimentConfig, ExperimentRegistry
from dynaclr.index import MultiExperimentIndex

N_FOV, N_T, N_CELLS = 4, 6, 60


def make(root: Path) -> ExperimentConfig:
    store, tracks = root / "bench.zarr", root / "tracks"
    rng = np.random.default_rng(0)
    with open_ome_zarr(store, layout="hcs", mode="w-", channel_names=["Phase3D", "GFP"]) as plate:
        for f in range(N_FOV):
            pos = plate.create_position("A", "1", str(f))
            data = smooth_stack(rng, (N_T, 2, 8, 512, 512))
            pos.create_image("0", data, chunks=(1, 1, 8, 512, 512))
            df = pd.DataFrame({"track_id": np.repeat(np.arange(N_CELLS), N_T), "t": np.tile(np.arange(N_T), N_CELLS)})
            df["y"] = np.repeat(rng.uniform(0, 512, N_CELLS), N_T)
            df["x"] = np.repeat(rng.uniform(0, 512, N_CELLS), N_T)
            df["id"], df["parent_track_id"], df["parent_id"] = np.arange(len(df)), -1, -1
            (tracks / f"A/1/{f}").mkdir(parents=True)
            df.to_csv(tracks / f"A/1/{f}/tracks.csv", index=False)
    return ExperimentConfig("bench", str(store), str(tracks), ["Phase3D", "GFP"], ["Phase3D", "GFP"], {"c": ["A/1"]})


def main(batch: int = 64, repeats: int = 10) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        registry = ExperimentRegistry([make(Path(tmp))])
        index = MultiExperimentIndex(registry, slice(0, 8), (160, 160), tau_range_hours=(0.5, 1.0))
        ds = MultiExperimentTripletDataset(index, tau_range_hours=(0.5, 1.0), cache_pool_bytes=0)
        rng = np.random.default_rng(0)
        batches = [rng.choice(len(ds), batch, replace=False).tolist() for _ in range(repeats)]
        ds.__getitems__(batches[0])  # open stores
        start = time.perf_counter()
        for b in batches:
            ds.__getitems__(b)
        ours = repeats * batch / (time.perf_counter() - start)
        # ceiling: the same anchor/positive patches read directly with tensorstore, all issued then awaited
        reads = []
        for b in batches:
            rows = index.anchor_track_rows[b]
            pos = index.sample_positives(rows, rng)
            reads.append(np.concatenate([rows, pos]))
        stores = [ds.reader.array(f) for f in range(N_FOV)]  # same handles and context as the dataset
        fov, t = index.fov_codes, index.tracks["t"].to_numpy()
        y0 = np.clip(np.floor(index.tracks["y_clamp"].to_numpy()).astype(int) - 80, 0, 352)
        x0 = np.clip(np.floor(index.tracks["x_clamp"].to_numpy()).astype(int) - 80, 0, 352)
        start = time.perf_counter()
        for rows in reads:
            futures = [stores[fov[r]][t[r], :, 0:8, y0[r] : y0[r] + 160, x0[r] : x0[r] + 160].read() for r in rows]
            np.stack([f.result() for f in futures])
        ceiling = repeats * batch / (time.perf_counter() - start)
        # decode bound: every (FOV, frame) chunk pair a batch touches, each read whole exactly once
        start = time.perf_counter()
        for rows in reads:
            futures = [stores[f][ti, :, 0:8].read() for f, ti in set(zip(fov[rows].tolist(), t[rows].tolist()))]
            [f.result() for f in futures]
        decode = repeats * batch / (time.perf_counter() - start)
        print(
            f"__getitems__: {ours:.0f} samples/s (anchor + positive); direct tensorstore: {ceiling:.0f} samples/s; "
            f"ratio {ours / ceiling:.0%}; decoding each touched chunk once: {decode:.0f} samples/s"
        )


if __name__ == "__main__":
    main()
