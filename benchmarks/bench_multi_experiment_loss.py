"""NTXentHCL forward + backward at 256 pairs x 128 dims: time and extra peak memory.

Run: ``uv run python benchmarks/bench_multi_experiment_loss.py``. Target: < 100 ms, < 300 MB.
"""

import resource
import time

import torch
from pytorch_metric_learning.losses import NTXentLoss

from dynaclr.loss import NTXentHCL


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(pairs: int = 256, dims: int = 128, repeats: int = 10) -> None:
    torch.manual_seed(0)
    labels = torch.cat([torch.arange(pairs), torch.arange(pairs)])
    loss_fn = NTXentHCL(temperature=0.07, beta=0.5)
    emb = torch.randn(2 * pairs, dims, requires_grad=True)
    loss_fn(emb, labels).backward()  # warm-up
    before = peak_rss_mb()
    times = []
    for _ in range(repeats):
        emb = torch.randn(2 * pairs, dims, requires_grad=True)
        start = time.perf_counter()
        loss_fn(emb, labels).backward()
        times.append(time.perf_counter() - start)
    extra = peak_rss_mb() - before
    times.sort()
    print(
        f"NTXentHCL fwd+bwd {pairs} pairs x {dims}: median {1e3 * times[len(times) // 2]:.1f} ms, "
        f"min {1e3 * times[0]:.1f} ms, extra peak RSS {extra:.0f} MB"
    )
    emb = torch.randn(2 * pairs, dims)
    diff = (NTXentHCL(beta=0.0)(emb, labels) - NTXentLoss()(emb, labels)).abs().item()
    print(f"|NTXentHCL(beta=0) - NTXentLoss| = {diff:.2e}")


if __name__ == "__main__":
    main()
