"""MultiExperimentDataModule train loader + normalisation + the example config's augmentations, on CPU.

Two experiments (two conditions each, 4 FOVs, 8 frames, 2 channels, Z = 8, 512 x 512, smooth
compressible images with iohub's default compression and per-FOV normalisation metadata).
Sampling, normalisations and augmentations come from
``applications/dynaclr/examples/configs/multi_experiment_fit.yml``; the geometry is scaled to a CPU:
Z = 8, 192 x 192 reads centre-cropped to 160 x 160, batch 64 (anchor + positive), one loader thread (the
DataModule's default ``num_workers=1``: on 2 cores the main thread transforms while one thread reads;
``--num-workers 2`` puts three busy threads on two cores).
Run: ``uv run python benchmarks/bench_multi_experiment_datamodule.py``. Target: >= 60 samples/s.
``--realistic 512`` (or 2048) reads the realistic plates of ``realistic_plate.py`` instead (2 x 16 FOVs x 20
timepoints, unquantised float32 label-free channel, Poisson counts), rechunked by ``viscy rechunk`` with its
defaults (``--layout original`` for iohub's default layout); target >= 60 samples/s on the rechunked plate.
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
from _common import load as machine_load
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


def main(
    batches: int = 6,
    batch_size: int = 64,
    realistic: int | None = None,
    layout: str = "rechunked",
    per_transform: bool = True,
    num_workers: int = 1,
    seed: int = 0,
    plates: Path | None = None,
) -> dict:
    """Measure and print the train loader's samples/s; return the numbers (``ai_ready.py`` tabulates them)."""
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
        if realistic is None:
            configs = [make(root, name, seed) for seed, name in enumerate(["exp_a", "exp_b"])]
        else:
            from realistic_plate import PlateSpec, build_experiments, plate_dir

            spec = PlateSpec(size=realistic, distinct_frames=8 if realistic == 2048 else None)
            configs = build_experiments(spec, root=plate_dir(spec, plates))[layout]
        experiments = root / "experiments.yml"
        experiments.write_text(yaml.safe_dump({"experiments": [dataclasses.asdict(c) for c in configs]}))
        dm = MultiExperimentDataModule(
            str(experiments),
            z_range=(0, 8),
            yx_patch_size=(192, 192),
            final_yx_patch_size=(160, 160),
            tau_range=(0.5, 1.0),
            batch_size=batch_size,
            num_workers=num_workers,
            seed=seed,
            normalizations=[_instantiate(s) for s in data_args["normalizations"]],
            augmentations=[_instantiate(s) for s in data_args["augmentations"]],
            **sampling,
        )
        dm.setup("fit")
        dm.trainer = SimpleNamespace(training=True, sanity_checking=False, global_rank=0, world_size=1, current_epoch=0)
        loader = iter(dm.train_dataloader())
        batch = dm.on_after_batch_transfer(next(loader), 0)  # warm-up: open stores, build transforms
        load = transform = 0.0
        cpu_start = time.process_time()  # loader threads included
        for _ in range(batches):
            start = time.perf_counter()
            batch = next(loader)
            mid = time.perf_counter()
            batch = dm.on_after_batch_transfer(batch, 0)
            load, transform = load + mid - start, transform + time.perf_counter() - mid
        assert batch["anchor"].shape == (batch_size, 2, 8, 160, 160) and torch.isfinite(batch["anchor"]).all()
        total = batches * batch_size
        cpu_ms = 1000 * (time.process_time() - cpu_start) / total
        cores = len(os.sched_getaffinity(0))
        plates = "own small plates" if realistic is None else f"realistic {realistic} x {realistic} plates, {layout}"
        print(
            f"[{plates}] train loader + normalisation + augmentation: {total / (load + transform):.0f} samples/s "
            f"(anchor + positive; waiting for the loader {load:.2f} s, transforms {transform:.2f} s "
            f"over {batches} batches of {batch_size}; {num_workers} loader thread(s), seed {seed}; "
            f"{cpu_ms:.1f} CPU-ms/sample = {1000 * cores / cpu_ms:.0f} "
            f"samples/s on {cores} idle cores; torch threads {torch.get_num_threads()}; "
            f"THP_MEM_ALLOC_ENABLE={os.environ.get('THP_MEM_ALLOC_ENABLE')} "
            f"GOMP_SPINCOUNT={os.environ.get('GOMP_SPINCOUNT')}); {machine_load()}"
        )
        result = {
            "rate": total / (load + transform),
            "loader_wait_s": load,
            "transforms_s": transform,
            "cpu_ms_per_sample": cpu_ms,
            "idle_core_rate": 1000 * cores / cpu_ms,
            "batches": batches,
            "batch_size": batch_size,
            "num_workers": num_workers,
            "seed": seed,
        }
        if not per_transform:
            return result
        # where the transform time goes: each transform alone on one (anchor) key set
        sample = {f"ch_{i}": torch.rand(batch_size, 1, 8, 192, 192) for i in range(2)}
        level = {k: torch.ones(batch_size) for k in ("mean", "std", "median", "iqr")}
        sample["norm_meta"] = {k: {"fov_statistics": level, "dataset_statistics": level} for k in ("ch_0", "ch_1")}
        for spec in data_args["normalizations"] + data_args["augmentations"]:
            t = _instantiate(spec)
            start = time.perf_counter()
            t(dict(sample))
            print(f"  {spec['class_path']}: {time.perf_counter() - start:.2f} s per {batch_size} samples")
        return result


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=6)
    parser.add_argument("--realistic", type=int, choices=(512, 2048), default=None)
    parser.add_argument("--layout", choices=("rechunked", "original"), default="rechunked")
    parser.add_argument("--num-workers", type=int, default=1, help="loader threads (the DataModule's default: 1)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed of the DataModule")
    args = parser.parse_args()
    main(
        batches=args.batches,
        realistic=args.realistic,
        layout=args.layout,
        num_workers=args.num_workers,
        seed=args.seed,
    )
