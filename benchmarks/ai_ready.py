"""Issue 18 ("AI-ready plates") measured by one script: every target, one table.

Runs, on the realistic plates of ``realistic_plate.py`` (2 experiments x 16 FOVs x 20 timepoints, Z 8; float32
label-free channel with unquantised camera noise, Poisson photon counts; iohub's default layout and compression,
one chunk per (t, c) plane stack), the measurements of the other scripts and prints them together:

1. ``MultiExperimentTripletDataset.__getitems__`` samples/s (batch 64 anchors + positives, 2 ch x Z 8 x 160 x
   160, chunk cache off) on the iohub layout and after ``viscy rechunk`` with its defaults, 512 x 512 and
   2048 x 2048; decode amplification (tensorstore's chunk-read counter); the physical floor (the samples/s
   the layout's codec alone allows at this machine's measured decode bandwidth); how often reads of one
   batch share a chunk (the data must be hard: users' batches almost never do) -- ``bench_realistic_reads``;
2. ``viscy rechunk`` of a ~1 GB plate (8 FOVs x 20 t of the 512 x 512 plate via ``--wells``) in a fresh
   process: wall time, peak RSS -- ``bench_rechunk``;
3. the ``MultiExperimentDataModule`` train loader with the example config's normalisations and augmentations,
   on CPU, on the rechunked 512 x 512 plates (1 loader thread, the default, and 2; 3 seeds x 12 batches) --
   ``bench_multi_experiment_datamodule``.

Wall-clock rates are only meaningful on an otherwise idle machine: the load average is printed with every
number and the table says "LOADED" when the 1-minute load exceeds the core count plus 1.5 (the benchmark's own
loader threads and main thread keep the load at up to cores + 1 on an otherwise idle machine). CPU milliseconds per
sample (process CPU time) are also given, with the rate they would allow on idle cores, as the steadier
figure on a shared machine. Plates are generated once (a few minutes; ~6 GB at 512 x 512 per layout, 2048 x
2048 as hard-linked pools, see ``realistic_plate.py``) and reused; ``--plates`` points at an existing cache.

Run (from the repository root)::

    uv run python benchmarks/ai_ready.py            # full: 3 seeds, < 15 min once the plates exist
    uv run python benchmarks/ai_ready.py --quick    # loaded machine: fewer batches and seeds

The table, the full log and a JSON record go to ``benchmarks/results/ai_ready/`` (git-ignored).
"""

# before torch is imported, as `dynaclr fit --tune_cpu` does
from viscy_utils.cpu_runtime import tune_cpu_runtime

tune_cpu_runtime()

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np
from _common import disk_bytes, load, warm_page_cache
from bench_multi_experiment_datamodule import main as datamodule_rate
from bench_realistic_reads import measure, report
from bench_rechunk import run_rechunk
from realistic_plate import PlateSpec, build_experiments, plate_dir

RESULTS = Path(__file__).parent / "results" / "ai_ready"
#: 1-minute load above the core count that the benchmark's own threads explain
LOAD_MARGIN = 1.5
CORES = len(os.sched_getaffinity(0))
#: issue 18's targets on 2 cores
TARGETS = {
    "getitems_512": 250.0,
    "getitems_2048": 200.0,
    "amplification": 3.0,
    "rechunk_s": 120.0,
    "rechunk_rss_gb": 2.0,
    "datamodule": 60.0,
}
#: wells of one 512 x 512 experiment rechunked for the time/memory target: 8 FOVs x 20 t, ~1.5 GB on disk
RECHUNK_WELLS = ("A/1", "A/2")


class Tee:
    """Write to the terminal and to a log file."""

    def __init__(self, *streams):
        self.streams = streams

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
            stream.flush()  # progress shows in the log (and under nohup) as it happens
        return len(text)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()


def git_commit() -> str:
    out = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent
    )
    dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, cwd=Path(__file__).parent)
    return out.stdout.strip() + (" (uncommitted changes)" if dirty.stdout.strip() else "")


