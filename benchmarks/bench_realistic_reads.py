"""Patch-read throughput on realistic plates, original (iohub default) vs. rechunked layout.

Two experiments x 16 FOVs x 20 timepoints, Z 8, float32 label-free channel with unquantised camera noise and
Poisson fluorescence counts (``realistic_plate.py``); batches of 64 random anchors + their positives, 2
channels, Z 8, 160 x 160, read by ``MultiExperimentTripletDataset.__getitems__`` with the chunk cache off
(as the example config). For each layout it prints:

- samples/s (anchor + positive) of ``__getitems__``, mean +- sd over seeds (each seed a different stream
  of random batches);
- amplification: bytes decoded per byte delivered, measured by tensorstore's chunk-read counter (and the
  same number computed from the patch geometry, as a cross-check);
- decode bandwidth of the layout's codec alone: its compressed chunks (inner chunks of shards) decompressed
  from memory by blosc, one thread per core, bytes/s (wall and per CPU-second);
- the physical floor: a sample needs 2 patches x 2 ch x 8 x 160 x 160 float32 = 1.64 MB; at the measured
  decode bandwidth that allows ``bandwidth / 1.64 MB`` samples/s; with the layout's amplification,
  ``bandwidth / (amplification x 1.64 MB)``. What ``__getitems__`` achieves below that is reader overhead.
- CPU milliseconds per sample, and what they give on idle cores: the development machine is shared (load
  10-17 on 2 cores), so wall-clock rates there are a fraction of what the same code does on 2 free cores.

Plates are read from a warm page cache (every file read once before timing): this measures decoding,
not the disk. The machine load (``uptime``) is printed with every number.

Run: ``uv run python benchmarks/bench_realistic_reads.py --size 512`` (or ``--size 2048``; see
``realistic_plate.py`` for how the 2048 x 2048 plates fit on disk). Targets (2 cores): after rechunking with
the defaults >= 250 samples/s at 512 x 512, >= 200 at 2048 x 2048, amplification <= 3x.
"""

from viscy_utils.cpu_runtime import tune_cpu_runtime

tune_cpu_runtime()  # before torch is imported, as the command line does

import argparse
import json
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import tensorstore as ts
from _common import load, warm_page_cache
from realistic_plate import PlateSpec, build_experiments

from dynaclr.dataset import MultiExperimentTripletDataset
from dynaclr.experiment import ExperimentRegistry
from dynaclr.index import MultiExperimentIndex

PATCH, Z, TAU = (160, 160), slice(0, 8), (0.5, 1.0)


def chunk_cache_reads() -> int:
    for metric in ts.experimental_collect_matching_metrics("/tensorstore/cache/chunk_cache/reads"):
        return int(metric["values"][0]["value"])
    return 0


def decoded_chunk_shape(array: Path) -> list[int]:
    """Shape of the unit a reader decodes: inner chunks of a sharded array, chunks otherwise."""
    meta = json.loads((array / "zarr.json").read_text())
    for codec in meta["codecs"]:
        if codec["name"] == "sharding_indexed":
            return codec["configuration"]["chunk_shape"]
    return meta["chunk_grid"]["configuration"]["chunk_shape"]


def fov_arrays(index: MultiExperimentIndex) -> list[Path]:
    """Image array of every FOV of the index, in FOV-code order."""
    paths = {e.name: Path(e.data_path) for e in index.registry.experiments}
    return [paths[experiment] / fov / "0" for experiment, fov in index.fov_keys]


