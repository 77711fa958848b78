"""``viscy rechunk`` wall time and peak memory on realistic plates, and which zarr writer is fastest.

1. A ~1 GB (on disk) realistic 512 x 512 plate (8 FOVs x 20 timepoints x 2 channels x Z 8, float32 label-free
   channel with unquantised noise, Poisson fluorescence counts; iohub's default layout): the command runs in a
   subprocess (``python -m viscy_data.rechunk``, imports included); wall time and the child's peak RSS.
   Target (2 cores): < 2 min, < 2 GB.
2. The same for a 2048 x 2048 plate (8 plane stacks of 128 MiB per channel): memory stays bounded with large shards.
3. Writers: one FOV written as the same sharded zarr v3 array by tensorstore, zarr-python 3 (default codec
   pipeline) and zarr-python 3 with the zarrs (Rust) pipeline; ``rechunk`` uses the fastest.

Run: ``uv run python benchmarks/bench_rechunk.py``. The machine load is printed with every number.
"""

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import tensorstore as ts
import zarr
from _common import disk_bytes, load
from realistic_plate import PlateSpec, build_experiments

from viscy_data.rechunk import DEFAULT_CHUNKS, DEFAULT_COMPRESSOR

CORES = len(os.sched_getaffinity(0))


def run_rechunk(source: Path, dest: Path, *options: str) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds and peak RSS (GB) of the rechunk command (with ``options``) in a fresh process."""
    shutil.rmtree(dest, ignore_errors=True)
    code = (
        "import resource, sys\n"
        "from viscy_data.rechunk import main\n"
        "main(sys.argv[1:])\n"
        "usage = resource.getrusage(resource.RUSAGE_SELF)\n"
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across fork + exec
        "hwm = [line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM')][0]\n"
        "print('cpu_s', usage.ru_utime + usage.ru_stime, 'maxrss_kb', hwm)\n"
    )
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", code, str(source), str(dest), "--quiet", *options], capture_output=True, text=True
    )
    seconds = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    cpu = float(out.stdout.split("cpu_s")[-1].split()[0])
    rss_kb = int(out.stdout.split("maxrss_kb")[-1])
    return seconds, cpu, rss_kb / 1e6


def compare_writers(array: Path, scratch: Path) -> None:
    data = zarr.open_array(str(array), mode="r")[:]
    chunks = tuple(min(c, n) if c > 0 else n for c, n in zip(DEFAULT_CHUNKS, data.shape))
    shards = (1, 1, *data.shape[2:])
    blosc = {"cname": DEFAULT_COMPRESSOR, "clevel": 1, "shuffle": "bitshuffle", "typesize": 4, "blocksize": 0}
    codecs = [
        {
            "name": "sharding_indexed",
            "configuration": {
                "chunk_shape": list(chunks),
                "codecs": [
                    {"name": "bytes", "configuration": {"endian": "little"}},
                    {"name": "blosc", "configuration": blosc},
                ],
                "index_codecs": [{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "crc32c"}],
            },
        }
    ]

    def tensorstore_write(path):
        meta = {
            "shape": list(data.shape),
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(shards)}},
            "data_type": "float32",
            "codecs": codecs,
        }
        spec = {"driver": "zarr3", "kvstore": {"driver": "file", "path": str(path)}, "metadata": meta}
        a = ts.open(spec, create=True, context=ts.Context({"cache_pool": {"total_bytes_limit": 0}})).result()
        futures = [a[t, c].write(data[t, c]) for t in range(data.shape[0]) for c in range(data.shape[1])]
        for f in futures:
            f.result()

    def zarr_write(path, pipeline):
        from zarr.codecs import BloscCodec

        with zarr.config.set({"codec_pipeline.path": pipeline}):
            a = zarr.create_array(
                str(path),
                shape=data.shape,
                chunks=chunks,
                shards=shards,
                dtype="float32",
                compressors=[BloscCodec(cname=DEFAULT_COMPRESSOR, clevel=1, shuffle="bitshuffle")],
            )
            a[...] = data

    writers = {
        "tensorstore": tensorstore_write,
        "zarr-python": lambda p: zarr_write(p, "zarr.core.codec_pipeline.BatchedCodecPipeline"),
        "zarr-python + zarrs": lambda p: zarr_write(p, "zarrs.ZarrsCodecPipeline"),
    }
    for name, write in writers.items():
        times = []
        for _ in range(3):
            target = scratch / "writer.zarr"
            shutil.rmtree(target, ignore_errors=True)
            start = time.perf_counter()
            write(target)
            times.append(time.perf_counter() - start)
        shutil.rmtree(scratch / "writer.zarr", ignore_errors=True)
        mbs = [data.nbytes / 1e6 / t for t in times]
        print(
            f"  writer {name}: {np.mean(mbs):.0f} +- {np.std(mbs):.0f} MB/s "
            f"({data.nbytes / 1e6:.0f} MB, 3 runs); {load()}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skip-2048", action="store_true")
    args = parser.parse_args()
    plate = Path(
        build_experiments(PlateSpec(size=512, fovs_per_well=2, seed=200), rechunked=False)["original"][0].data_path
    )
    dest = plate.parent / "bench_rechunk_dest.zarr"
    raw = 8 * 20 * 2 * 8 * 512 * 512 * 4
    before = load()
    seconds, cpu, rss = run_rechunk(plate, dest)
    print(
        f"rechunk 512 x 512 plate ({disk_bytes(plate) / 1e9:.2f} GB on disk, {raw / 1e9:.2f} GB of pixels): "
        f"{seconds:.1f} s wall, {cpu:.1f} CPU-s (= {cpu / CORES:.1f} s on {CORES} idle cores), peak RSS {rss:.2f} GB, "
        f"output {disk_bytes(dest) / 1e9:.2f} GB; {before} -> {load()}"
    )
    compare_writers(plate / "A/1/0/0", plate.parent)
    shutil.rmtree(dest)
    if not args.skip_2048:
        layouts = build_experiments(PlateSpec(size=2048, distinct_frames=8))
        pool = Path(layouts["original"][0].data_path).parent / "exp_a_pool.zarr"
        dest = pool.parent / "bench_rechunk_dest.zarr"
        before = load()
        seconds, cpu, rss = run_rechunk(pool, dest)
        print(
            f"rechunk 2048 x 2048 plate ({disk_bytes(pool) / 1e9:.2f} GB on disk, 8 x 2 plane stacks of 128 MiB): "
            f"{seconds:.1f} s wall, {cpu:.1f} CPU-s, peak RSS {rss:.2f} GB; {before} -> {load()}"
        )
        shutil.rmtree(dest)


if __name__ == "__main__":
    main()