def array_layout(plate: str) -> str:
    """Chunk, shard and codec of the first FOV's array, as stored."""
    meta = json.loads((Path(plate) / "A/1/0/0/zarr.json").read_text())
    grid = meta["chunk_grid"]["configuration"]["chunk_shape"]
    codecs = meta["codecs"]
    sharding = next((c for c in codecs if c["name"] == "sharding_indexed"), None)
    if sharding is not None:
        inner = sharding["configuration"]
        blosc = next((c for c in inner["codecs"] if c["name"] == "blosc"), None)
        codec = f"blosc {blosc['configuration']['cname']}" if blosc else "uncompressed"
        return f"shards {grid}, inner chunks {inner['chunk_shape']}, {codec}"
    blosc = next((c for c in codecs if c["name"] == "blosc"), None)
    codec = f"blosc {blosc['configuration']['cname']} clevel {blosc['configuration']['clevel']}" if blosc else "?"
    return f"chunks {grid}, {codec}, {meta['data_type']}"


#: plates read: the issue's (16 FOVs x 20 t per experiment; 2048 as hard-linked pools) and a campaign-sized
#: 512 x 512 one (64 FOVs x 50 t, pooled) on which a batch's reads almost never share a plane stack
PLATES = {
    "512": PlateSpec(size=512),
    "2048": PlateSpec(size=2048, distinct_frames=8),
    "campaign512": PlateSpec(size=512, fovs_per_well=16, n_t=50, distinct_frames=32),
}


def reads(name: str, args, results: dict) -> None:
    """``__getitems__`` on both layouts of one plate."""
    spec = PLATES[name]
    start = time.perf_counter()
    layouts = build_experiments(spec, root=plate_dir(spec, args.plates))
    configs = layouts["original"]
    pooled = (
        f", {spec.distinct_frames} distinct plane stacks per experiment, hard-linked" if spec.distinct_frames else ""
    )
    print(
        f"\n== {name}: {len(configs)} experiments x {4 * spec.fovs_per_well} FOVs x {spec.n_t} t x 2 ch x Z {spec.n_z}"
        f" x {spec.size} x {spec.size}{pooled} (plates ready in {time.perf_counter() - start:.0f} s; {load()})"
    )
    for layout, configs in layouts.items():
        print(f"[{layout}] {array_layout(configs[0].data_path)}")
        gb = warm_page_cache([c.data_path for c in configs])
        seeds = 2 if args.quick else 3
        if layout == "rechunked":
            batches, batch_size = (4 if args.quick else 8), 64
        else:  # the iohub layout decodes whole plane stacks: few batches already take a while
            batches = 1 if args.quick or spec.size == 2048 else 2
            # 2048: every read decodes a 128 MiB plane stack and a batch issues all its reads at once; 64 + 64
            # reads need more memory than a 23 GB machine has
            batch_size = 8 if spec.size == 2048 else 64
        before = load()
        r = measure(configs, list(range(seeds)), batches, batch_size, decode_bytes=5e8 if args.quick else 2e9)
        r.update(seeds=seeds, batches=batches, batch_size=batch_size, load_before=before, load_after=load())
        r["page_cache_gb"] = gb
        line = report(layout, spec.size, r, seeds, batches, before)
        print(line + (f" [batch {batch_size}]" if batch_size != 64 else ""))
        results[f"reads_{name}_{layout}"] = r


def rechunk_1gb(args, results: dict) -> None:
    spec = PlateSpec(size=512)
    source = Path(build_experiments(spec, root=plate_dir(spec, args.plates))["original"][0].data_path)
    dest = args.out / "rechunk_1gb.zarr"
    shutil.rmtree(dest.parent / f".{dest.name}.rechunk", ignore_errors=True)
    on_disk = sum(disk_bytes(source / well) for well in RECHUNK_WELLS)
    pixels = len(RECHUNK_WELLS) * 4 * spec.n_t * 2 * spec.n_z * spec.size**2 * 4
    before = load()
    seconds, cpu, rss = run_rechunk(source, dest, "--wells", *RECHUNK_WELLS)
    written = disk_bytes(dest)
    shutil.rmtree(dest)
    results["rechunk_1gb"] = {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "peak_rss_gb": rss,
        "source_gb_on_disk": on_disk / 1e9,
        "pixel_gb": pixels / 1e9,
        "dest_gb_on_disk": written / 1e9,
        "load_before": before,
        "load_after": load(),
    }
    print(
        f"\n== viscy rechunk (defaults, fresh process) of {len(RECHUNK_WELLS) * 4} FOVs x {spec.n_t} t, "
        f"{on_disk / 1e9:.2f} GB on disk ({pixels / 1e9:.2f} GB of pixels): {seconds:.1f} s wall, {cpu:.1f} CPU-s "
        f"(= {cpu / CORES:.1f} s on {CORES} idle cores), peak RSS {rss:.2f} GB, output {written / 1e9:.2f} GB; "
        f"{before} -> {load()}"
    )


