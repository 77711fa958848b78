"""MultiExperimentDataModule train loader + normalisation + the example config's augmentations, on CPU.

Two experiments (two conditions each, 4 FOVs, 8 frames, 2 channels, Z = 8, 512 x 512, smooth
compressible images with iohub's default compression and per-FOV normalisation metadata).
Sampling, normalisations and augmentations come from
``applications/dynaclr/examples/configs/multi_experiment_fit.yml``; the geometry is scaled to a CPU:
Z = 8, 192 x 192 reads centre-cropped to 160 x 160, batch 64 (anchor + positive), 2 loader threads.
Run: ``uv run python benchmarks/bench_multi_experiment_datamodule.py``. Target: >= 60 samples/s.
Like ``dynaclr fit --tune_cpu``, the script tunes the CPU runtime first
(:func:`viscy_utils.cpu_runtime.tune_cpu_runtime`:
huge pages, freed buffers kept for reuse, no OpenMP spinning); ``THP_MEM_ALLOC_ENABLE=0``,
``MALLOC_TRIM_THRESHOLD_=131072`` or ``GOMP_SPINCOUNT=300000`` measure without one of them.
"""

# before torch is imported, as `dynaclr fit --tune_cpu` / `viscy fit --tune_cpu` do
from viscy_utils.cpu_runtime import tune_cpu_runtime

tune_cpu_runtime()

import dataclasses
import importlib
import os
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import torch
import yaml
from _common import smooth_stack
from iohub.ngff import open_ome_zarr

from dynaclr.datamodule import MultiExperimentDataModule
from dynaclr.experiment import ExperimentConfig
from viscy_data.norm_meta import compute_statistics

CONFIG = Path(__file__).parents[1] / "applications/dynaclr/examples/configs/multi_experiment_fit.yml"
N_T, N_CELLS, SIZE = 8, 40, 512
WELLS = {"uninfected": ["A/1", "A/2"], "infected": ["B/1", "B/2"]}


def make(root: Path, name: str, seed: int) -> ExperimentConfig:
    store, tracks = root / f"{name}.zarr", root / f"{name}_tracks"
    rng = np.random.default_rng(seed)
    channels = ["Phase3D", "GFP"]
    with open_ome_zarr(store, layout="hcs", mode="w-", channel_names=channels) as plate:
        for wells in WELLS.values():
            for well in wells:
                row, col = well.split("/")
                pos = plate.create_position(row, col, "0")
                data = smooth_stack(rng, (N_T, 2, 8, SIZE, SIZE))
                pos.create_image("0", data, chunks=(1, 1, 8, SIZE, SIZE))
                stats = {}
                for c, ch in enumerate(channels):
                    level = compute_statistics(data[:, c])
                    stats[ch] = {"fov_statistics": level, "dataset_statistics": level}
                pos.zattrs["normalization"] = stats
                df = pd.DataFrame(
                    {"track_id": np.repeat(np.arange(N_CELLS), N_T), "t": np.tile(np.arange(N_T), N_CELLS)}
                )
                df["y"] = np.repeat(rng.uniform(0, SIZE, N_CELLS), N_T)
                df["x"] = np.repeat(rng.uniform(0, SIZE, N_CELLS), N_T)
                df["id"], df["parent_track_id"], df["parent_id"] = np.arange(len(df)), -1, -1
                (tracks / f"{row}/{col}/0").mkdir(parents=True)
                df.to_csv(tracks / f"{row}/{col}/0/tracks.csv", index=False)
    return ExperimentConfig(name, str(store), str(tracks), channels, channels, WELLS, interval_minutes=30.0)


def _instantiate(spec: dict):
    module, _, name = spec["class_path"].rpartition(".")
    return getattr(importlib.import_module(module), name)(**spec.get("init_args", {}))


def main(batches: int = 6, batch_size: int = 64) -> None:
    data_args = yaml.safe_load(CONFIG.read_text())["data"]["init_args"]
    sampling = {
        k: data_args[k]
        for k in (
            "experiment_aware",
            "condition_balanced",
            "leaky",
            "temporal_enrichment",
            "temporal_window_hours",
            "temporal_global_fraction",
            "channel_dropout_channels",
            "channel_dropout_prob",
            "tau_decay_rate",
        )
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        configs = [make(root, name, seed) for seed, name in enumerate(["exp_a", "exp_b"])]
        experiments = root / "experiments.yml"
        experiments.write_text(yaml.safe_dump({"experiments": [dataclasses.asdict(c) for c in configs]}))
        dm = MultiExperimentDataModule(
            str(experiments),
            z_range=(0, 8),
            yx_patch_size=(192, 192),
            final_yx_patch_size=(160, 160),
            tau_range=(0.5, 1.0),
            batch_size=batch_size,
            num_workers=2,
            normalizations=[_instantiate(s) for s in data_args["normalizations"]],
            augmentations=[_instantiate(s) for s in data_args["augmentations"]],
            **sampling,
        )
        dm.setup("fit")
        dm.trainer = SimpleNamespace(training=True, sanity_checking=False, global_rank=0, world_size=1, current_epoch=0)
        loader = iter(dm.train_dataloader())
        batch = dm.on_after_batch_transfer(next(loader), 0)  # warm-up: open stores, build transforms
        load = transform = 0.0
        for _ in range(batches):
            start = time.perf_counter()
            batch = next(loader)
            mid = time.perf_counter()
            batch = dm.on_after_batch_transfer(batch, 0)
            load, transform = load + mid - start, transform + time.perf_counter() - mid
        assert batch["anchor"].shape == (batch_size, 2, 8, 160, 160) and torch.isfinite(batch["anchor"]).all()
        total = batches * batch_size
        print(
            f"train loader + normalisation + augmentation: {total / (load + transform):.0f} samples/s "
            f"(anchor + positive; waiting for the loader {load:.2f} s, transforms {transform:.2f} s "
            f"over {batches} batches of {batch_size}; torch threads {torch.get_num_threads()}; "
            f"THP_MEM_ALLOC_ENABLE={os.environ.get('THP_MEM_ALLOC_ENABLE')} "
            f"GOMP_SPINCOUNT={os.environ.get('GOMP_SPINCOUNT')})"
        )
        # where the transform time goes: each transform alone on one (anchor) key set
        sample = {f"ch_{i}": torch.rand(batch_size, 1, 8, 192, 192) for i in range(2)}
        level = {k: torch.ones(batch_size) for k in ("mean", "std", "median", "iqr")}
        sample["norm_meta"] = {k: {"fov_statistics": level, "dataset_statistics": level} for k in ("ch_0", "ch_1")}
        for spec in data_args["normalizations"] + data_args["augmentations"]:
            t = _instantiate(spec)
            start = time.perf_counter()
            t(dict(sample))
            print(f"  {spec['class_path']}: {time.perf_counter() - start:.2f} s per {batch_size} samples")


if __name__ == "__main__":
    main()
