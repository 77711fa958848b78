"""Randomly blank whole channels of batched images (a training-time augmentation)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["ChannelDropout"]


class ChannelDropout(nn.Module):
    """Zero listed channels of ``(B, C, ...)`` tensors, independently per sample.

    Parameters
    ----------
    channels : list[int]
        Channel indices that may be dropped; each is dropped independently.
    p : float
        Probability of zeroing a listed channel of one sample.

    Notes
    -----
    Acts only in training mode (``module.train()``) with ``p > 0``; then it returns a new tensor
    and never modifies its input. In eval mode or with ``p == 0`` the input itself is returned.
    Random draws use the torch generator of the input's device.
    """

    def __init__(self, channels: Sequence[int], p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"ChannelDropout probability p must be in [0, 1], got {p}")
        self.channels = [int(c) for c in channels]
        self.p = float(p)

    def forward(self, x: Tensor) -> Tensor:
        """Return ``x`` with the listed channels zeroed per sample with probability ``p``."""
        if not self.training or self.p == 0.0 or not self.channels:
            return x
        n_channels = x.shape[1]
        bad = [c for c in self.channels if not -n_channels <= c < n_channels]
        if bad:
            raise IndexError(f"ChannelDropout channels {bad} out of range for {n_channels} input channels")
        idx = torch.tensor(self.channels, device=x.device)
        drop = torch.rand(x.shape[0], len(self.channels), device=x.device) < self.p
        keep = torch.ones(x.shape[:2], dtype=x.dtype, device=x.device)
        keep[:, idx] = (~drop).to(x.dtype)
        return x * keep.reshape(*x.shape[:2], *([1] * (x.ndim - 2)))
