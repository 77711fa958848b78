"""Benchmark: exact per-row percentiles (50th and 99th) on CPU, old full introselect vs sample-then-select.

Run: ``uv run python benchmarks/bench_percentiles.py [--repeats 5] [--threads N]``. For each shape prints the
best wall time of ``numpy.partition`` over whole rows (the previous implementation), of the sample-then-select
path, their ratio, and the whole ``BatchedScaleIntensityRangePercentilesd(lower=50, upper=99)`` transform.
Data are synthetic: uniform noise and a quantised (12-bit camera-like) image with a large flat background.
Like ``dynaclr fit --tune_cpu``, the script tunes the CPU runtime first
(:func:`viscy_utils.cpu_runtime.tune_cpu_runtime`:
huge pages, freed buffers kept for reuse, no OpenMP spinning); ``THP_MEM_ALLOC_ENABLE=0``,
``MALLOC_TRIM_THRESHOLD_=131072`` or ``GOMP_SPINCOUNT=300000`` measure without one of them.
"""

# before torch is imported, as `dynaclr fit --tune_cpu` / `viscy fit --tune_cpu` do
from viscy_utils.cpu_runtime import tune_cpu_runtime

tune_cpu_runtime()

import argparse

import torch
from _common import time_it

import viscy_transforms as vt
from viscy_transforms import _percentile_scale as ps

SHAPES = [(64, 1, 8, 192, 192), (16, 1, 8, 512, 512)]  # DynaCLR training batch; large 3-D volumes


def ranks_for(n, qs=(50.0, 99.0)):
    lows = [int(q / 100.0 * (n - 1)) for q in qs]
    return sorted({r for low in lows for r in (low, min(low + 1, n - 1))})


def images(shape, kind, gen):
    if kind == "uniform":
        return torch.rand(shape, generator=gen)
    # 12-bit camera counts: 60 % background at an offset of 100, cells as a gamma-like bright tail
    background = torch.rand(shape, generator=gen) < 0.6
    signal = 100 + (torch.rand(shape, generator=gen) ** 3 * 3995).round()
    return torch.where(background, torch.full(shape, 100.0), signal)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"CPU, torch threads: {torch.get_num_threads()}, best of {args.repeats}")
    gen = torch.Generator().manual_seed(0)
    for shape in SHAPES:
        for kind in ("uniform", "camera"):
            x = images(shape, kind, gen)
            rows = x.reshape(shape[0], -1)
            ranks = ranks_for(rows.shape[1])
            old = ps._order_statistics_partition(rows, ranks)
            new = ps._order_statistics_sampled(rows, ranks)
            assert torch.equal(old, new), "sample-then-select differs from numpy.partition"
            t_old = time_it(lambda r=rows, k=ranks: ps._order_statistics_partition(r, k), args.repeats)[0]
            t_new = time_it(lambda r=rows, k=ranks: ps._order_statistics_sampled(r, k), args.repeats)[0]
            scaler = vt.BatchedScaleIntensityRangePercentilesd(["x"], lower=50, upper=99, b_min=0, b_max=1)
            t_all = time_it(lambda s=scaler, v=x: s({"x": v}), args.repeats)[0]
            label = f"{tuple(rows.shape)} {kind}"
            print(
                f"{label:24s} np.partition {t_old * 1e3:7.1f} ms | sample-select {t_new * 1e3:7.1f} ms "
                f"| {t_old / t_new:4.1f}x | whole transform {t_all * 1e3:7.1f} ms"
            )


if __name__ == "__main__":
    main()
