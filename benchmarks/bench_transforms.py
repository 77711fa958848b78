"""Benchmark: a DynaCLR-style augmentation chain, batched (viscy_transforms) vs MONAI sample by sample.

Run: ``uv run python benchmarks/bench_transforms.py [--batch 32] [--repeats 3]``. Prints seconds per batch for
both and their ratio, then each batched transform alone, then the chain with the example DynaCLR config's affine
(rotation about Z, in-plane shear and zoom: the slice-wise 2-D resampling path). CPU only; data are synthetic.
"""

import argparse
import time

import monai.transforms as mt
import torch

import viscy_transforms as vt

KEYS = ["Phase3D", "Membrane"]  # two channels, one key each, as in DynaCLR configs


def batched_chain(planar: bool = False):
    # shear_range=0.05 shears Z as well (3-D resampling); the example config only shears in the YX plane
    shear = [0.0, 0.0, 0.0, 0.01, 0.0, 0.01] if planar else 0.05
    return mt.Compose(
        [
            vt.BatchedRandAffined(
                KEYS, prob=0.8, rotate_range=[3.14, 0.0, 0.0], scale_range=[0.0, 0.2, 0.2], shear_range=shear
            ),
            vt.BatchedRandAdjustContrastd(KEYS, prob=0.5, gamma=(0.8, 1.2)),
            vt.BatchedRandScaleIntensityd(KEYS, prob=0.5, factors=0.5),
            vt.BatchedRandGaussianSmoothd(KEYS, prob=0.5, sigma_x=(0.25, 0.75), sigma_y=(0.25, 0.75), sigma_z=0.0),
            vt.BatchedRandGaussianNoised(KEYS, prob=0.5, mean=0.0, std=0.2),
        ]
    )


def monai_chain():
    # MONAI units: scale offsets from 1, shear factors; sigma_x is the first spatial axis (Z) in plain MONAI.
    return mt.Compose(
        [
            mt.RandAffined(
                KEYS,
                prob=0.8,
                rotate_range=[3.14, 0.0, 0.0],
                scale_range=[0.0, 0.2, 0.2],
                shear_range=[0.05] * 6,
                padding_mode="zeros",
            ),
            mt.RandAdjustContrastd(KEYS, prob=0.5, gamma=(0.8, 1.2)),
            mt.RandScaleIntensityd(KEYS, prob=0.5, factors=0.5),
            mt.RandGaussianSmoothd(KEYS, prob=0.5, sigma_x=(0.0, 0.0), sigma_y=(0.25, 0.75), sigma_z=(0.25, 0.75)),
            mt.RandGaussianNoised(KEYS, prob=0.5, mean=0.0, std=0.2),
        ]
    )


def time_it(fn, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), sum(times) / len(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--shape", type=int, nargs=3, default=(8, 192, 192), metavar=("Z", "Y", "X"))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    batch = {key: torch.rand(args.batch, 1, *args.shape) for key in KEYS}
    samples = [{key: batch[key][i] for key in KEYS} for i in range(args.batch)]
    batched, per_sample = batched_chain(), monai_chain()

    def run_batched():
        with torch.no_grad():
            return batched(dict(batch))

    def run_monai():
        with torch.no_grad():
            return [per_sample(dict(s)) for s in samples]

    shape = (args.batch, len(KEYS), *args.shape)
    print(f"batch {shape} on CPU, torch threads: {torch.get_num_threads()}, repeats: {args.repeats}")
    b_best, b_mean = time_it(run_batched, args.repeats)
    m_best, m_mean = time_it(run_monai, args.repeats)
    print(f"viscy_transforms batched : best {b_best:.3f} s  mean {b_mean:.3f} s per batch")
    print(f"MONAI per sample         : best {m_best:.3f} s  mean {m_mean:.3f} s per batch")
    print(f"speed-up (MONAI / batched, best): {m_best / b_best:.2f}x")
    for transform in batched_chain().transforms:
        best, _ = time_it(lambda t=transform: t(dict(batch)), args.repeats)
        print(f"  {type(transform).__name__:28s}: best {best:.3f} s per batch")
    planar = batched_chain(planar=True)
    p_best, p_mean = time_it(lambda: planar(dict(batch)), args.repeats)
    print(f"batched, example config's in-plane affine: best {p_best:.3f} s  mean {p_mean:.3f} s per batch")
    best, _ = time_it(lambda: planar.transforms[0](dict(batch)), args.repeats)
    print(f"  {'BatchedRandAffined (planar)':28s}: best {best:.3f} s per batch")


if __name__ == "__main__":
    main()
