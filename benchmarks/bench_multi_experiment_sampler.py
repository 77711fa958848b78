"""FlexibleBatchSampler: one epoch of batch indices over ~1.08 M anchors with every axis on.

Run: ``uv run python benchmarks/bench_multi_experiment_sampler.py``. Target: < 3 s per epoch.
"""

import time

import numpy as np
import pandas as pd

from viscy_data.sampler import FlexibleBatchSampler


def main(n: int = 1_080_000, batch_size: int = 64) -> None:
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {
            "experiment": rng.choice(["exp_a", "exp_b"], n),
            "condition": rng.choice(["uninfected", "infected", "mock"], n, p=[0.6, 0.3, 0.1]),
            "hours_post_infection": rng.integers(0, 50, n) * 0.5,
        }
    )
    start = time.perf_counter()
    sampler = FlexibleBatchSampler(
        df,
        batch_size=batch_size,
        experiment_aware=True,
        leaky=0.1,
        condition_balanced=True,
        temporal_enrichment=True,
        temporal_window_hours=2.0,
        temporal_global_fraction=0.3,
        seed=0,
    )
    init = time.perf_counter() - start
    start = time.perf_counter()
    first = next(iter(sampler))
    first_s = time.perf_counter() - start
    start = time.perf_counter()
    n_batches = sum(1 for _ in sampler)
    epoch = time.perf_counter() - start
    print(
        f"init {init:.2f} s; first batch {1e3 * first_s:.2f} ms ({len(first)} indices); "
        f"epoch of {n_batches} batches over {n:,} anchors: {epoch:.2f} s"
    )
    sampler_r1 = FlexibleBatchSampler(
        df, batch_size=batch_size, leaky=0.1, temporal_enrichment=True, num_replicas=2, rank=1
    )
    start = time.perf_counter()
    n_r1 = sum(1 for _ in sampler_r1)
    print(f"rank 1 of 2: {n_r1} batches in {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main()
