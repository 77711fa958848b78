"""Realistic multi-experiment plates for read benchmarks: original (iohub default) and rechunked layouts.

Each experiment is an HCS OME-Zarr plate written by iohub with its defaults (NGFF 0.5 / zarr v3, one
chunk per (t, c) plane stack, blosc zstd level 1 with bit-shuffle) and per-FOV tracks:

- 16 FOVs (2 conditions x 2 wells x 4 FOVs) x 20 timepoints (30 min apart) x Z 8, 2 channels;
- ``Phase3D``: float32 straight from a "reconstruction": smooth background, cells whose contrast changes
  through focus, and unquantised Gaussian camera-like noise (every mantissa bit random: it barely
  compresses, as real label-free data);
- ``GFP``: photon counts, Poisson noise around a background of 100 and cells up to 1000 photons: integer
  (uint16-range) values, stored in the same float32 array (an OME-Zarr image array has one dtype);
- cells move by a random walk; the tracks CSVs follow them (``<tracks>/<row>/<col>/<fov>/tracks.csv``);
- normalisation statistics (``fov_statistics`` and ``dataset_statistics``, as ``viscy preprocess`` writes)
  from a subsample of each FOV.

The ``rechunked`` layout is produced by :func:`viscy_data.rechunk.rechunk` with its defaults (or given
``chunks``). Tracks are shared by both layouts.

Disk: the 512 x 512 variant is generated in full (about 6 GB per layout). The 2048 x 2048 variant would
need ~100 GB per layout, so it generates ``distinct_frames`` different plane stacks per experiment (a
"pool" plate, rechunked for real) and builds the 16 FOV x 20 timepoint plates from hard links to the
pool's chunk (or shard) files. Reads decode exactly what they would on distinct data: every file is a
separately compressed, equally incompressible stack; only the page cache holds fewer distinct bytes
(the benchmarks read from a warm page cache anyway, to measure decoding rather than the disk).

Plates are cached under ``benchmarks/results/plates`` (git-ignored) and rebuilt when the spec changes.
Build them alone with ``uv run python benchmarks/realistic_plate.py --size 512``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
from iohub.ngff import open_ome_zarr
from scipy import ndimage

from dynaclr.experiment import ExperimentConfig
from viscy_data.norm_meta import compute_statistics
from viscy_data.rechunk import DEFAULT_CHUNKS, DEFAULT_COMPRESSOR, rechunk

RESULTS = Path(__file__).parent / "results"
CHANNELS = ["Phase3D", "GFP"]
CONDITIONS = {"uninfected": ["A/1", "A/2"], "infected": ["B/1", "B/2"]}
FOVS_PER_WELL = 4
CELL_SIGMA = 5.0  # px, cell radius ~ 2 sigma


@dataclasses.dataclass(frozen=True)
class PlateSpec:
    """What decides a generated experiment's pixels, tracks and layout."""

    size: int = 512
    n_t: int = 20
    n_z: int = 8
    fovs_per_well: int = FOVS_PER_WELL
    cells_per_fov: int | None = None  # None: one cell per ~6500 px^2 (40 at 512 x 512)
    distinct_frames: int | None = None  # None: every (FOV, t) plane stack distinct
    seed: int = 0

    @property
    def n_cells(self) -> int:
        return self.cells_per_fov or max(8, self.size * self.size // 6500)


def _wells() -> list[str]:
    return [w for wells in CONDITIONS.values() for w in wells]


def _fov_names(spec: PlateSpec) -> list[str]:
    return [f"{w}/{f}" for w in _wells() for f in range(spec.fovs_per_well)]


def _tracks(rng: np.random.Generator, spec: PlateSpec) -> pd.DataFrame:
    """Random-walk cells that stay inside the image."""
    n, size = spec.n_cells, spec.size
    yx = rng.uniform(20, size - 20, (n, 2))
    rows = []
    for t in range(spec.n_t):
        rows.append(np.column_stack([np.arange(n), np.full(n, t), yx]))
        yx = np.clip(yx + rng.normal(0, 3, yx.shape), 20, size - 20)
    arr = np.concatenate(rows)
    df = pd.DataFrame({"track_id": arr[:, 0].astype(int), "t": arr[:, 1].astype(int), "y": arr[:, 2], "x": arr[:, 3]})
    df["id"] = np.arange(len(df))
    df["parent_track_id"], df["parent_id"], df["z"] = -1, -1, spec.n_z // 2
    return df


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    coarse = rng.standard_normal((size // 32 + 2, size // 32 + 2)).astype(np.float32)
    return (0.02 * ndimage.zoom(coarse, 32, order=3)[:size, :size]).astype(np.float32)


def frame(rng: np.random.Generator, yx: np.ndarray, background: np.ndarray, n_z: int) -> np.ndarray:
    """One (C=2, Z, Y, X) float32 plane stack: phase with camera noise, Poisson fluorescence counts."""
    size = background.shape[0]
    delta = np.zeros((size, size), np.float32)
    iy, ix = np.clip(np.round(yx).astype(int), 0, size - 1).T
    np.add.at(delta, (iy, ix), rng.uniform(0.6, 1.0, len(iy)).astype(np.float32))
    cells = ndimage.gaussian_filter(delta, CELL_SIGMA) * np.float32(2 * np.pi * CELL_SIGMA**2)
    z = (np.arange(n_z, dtype=np.float32) - (n_z - 1) / 2) / (n_z / 2)
    out = np.empty((2, n_z, size, size), np.float32)
    out[0] = rng.standard_normal((n_z, size, size), dtype=np.float32)
    out[0] *= np.float32(0.03)  # camera-like noise, not quantised
    out[0] += background + np.float32(0.25) * cells * (1 - z**2)[:, None, None]
    expected = 100 + 900 * cells * np.exp(-4 * z**2)[:, None, None]
    out[1] = rng.poisson(expected).astype(np.float32)
    return out


def _stats(samples: list[np.ndarray]) -> list[dict[str, float]]:
    """Per-channel statistics of subsampled (C, ...) stacks."""
    stacked = np.concatenate([s.reshape(s.shape[0], -1) for s in samples], axis=1)
    return [compute_statistics(stacked[c]) for c in range(stacked.shape[0])]


def _subsample(stack: np.ndarray) -> np.ndarray:
    return stack[:, ::2, ::8, ::8]


def _write_tracks(tracks_root: Path, fov: str, df: pd.DataFrame) -> None:
    folder = tracks_root / fov
    folder.mkdir(parents=True, exist_ok=True)
    df.to_csv(folder / "tracks.csv", index=False)


def _write_norm(plate_path: Path, per_fov: dict[str, list[np.ndarray]]) -> None:
    dataset = _stats([s for samples in per_fov.values() for s in samples])
    with open_ome_zarr(plate_path, layout="hcs", mode="r+") as plate:
        for fov, samples in per_fov.items():
            fov_stats = _stats(samples)
            plate[fov].zattrs["normalization"] = {
                ch: {"fov_statistics": fov_stats[c], "dataset_statistics": dataset[c]} for c, ch in enumerate(CHANNELS)
            }
        plate.zattrs["normalization"] = {ch: {"dataset_statistics": dataset[c]} for c, ch in enumerate(CHANNELS)}


def _write_full(path: Path, tracks_root: Path, spec: PlateSpec, rng: np.random.Generator) -> None:
    """Every (FOV, t) plane stack distinct, cells drawn where the tracks are."""
    per_fov: dict[str, list[np.ndarray]] = {}
    with open_ome_zarr(path, layout="hcs", mode="w-", channel_names=CHANNELS) as plate:
        for fov in _fov_names(spec):
            row, col, f = fov.split("/")
            tracks = _tracks(rng, spec)
            _write_tracks(tracks_root, fov, tracks)
            background = _background(rng, spec.size)
            shape = (spec.n_t, len(CHANNELS), spec.n_z, spec.size, spec.size)
            array = plate.create_position(row, col, f).create_zeros("0", shape, np.float32)
            samples = []
            for t, group in tracks.groupby("t"):
                stack = frame(rng, group[["y", "x"]].to_numpy(), background, spec.n_z)
                array[t] = stack
                samples.append(_subsample(stack))
            per_fov[fov] = samples
    _write_norm(path, per_fov)


def _write_pool(path: Path, spec: PlateSpec, rng: np.random.Generator) -> np.ndarray:
    """One FOV holding the ``distinct_frames`` plane stacks; returns subsamples per frame."""
    background = _background(rng, spec.size)
    shape = (spec.distinct_frames, len(CHANNELS), spec.n_z, spec.size, spec.size)
    samples = []
    with open_ome_zarr(path, layout="hcs", mode="w-", channel_names=CHANNELS) as plate:
        array = plate.create_position("A", "1", "0").create_zeros("0", shape, np.float32)
        for k in range(spec.distinct_frames):
            cells = rng.uniform(20, spec.size - 20, (spec.n_cells, 2))
            stack = frame(rng, cells, background, spec.n_z)
            array[k] = stack
            samples.append(_subsample(stack))
    return np.stack(samples)


def _link_frames(pool_array: Path, dest_array: Path, frames: list[int]) -> None:
    """Array ``dest_array`` = frames of ``pool_array`` (zarr v3, one chunk or shard file per (t, c))."""
    meta = json.loads((pool_array / "zarr.json").read_text())
    grid = meta["chunk_grid"]["configuration"]["chunk_shape"]
    if grid[0] != 1 or grid[1] != 1 or meta["chunk_key_encoding"]["name"] != "default":
        raise ValueError(f"{pool_array}: linking needs one file per (t, c) plane stack, got {grid}")
    meta["shape"][0] = len(frames)
    dest_array.mkdir(parents=True, exist_ok=True)
    (dest_array / "zarr.json").write_text(json.dumps(meta))
    for t, k in enumerate(frames):
        source = pool_array / "c" / str(k)
        for file in source.rglob("*"):
            if file.is_file():
                target = dest_array / "c" / str(t) / file.relative_to(source)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.link(file, target)


def _link_plate(pool: Path, template: Path, dest: Path, frames: dict[str, list[int]]) -> None:
    """A plate of all FOVs whose arrays link to the pool's frames; group metadata from ``template``."""
    for meta in template.rglob("zarr.json"):
        rel = meta.parent.relative_to(template)
        if json.loads(meta.read_text())["node_type"] == "group":
            (dest / rel).mkdir(parents=True, exist_ok=True)
            shutil.copy(meta, dest / rel / "zarr.json")
    for fov, ks in frames.items():
        _link_frames(pool / "A/1/0/0", dest / fov / "0", ks)


def _build_pooled(root: Path, name: str, spec: PlateSpec, rng: np.random.Generator, chunks) -> dict[str, Path]:
    pool, pool_r = root / f"{name}_pool.zarr", root / f"{name}_pool_rechunked.zarr"
    tracks_root = root / f"{name}_tracks"
    samples = _write_pool(pool, spec, rng)
    start = time.perf_counter()
    rechunk(pool, pool_r, chunks=chunks, progress=False)
    print(f"  rechunked the {name} pool ({spec.distinct_frames} frames) in {time.perf_counter() - start:.1f} s")
    frames = {fov: rng.integers(0, spec.distinct_frames, spec.n_t).tolist() for fov in _fov_names(spec)}
    # metadata template: an iohub plate with every FOV and no pixels (NGFF 0.5 like the pool)
    template = root / f"{name}_template.zarr"
    shape = (spec.n_t, len(CHANNELS), spec.n_z, spec.size, spec.size)
    with open_ome_zarr(template, layout="hcs", mode="w-", channel_names=CHANNELS) as plate:
        for fov in frames:
            plate.create_position(*fov.split("/")).create_zeros("0", shape, np.float32)
    per_fov = {fov: [samples[k] for k in ks] for fov, ks in frames.items()}
    _write_norm(template, per_fov)
    out = {"original": root / f"{name}.zarr", "rechunked": root / f"{name}_rechunked.zarr"}
    _link_plate(pool, template, out["original"], frames)
    _link_plate(pool_r, template, out["rechunked"], frames)
    shutil.rmtree(template)
    for fov in frames:
        _write_tracks(tracks_root, fov, _tracks(rng, spec))
    return out


def plate_dir(spec: PlateSpec, base: Path | None = None) -> Path:
    """Folder of the plates generated for ``spec`` below ``base`` (default ``benchmarks/results/plates``)."""
    key = f"s{spec.size}_t{spec.n_t}_z{spec.n_z}_f{spec.fovs_per_well}_d{spec.distinct_frames}_seed{spec.seed}"
    return (base or RESULTS / "plates") / key


def build_experiments(
    spec: PlateSpec, chunks=None, root: Path | None = None, rechunked: bool = True
) -> dict[str, list[ExperimentConfig]]:
    """Generate (or reuse) two experiments in both layouts (or only the original one).

    Parameters
    ----------
    spec : PlateSpec
        Size, counts and seed.
    chunks : sequence of 5 int, optional
        Inner chunks of the rechunked layout (default: ``rechunk``'s).
    root : pathlib.Path, optional
        Folder for the plates; default ``benchmarks/results/plates/<spec>``.
    rechunked : bool
        Also build the rechunked layout (pooled plates always have both).

    Returns
    -------
    dict
        ``{"original": [ExperimentConfig, ...], "rechunked": [...]}``.
    """
    chunk_key = "default" if chunks is None else "x".join(map(str, chunks))
    root = root or plate_dir(spec)
    marker = root / (f"complete_{chunk_key}.json" if rechunked else "complete_original.json")
    record = {
        "spec": dataclasses.asdict(spec),
        "chunks": list(chunks or DEFAULT_CHUNKS),
        "compressor": DEFAULT_COMPRESSOR,
    }
    names = ["exp_a", "exp_b"]
    layouts = {"original": "{}.zarr", "rechunked": "{}_rechunked.zarr" if chunks is None else "{}_%s.zarr" % chunk_key}
    if not rechunked and spec.distinct_frames is None:
        del layouts["rechunked"]
    if not (marker.exists() and json.loads(marker.read_text()) == record):
        root.mkdir(parents=True, exist_ok=True)
        for seed, name in enumerate(names):
            rng = np.random.default_rng([spec.seed, seed])
            original = root / f"{name}.zarr"
            if spec.distinct_frames is not None:
                if chunks is not None:
                    raise ValueError("pooled plates are built with the default chunks only")
                for stale in root.glob(f"{name}*"):
                    shutil.rmtree(stale)
                print(f"  generating {name} (pooled, {spec.size} x {spec.size})")
                _build_pooled(root, name, spec, rng, chunks)
                continue
            if not original.exists():
                print(f"  generating {name} ({spec.size} x {spec.size}, {len(_fov_names(spec))} FOVs x {spec.n_t} t)")
                partial = root / f"{name}.partial.zarr"  # renamed when complete: a killed run leaves no plate
                shutil.rmtree(partial, ignore_errors=True)
                shutil.rmtree(root / f"{name}_tracks", ignore_errors=True)
                _write_full(partial, root / f"{name}_tracks", spec, rng)
                os.replace(partial, original)
            if "rechunked" not in layouts:
                continue
            target = root / layouts["rechunked"].format(name)
            shutil.rmtree(target, ignore_errors=True)  # made with other defaults, or unfinished
            shutil.rmtree(target.parent / f".{target.name}.rechunk", ignore_errors=True)
            start = time.perf_counter()
            rechunk(original, target, chunks=chunks, progress=False)
            print(f"  rechunked {name} in {time.perf_counter() - start:.1f} s")
        marker.write_text(json.dumps(record))
    out = {}
    for layout, pattern in layouts.items():
        out[layout] = [
            ExperimentConfig(
                name,
                str(root / pattern.format(name)),
                str(root / f"{name}_tracks"),
                CHANNELS,
                CHANNELS,
                {k: list(v) for k, v in CONDITIONS.items()},
                interval_minutes=30.0,
            )
            for name in names
        ]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--distinct-frames", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    spec = PlateSpec(size=args.size, distinct_frames=args.distinct_frames, seed=args.seed)
    for layout, configs in build_experiments(spec).items():
        print(layout, [c.data_path for c in configs])


if __name__ == "__main__":
    main()