def datamodule(args, results: dict) -> None:
    """The train loader on the rechunked 512 plates: 1 loader thread (the DataModule's default) and 2, per seed."""
    spec = PlateSpec(size=512)
    configs = build_experiments(spec, root=plate_dir(spec, args.plates))["rechunked"]
    print(f"\n== MultiExperimentDataModule train loader, example augmentations, CPU, rechunked 512 x 512 ({load()})")
    warm_page_cache([c.data_path for c in configs])
    seeds, batches = (2, 4) if args.quick else (3, 12)
    for workers in (1, 2):
        before, runs = load(), []
        for seed in range(seeds):
            per_transform = not args.quick and workers == 1 and seed == 0
            runs.append(
                datamodule_rate(
                    batches=batches,
                    realistic=512,
                    layout="rechunked",
                    per_transform=per_transform,
                    num_workers=workers,
                    seed=seed,
                    plates=args.plates,
                )
            )
        rates = np.array([r["rate"] for r in runs])
        cpu = np.array([r["cpu_ms_per_sample"] for r in runs])
        results[f"datamodule_512_rechunked_{workers}w"] = {
            "rate": [float(rates.mean()), float(rates.std(ddof=1)) if seeds > 1 else 0.0],
            "cpu_ms_per_sample": float(cpu.mean()),
            "idle_core_rate": float(1000 * CORES / cpu.mean()),
            "runs": runs,
            "load_before": before,
            "load_after": load(),
        }


def verdict(value: float, target: float, higher_is_better: bool = True) -> str:
    ok = value >= target if higher_is_better else value <= target
    return "met" if ok else "MISSED"


