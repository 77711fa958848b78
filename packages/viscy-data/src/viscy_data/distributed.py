"""Distributed sampling that keeps each rank on a stable, contiguous shard of the dataset."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Dataset
from torch.utils.data.distributed import DistributedSampler

__all__ = ["ShardedDistributedSampler"]


class ShardedDistributedSampler(DistributedSampler):
    """``DistributedSampler`` giving each rank a contiguous block, shuffled within the block.

    With ``shuffle=True`` rank ``r`` draws a permutation (seeded ``seed + epoch``) of the indices
    ``[start, start + n)`` with ``n = num_samples`` and ``start = min(r * n, N - n)``: the last block
    is shifted left to overlap its neighbour rather than wrap around. Every rank therefore touches the
    same subset each epoch (cache friendly), in a different order. With ``drop_last=True`` the blocks
    have ``floor(N / num_replicas)`` items and the tail is dropped. With ``shuffle=False`` the order
    is the plain strided ``DistributedSampler`` order.

    Parameters
    ----------
    dataset : torch.utils.data.Dataset
        Dataset with a length.
    num_replicas : int, optional
        Number of ranks (default: the process group's world size).
    rank : int, optional
        This rank (default: the process group's rank).
    shuffle : bool, default True
        Shuffle within the block.
    seed : int, default 0
        Base seed, the same on every rank.
    drop_last : bool, default False
        Drop the tail so that blocks do not overlap.
    """

    def __init__(
        self,
        dataset: Dataset,
        num_replicas: int | None = None,
        rank: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=drop_last)

    def __iter__(self) -> Iterator[int]:
        if not self.shuffle:
            return super().__iter__()
        n_total = len(self.dataset)
        n = self.num_samples
        if n > n_total:
            # fewer items than ranks: every rank cycles through the whole dataset
            block = torch.arange(n) % max(n_total, 1)
        else:
            start = min(self.rank * n, n_total - n)
            block = torch.arange(start, start + n)
        generator = torch.Generator()
        generator.manual_seed(self.seed + self.epoch)
        return iter(block[torch.randperm(n, generator=generator)].tolist())

    def __len__(self) -> int:
        return self.num_samples