def expected_chunks(index: MultiExperimentIndex, rows: np.ndarray, shape: list[int], chunk: list[int]) -> int:
    """Chunks the patch reads of ``rows`` overlap (both channels), from the geometry (as the dataset places them)."""
    height, width = shape[-2:]
    tracks = index.tracks.iloc[rows]
    y0 = np.clip(np.floor(tracks["y_clamp"].to_numpy()).astype(int) - PATCH[0] // 2, 0, height - PATCH[0])
    x0 = np.clip(np.floor(tracks["x_clamp"].to_numpy()).astype(int) - PATCH[1] // 2, 0, width - PATCH[1])
    cy, cx = chunk[-2], chunk[-1]
    ny = (y0 + PATCH[0] - 1) // cy - y0 // cy + 1
    nx = (x0 + PATCH[1] - 1) // cx - x0 // cx + 1
    nz = math.ceil((Z.stop - Z.start) / chunk[2]) if chunk[2] < Z.stop - Z.start else 1
    return int((ny * nx).sum()) * nz * 2


def compressed_chunks(array: Path, rng: np.random.Generator, n: int) -> list[bytes]:
    """Compressed bytes of ``n`` random decode units of a zarr v3 array: chunk files, or inner chunks of shards."""
    meta = json.loads((array / "zarr.json").read_text())
    files = [p for p in (array / "c").rglob("*") if p.is_file()]
    picks = [files[i] for i in rng.choice(len(files), min(n, len(files)), replace=False)]
    sharding = next((c for c in meta["codecs"] if c["name"] == "sharding_indexed"), None)
    if sharding is None:
        return [p.read_bytes() for p in picks]
    inner = sharding["configuration"]["chunk_shape"]
    grid = meta["chunk_grid"]["configuration"]["chunk_shape"]
    per_shard = math.prod(math.ceil(g / c) for g, c in zip(grid, inner))
    out = []
    for path in picks:  # index at the end: (offset, nbytes) uint64 pairs, then a crc32c
        data = path.read_bytes()
        index = np.frombuffer(data[-(16 * per_shard + 4) : -4], dtype="<u8").reshape(-1, 2)
        for offset, nbytes in index[rng.choice(per_shard, min(8, per_shard), replace=False)]:
            if offset != 2**64 - 1:
                out.append(data[offset : offset + nbytes])
    return out


def chunk_reuse(requests: list[tuple[np.ndarray, ...]], shape: list[int], chunk: list[int], z_size: int) -> dict:
    """How often the patch reads of one batch share a decoded chunk (what a hard benchmark must avoid).

    ``requests`` are the ``(fov, t, y0, x0)`` arrays of one ``PatchReader.read`` call (anchors and
    positives together). Returns the fraction of chunk touches that hit a chunk another read of the same
    batch also touches (``shared``: decoded once for both by the stacked read, so cheaper than on users'
    plates) and the fraction of reads whose (FOV, t) plane stack another read of the batch also uses.
    """
    shared, same_stack, touches = [], [], 0
    cy, cx = chunk[-2], chunk[-1]
    nz = math.ceil(z_size / chunk[2])
    for fov, t, y0, x0 in requests:
        keys = []
        for f, tk, yk, xk in zip(fov.tolist(), t.tolist(), y0.tolist(), x0.tolist()):
            for gy in range(yk // cy, (yk + PATCH[0] - 1) // cy + 1):
                for gx in range(xk // cx, (xk + PATCH[1] - 1) // cx + 1):
                    keys.extend((f, tk, gz, gy, gx) for gz in range(nz))
        touches += len(keys)
        _, counts = np.unique(np.asarray(keys), axis=0, return_counts=True)
        shared.append(int(counts[counts > 1].sum()) / len(keys))
        _, stack_counts = np.unique(np.stack([fov, t], axis=1), axis=0, return_counts=True)
        same_stack.append(int(stack_counts[stack_counts > 1].sum()) / fov.size)
    return {"shared_chunk_touches": float(np.mean(shared)), "reads_sharing_a_plane_stack": float(np.mean(same_stack))}


def decode_bandwidth(array: Path, rng: np.random.Generator, n: int = 24, nbytes: float = 2e9) -> tuple[float, float]:
    """Decoded bytes per wall second and per CPU second of the layout's codec alone (blosc, one thread per core).

    Chunks are decompressed from memory into reused buffers: no file system, no reader, no allocation,
    the least work any reader must do per decoded byte.
    """
    from numcodecs import blosc

    blosc.set_nthreads(1)
    cores = len(os.sched_getaffinity(0))
    unit = math.prod(decoded_chunk_shape(array)) * 4  # float32 bytes of one decode unit
    # whole plane stacks of 2048 x 2048 are 128 MiB each: a few of them are enough (and fit in memory)
    n = max(cores, min(n, int(nbytes // unit)))
    chunks = compressed_chunks(array, rng, n)
    sizes = [len(blosc.decompress(c)) for c in chunks]
    buffers = [np.empty(max(sizes), np.uint8) for _ in range(cores)]

    def work(k: int) -> int:
        for c, size in zip(chunks[k::cores], sizes[k::cores]):
            blosc.decompress(c, buffers[k][:size])
        return sum(sizes[k::cores])

    repeats = max(1, int(nbytes // sum(sizes)))
    start, cpu_start = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(cores) as pool:
        nbytes = sum(sum(pool.map(work, range(cores))) for _ in range(repeats))
    return nbytes / (time.perf_counter() - start), nbytes / (time.process_time() - cpu_start)


def measure(
    configs, seeds: list[int], batches: int, batch_size: int, cache_pool_bytes: int = 0, decode_bytes: float = 2e9
) -> dict:
    """``__getitems__`` throughput, amplification, chunk reuse and decode floor of one layout's plates."""
    registry = ExperimentRegistry(configs)
    index = MultiExperimentIndex(registry, Z, PATCH, tau_range_hours=TAU)
    ds = MultiExperimentTripletDataset(index, tau_range_hours=TAU, cache_pool_bytes=cache_pool_bytes)
    requests: list[tuple[np.ndarray, ...]] = []
    read = ds.reader.read

    def recording_read(fov, t, y0, x0, *args, **kwargs):
        requests.append(tuple(np.asarray(a, dtype=np.int64).copy() for a in (fov, t, y0, x0)))
        return read(fov, t, y0, x0, *args, **kwargs)

    ds.reader.read = recording_read  # what the batches really read: anchors and their drawn positives
    arrays = fov_arrays(index)
    chunk = decoded_chunk_shape(arrays[0])
    shape = json.loads((arrays[0] / "zarr.json").read_text())["shape"]
    chunk_bytes = math.prod(chunk) * 4
    delivered_per_patch = 2 * (Z.stop - Z.start) * PATCH[0] * PATCH[1] * 4
    rates, amps, amps_geometry, cpu = [], [], [], []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        ds.seed = seed
        batch_list = [rng.choice(len(ds), batch_size, replace=False).tolist() for _ in range(batches + 1)]
        ds.__getitems__(batch_list[0])  # opens the stores this seed touches first
        reads_before = chunk_cache_reads()
        start, cpu_start = time.perf_counter(), time.process_time()
        for b in batch_list[1:]:
            ds.__getitems__(b)
        elapsed = time.perf_counter() - start
        cpu.append((time.process_time() - cpu_start) / (batches * batch_size))
        decoded = (chunk_cache_reads() - reads_before) * chunk_bytes
        rates.append(batches * batch_size / elapsed)
        amps.append(decoded / (batches * batch_size * 2 * delivered_per_patch))
        # geometry cross-check: the anchors' own reads (positives are drawn at random, not reproducible here)
        rows = index.anchor_track_rows[np.asarray(batch_list[1])]
        amps_geometry.append(
            expected_chunks(index, rows, shape, chunk) * chunk_bytes / (len(rows) * delivered_per_patch)
        )
    bandwidth = [decode_bandwidth(arrays[i], np.random.default_rng(100 + i), nbytes=decode_bytes) for i in range(3)]
    return {
        "reuse": chunk_reuse(requests, shape, chunk, Z.stop - Z.start),
        "chunk": chunk,
        "rate": (float(np.mean(rates)), float(np.std(rates))),
        "amplification": float(np.mean(amps)),
        "amplification_geometry": float(np.mean(amps_geometry)),
        "bandwidth": float(np.median([b for b, _ in bandwidth])),
        "cpu_bandwidth": float(np.median([b for _, b in bandwidth])),
        "cpu_per_sample": float(np.mean(cpu)),
        "sample_bytes": 2 * delivered_per_patch,
    }


def report(layout: str, size: int, r: dict, seeds: int, batches: int, before: str) -> str:
    """One line per layout; CPU-second figures are what 2 idle cores would give (reads scale with cores)."""
    floor = r["bandwidth"] / r["sample_bytes"]
    cores = len(os.sched_getaffinity(0))
    cpu_floor = cores * r["cpu_bandwidth"] / r["sample_bytes"]
    return (
        f"[{layout}] {size}x{size} decoded chunk {r['chunk']}: __getitems__ {r['rate'][0]:.1f} +- {r['rate'][1]:.1f} "
        f"samples/s ({seeds} seeds x {batches} batches), {1000 * r['cpu_per_sample']:.2f} CPU-ms/sample "
        f"(= {cores / r['cpu_per_sample']:.0f} samples/s on {cores} idle cores); amplification "
        f"{r['amplification']:.2f}x (geometry, anchors: {r['amplification_geometry']:.2f}x); decode "
        f"{r['bandwidth'] / 1e9:.2f} GB/s wall, {r['cpu_bandwidth'] / 1e9:.2f} GB/s per CPU-second -> floor "
        f"{floor:.0f} samples/s at 1x and {floor / r['amplification']:.0f} at this amplification (idle cores: "
        f"{cpu_floor:.0f} and {cpu_floor / r['amplification']:.0f}); chunk touches shared within a batch "
        f"{100 * r['reuse']['shared_chunk_touches']:.1f}%, reads sharing a plane stack "
        f"{100 * r['reuse']['reads_sharing_a_plane_stack']:.1f}%; {before} -> {load()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, choices=(512, 2048), default=512)
    parser.add_argument("--layouts", nargs="+", default=["original", "rechunked"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--batches", type=int, default=None, help="timed batches per seed (default 8; fewer original)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--original-batch-size", type=int, default=8, help="batch of the original 2048 layout (memory); 0: --batch-size"
    )
    parser.add_argument("--distinct-frames", type=int, default=None, help="pool size (default: all at 512, 8 at 2048)")
    parser.add_argument("--chunks", type=int, nargs=5, default=None, help="inner chunks of the rechunked layout")
    parser.add_argument("--no-warm", action="store_true", help="do not pre-read the plates into the page cache")
    parser.add_argument("--cache-pool-bytes", type=int, default=0, help="dataset's tensorstore cache (default off)")
    args = parser.parse_args()
    distinct = args.distinct_frames if args.distinct_frames is not None else (8 if args.size == 2048 else None)
    spec = PlateSpec(size=args.size, distinct_frames=distinct)
    print(f"building / reusing plates ({args.size} x {args.size}, distinct frames: {distinct or 'all'}); {load()}")
    layouts = build_experiments(spec, chunks=args.chunks)
    print(f"torch threads n/a; cores {len(os.sched_getaffinity(0))}; batch {args.batch_size} anchor + positive")
    for layout in args.layouts:
        configs = layouts[layout]
        if not args.no_warm:
            print(f"[{layout}] warmed the page cache ({warm_page_cache([c.data_path for c in configs]):.1f} GB)")
        # the original layout decodes whole plane stacks: a few batches already take minutes
        batches = args.batches or {"rechunked": 8, "original": 2 if args.size == 512 else 1}.get(layout, 2)
        batch_size = args.batch_size
        if layout == "original" and args.size == 2048 and args.original_batch_size:
            # every patch decodes a whole 128 MiB plane stack and the dataset issues all reads of a batch at
            # once: batch 64 (128 reads) took more than 17 GB and was killed on a 23 GB machine
            batch_size = args.original_batch_size
            print(f"[{layout}] batch {batch_size} (+ positives) instead of {args.batch_size}: see the note in the code")
        before = load()
        r = measure(configs, list(range(args.seeds)), batches, batch_size, args.cache_pool_bytes)
        print(report(layout, args.size, r, args.seeds, batches, before))


if __name__ == "__main__":
    main()