def table(results: dict, loaded: bool) -> str:
    """The issue's targets, measured (wall clock) and as CPU time would allow on idle cores."""
    rows = [("target (2 cores)", "goal", "measured (wall)", "CPU time -> idle cores", "wall")]
    for size in PLATES:
        for layout in ("rechunked", "original"):
            r = results.get(f"reads_{size}_{layout}")
            if r is None:
                continue
            goal = TARGETS.get(f"getitems_{size}") if layout == "rechunked" else None
            # unsharded layouts have no absolute goal: "no slower than today" is a before/after comparison on the same
            # plate and machine (compare_i16.py --benchmarks unsharded); the codec floor row says what any reader gets
            idle = CORES / r["cpu_per_sample"]
            rows.append(
                (
                    f"__getitems__ {size} {layout} (samples/s)",
                    f">= {goal:.0f}" if goal else "report",
                    f"{r['rate'][0]:.1f} +- {r['rate'][1]:.1f}",
                    f"{1000 * r['cpu_per_sample']:.2f} ms -> {idle:.0f}",
                    verdict(r["rate"][0], goal) if goal else "-",
                )
            )
            floor = r["bandwidth"] / r["sample_bytes"] / r["amplification"]
            cpu_floor = CORES * r["cpu_bandwidth"] / r["sample_bytes"] / r["amplification"]
            rows.append(
                (
                    f"  amplification / floor {size} {layout}",
                    "<= 3x" if layout == "rechunked" else "report",
                    f"{r['amplification']:.2f}x / {floor:.0f} samples/s",
                    f"floor {cpu_floor:.0f} samples/s",
                    verdict(r["amplification"], TARGETS["amplification"], False)
                    if goal and layout == "rechunked"
                    else "-",
                )
            )
            reuse = r["reuse"]
            rows.append(
                (
                    f"  reuse within a batch {size} {layout}",
                    "rare",
                    f"{100 * reuse['shared_chunk_touches']:.1f}% of chunk touches",
                    f"{100 * reuse['reads_sharing_a_plane_stack']:.1f}% reads share a stack",
                    "-",
                )
            )
    r = results.get("rechunk_1gb")
    if r:
        rows.append(
            (
                f"viscy rechunk {r['source_gb_on_disk']:.2f} GB plate (s)",
                "< 120",
                f"{r['seconds']:.1f}",
                f"{r['cpu_seconds']:.1f} CPU-s -> {r['cpu_seconds'] / CORES:.1f}",
                verdict(r["seconds"], TARGETS["rechunk_s"], False),
            )
        )
        rows.append(("  peak RSS (GB)", "< 2", f"{r['peak_rss_gb']:.2f}", "", verdict(r["peak_rss_gb"], 2.0, False)))
    for workers in (1, 2):
        r = results.get(f"datamodule_512_rechunked_{workers}w")
        if r is None:
            continue
        threads = "1 loader thread, the default" if workers == 1 else "2 loader threads"
        rows.append(
            (
                f"DataModule train loader + augmentations 512 rechunked, {threads} (samples/s)",
                ">= 60" if workers == 1 else "report",
                f"{r['rate'][0]:.1f} +- {r['rate'][1]:.1f}",
                f"{r['cpu_ms_per_sample']:.1f} ms -> {r['idle_core_rate']:.0f}",
                verdict(r["rate"][0], TARGETS["datamodule"]) if workers == 1 else "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = [" | ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    if loaded:
        lines.append(
            "LOADED machine: wall-clock verdicts are not meaningful; read the CPU-time column and rerun on idle cores."
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer seeds and batches (a loaded machine)")
    parser.add_argument("--plates-read", nargs="+", choices=list(PLATES), default=list(PLATES), help="plates to read")
    parser.add_argument("--skip", nargs="*", choices=("reads", "rechunk", "datamodule"), default=[])
    parser.add_argument("--plates", type=Path, default=None, help="plate cache (default benchmarks/results/plates)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the table, log and JSON")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    log_path = args.out / f"ai_ready_{stamp}.log"
    results: dict = {}
    start = time.perf_counter()
    with open(log_path, "w") as log, contextlib.redirect_stdout(Tee(sys.stdout, log)):
        loads = [load()]
        header = (
            f"ai_ready {stamp}: commit {git_commit()}; {platform.node()} {platform.processor() or platform.machine()}, "
            f"{CORES} cores; python {platform.python_version()}; {'--quick' if args.quick else 'full'}; {loads[0]}"
        )
        print(header)
        print("uptime:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
        if "reads" not in args.skip:
            for name in args.plates_read:
                reads(name, args, results)
                loads.append(load())
        if "rechunk" not in args.skip:
            rechunk_1gb(args, results)
            loads.append(load())
        if "datamodule" not in args.skip:
            datamodule(args, results)
            loads.append(load())
        one_minute = [float(entry.split()[1]) for entry in loads]
        # the benchmark itself runs up to CORES + 1 busy threads: more than that is someone else's work
        loaded = max(one_minute) > CORES + LOAD_MARGIN
        print(
            f"\n== summary ({time.perf_counter() - start:.0f} s in all; 1-min load during the run {min(one_minute):.1f}"
            f"-{max(one_minute):.1f} on {CORES} cores{': LOADED' if loaded else ''})"
        )
        print("uptime:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
        summary = table(results, loaded)
        print(summary)
    (args.out / f"ai_ready_{stamp}.json").write_text(
        json.dumps({"header": header, "loaded": loaded, "loads": loads, "results": results}, indent=1, default=str)
    )
    (args.out / f"ai_ready_{stamp}.table.txt").write_text(header + "\n" + summary + "\n")
    print(f"written: {log_path}, {log_path.with_suffix('.json')}, {args.out / f'ai_ready_{stamp}.table.txt'}")


if __name__ == "__main__":
    main()
