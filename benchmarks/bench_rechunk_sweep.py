"""Sweep of rechunk's inner chunk shape (and compressor) for random 8 x 160 x 160 patch reads.

Chooses ``viscy_data.rechunk.DEFAULT_CHUNKS`` / ``DEFAULT_COMPRESSOR``. The sweep plates have their own seed
(and half the FOVs) so the default is not tuned on the plates ``bench_realistic_reads.py`` scores. For each
candidate: rechunk time and size on disk, ``__getitems__`` samples/s (mean +- sd over seeds), measured
amplification and decode bandwidth, with the machine load. Candidate plates are deleted after measuring.

Run: ``uv run python benchmarks/bench_rechunk_sweep.py`` (``--size 2048`` for the pooled 2048 x 2048 plates).
"""

from viscy_utils.cpu_runtime import tune_cpu_runtime

tune_cpu_runtime()

import argparse
import dataclasses
import shutil
import time
from pathlib import Path

from _common import disk_bytes, load, warm_page_cache
from bench_realistic_reads import measure, report
from realistic_plate import PlateSpec, build_experiments

from viscy_data.rechunk import rechunk

CANDIDATES = [
    ((1, 1, -1, 32, 32), "zstd"),
    ((1, 1, -1, 64, 64), "zstd"),
    ((1, 1, -1, 96, 96), "zstd"),
    ((1, 1, -1, 128, 128), "zstd"),
    ((1, 1, -1, 256, 256), "zstd"),
    ((1, 1, -1, 64, 64), "lz4"),
    ((1, 1, -1, 128, 128), "lz4"),
    ((1, 1, -1, 64, 64), "none"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--only", type=int, nargs="*", default=None, help="candidate numbers to run")
    args = parser.parse_args()
    spec = PlateSpec(size=512, fovs_per_well=1, seed=100)
    originals = build_experiments(spec)["original"]
    root = Path(originals[0].data_path).parent
    print(f"sweep plates: {len(originals)} experiments x 4 FOVs x {spec.n_t} t, {spec.size} x {spec.size}, seed 100")
    for number, (chunks, compressor) in enumerate(CANDIDATES):
        if args.only is not None and number not in args.only:
            continue
        configs = []
        seconds = size = 0.0
        for config in originals:
            dest = root / f"sweep_{Path(config.data_path).stem}.zarr"
            shutil.rmtree(dest, ignore_errors=True)
            start = time.perf_counter()
            rechunk(config.data_path, dest, chunks=chunks, compressor=compressor, progress=False)
            seconds += time.perf_counter() - start
            size += disk_bytes(dest)
            configs.append(dataclasses.replace(config, data_path=str(dest)))
        source_size = sum(disk_bytes(Path(c.data_path)) for c in originals)
        warm_page_cache([c.data_path for c in configs])
        before = load()
        r = measure(configs, list(range(args.seeds)), args.batches, 64)
        print(
            f"#{number} {compressor}, size {size / source_size:.2f}x the source, rechunk {seconds:.0f} s: "
            + report("rechunked", spec.size, r, args.seeds, args.batches, before),
            flush=True,
        )
        for config in configs:
            shutil.rmtree(config.data_path)


if __name__ == "__main__":
    main()
