"""Benchmark: the DynaCLR augmentation chain, batched (viscy_transforms) vs the same chain with MONAI per sample.

The chain is the ``augmentations`` list of ``applications/dynaclr/examples/configs/multi_experiment_fit.yml``
(affine: rotation about Z, Y/X zoom, small in-plane shear; adjust contrast; scale intensity; Gaussian smooth;
Gaussian noise) on two channels, one key each, over a (32, 2, 8, 192, 192) float32 batch on CPU. MONAI runs the
same geometry distribution with ``RandAffined`` and its namesakes sample by sample, as a per-sample
``Dataset.__getitem__`` pipeline would. A second, harder chain shears along Z as well (every shear coefficient
0.05), which forces both implementations into 3-D trilinear resampling.

Like ``dynaclr fit --tune_cpu``, the script tunes the CPU runtime first
(:func:`viscy_utils.cpu_runtime.tune_cpu_runtime`:
huge pages, freed buffers kept for reuse, no OpenMP spinning); ``THP_MEM_ALLOC_ENABLE=0``,
``MALLOC_TRIM_THRESHOLD_=131072`` or ``GOMP_SPINCOUNT=300000`` measure without one of them.
Run: ``uv run python benchmarks/bench_transforms.py [--batch 32] [--repeats 5]``. Target: batched >= 3x faster.
"""

from viscy_utils.cpu_runtime import tune_cpu_runtime

tune_cpu_runtime()  # before torch is imported, as `dynaclr fit --tune_cpu` does

import argparse
import os

import monai.transforms as mt
import torch
from _common import time_it

import viscy_transforms as vt

KEYS = ["Phase3D", "Membrane"]  # two channels, one key each, as in DynaCLR configs
IN_PLANE_SHEAR = [0.0, 0.0, 0.0, 0.01, 0.0, 0.01]  # ZY, ZX, YZ, YX, XZ, XY: only Y<-X and X<-Y (as MONAI orders them)


def batched_chain(shear):
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


def monai_chain(shear):
    # MONAI units: scale as offsets from 1, shear as factors (tan of our angles, equal to 1e-4 here); MONAI's
    # sigma_x is the first spatial axis (Z) and its sigma_z the last (X).
    return mt.Compose(
        [
            mt.RandAffined(
                KEYS,
                prob=0.8,
                rotate_range=[3.14, 0.0, 0.0],
                scale_range=[0.0, 0.2, 0.2],
                shear_range=[shear] * 6 if isinstance(shear, float) else shear,
                padding_mode="zeros",
            ),
            mt.RandAdjustContrastd(KEYS, prob=0.5, gamma=(0.8, 1.2)),
            mt.RandScaleIntensityd(KEYS, prob=0.5, factors=0.5),
            mt.RandGaussianSmoothd(KEYS, prob=0.5, sigma_x=(0.0, 0.0), sigma_y=(0.25, 0.75), sigma_z=(0.25, 0.75)),
            mt.RandGaussianNoised(KEYS, prob=0.5, mean=0.0, std=0.2),
        ]
    )


def compare(name, shear, batch, samples, repeats):
    batched, per_sample = batched_chain(shear), monai_chain(shear)

    def run_batched():
        with torch.no_grad():
            return batched(dict(batch))

    def run_monai():
        with torch.no_grad():
            return [per_sample(dict(s)) for s in samples]

    # interleaved, so that a change of machine load affects both alike
    b_best, b_mean = time_it(run_batched, repeats)
    m_best, m_mean = time_it(run_monai, repeats)
    b_best2, b_mean2 = time_it(run_batched, repeats)
    b_best, b_mean = min(b_best, b_best2), (b_mean + b_mean2) / 2
    print(f"{name}")
    print(f"  viscy_transforms batched : best {b_best:.3f} s  mean {b_mean:.3f} s per batch")
    print(f"  MONAI per sample         : best {m_best:.3f} s  mean {m_mean:.3f} s per batch")
    print(f"  speed-up (MONAI / batched): best {m_best / b_best:.2f}x  mean {m_mean / b_mean:.2f}x")
    return batched


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--shape", type=int, nargs=3, default=(8, 192, 192), metavar=("Z", "Y", "X"))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    batch = {key: torch.rand(args.batch, 1, *args.shape) for key in KEYS}
    samples = [{key: batch[key][i] for key in KEYS} for i in range(args.batch)]
    shape = (args.batch, len(KEYS), *args.shape)
    print(
        f"batch {shape} float32 on CPU, torch threads: {torch.get_num_threads()}, repeats: {args.repeats}, "
        f"THP_MEM_ALLOC_ENABLE={os.environ.get('THP_MEM_ALLOC_ENABLE')}"
    )
    chain = compare("example config chain (in-plane affine)", IN_PLANE_SHEAR, batch, samples, args.repeats)
    for transform in chain.transforms:
        best, _ = time_it(lambda t=transform: t(dict(batch)), args.repeats)
        print(f"    {type(transform).__name__:28s}: best {best:.3f} s per batch")
    compare("harder chain (shear 0.05 on every coefficient: 3-D resampling)", 0.05, batch, samples, args.repeats)


if __name__ == "__main__":
    main()
