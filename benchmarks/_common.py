"""Helpers shared by the benchmark scripts (run from the repository root: ``python benchmarks/<script>.py``)."""

import time

import numpy as np
from scipy import ndimage


def time_it(fn, repeats: int) -> tuple[float, float]:
    """Best and mean wall time of ``fn()`` over ``repeats`` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), sum(times) / len(times)


def smooth_stack(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Blurred noise (structures ~10 px) plus shot-like noise, quantised to 1/64 steps, as float32.

    Compresses like real microscopy; uniform random float32 does not compress and makes decoding dominate.
    """
    *lead, h, w = shape
    coarse = rng.random((*lead, -(-h // 16), -(-w // 16)), dtype=np.float32)
    blocks = coarse.repeat(16, axis=-2).repeat(16, axis=-1)[..., :h, :w]
    smooth = ndimage.gaussian_filter(blocks, sigma=(0,) * len(lead) + (6, 6))
    noisy = 100 * smooth + rng.normal(0, 2, shape).astype(np.float32)
    return (np.round(noisy * 64) / 64).astype(np.float32)
