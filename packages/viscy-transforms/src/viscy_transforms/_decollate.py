"""Split a batched tensor into a list of samples."""

from __future__ import annotations

import torch
from monai.data import decollate_batch
from monai.transforms import Transform

__all__ = ["Decollate"]


class Decollate(Transform):
    """Turn a ``(B, ...)`` tensor into a list of ``B`` tensors with MONAI ``decollate_batch``.

    Parameters
    ----------
    detach : bool
        Detach the tensors from the autograd graph.
    pad_batch : bool
        Pad shorter sequences with ``fill_value`` when decollating nested data.
    fill_value : object
        Padding value for ``pad_batch``.
    """

    def __init__(self, detach: bool = True, pad_batch: bool = True, fill_value=None) -> None:
        self.detach = detach
        self.pad_batch = pad_batch
        self.fill_value = fill_value

    def __call__(self, data: torch.Tensor) -> list[torch.Tensor]:
        return decollate_batch(data, detach=self.detach, pad=self.pad_batch, fill_value=self.fill_value)
