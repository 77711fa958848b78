"""Helpers shared by the benchmark scripts (run from the repository root: ``python benchmarks/<script>.py``)."""

import os
import time
from pathlib import Path

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


def load() -> str:
    """The machine's load averages (1, 5, 15 min), to print with every number measured on a shared machine."""
    return "load " + " ".join(f"{v:.2f}" for v in os.getloadavg())


def disk_bytes(path: Path) -> int:
    """Bytes of all files below ``path``."""
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def warm_page_cache(paths: list[str]) -> float:
    """Read every file below ``paths`` once so timings measure decoding, not the disk; returns GB read."""
    total, seen = 0, set()
    for root in paths:
        for folder, _, files in os.walk(root):
            for name in files:
                path = os.path.join(folder, name)
                inode = os.stat(path).st_ino
                if inode in seen:  # hard links of pooled plates: read once
                    continue
                seen.add(inode)
                with open(path, "rb") as f:
                    while chunk := f.read(1 << 24):
                        total += len(chunk)
    return total / 1e9
