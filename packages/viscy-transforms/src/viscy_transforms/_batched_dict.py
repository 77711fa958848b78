"""Base class of dictionary transforms that apply one batched random transform to several keys."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import torch
from monai.transforms import MapTransform

from viscy_transforms._checks import check_same_batch
from viscy_transforms._random import BatchRandomizable

__all__ = ["BatchedRandDictTransform"]


class BatchedRandDictTransform(MapTransform, BatchRandomizable):
    """Apply ``self.transform`` (a batched random array transform) to every key with one shared draw.

    Parameters are drawn once per call from the first transform key present in the dict (so other entries
    such as ``index`` or ``norm_meta`` never matter), then re-applied to every key: paired source and target
    receive the same per-sample decisions and parameters.
    """

    def __init__(self, keys: Sequence[str] | str, transform: BatchRandomizable, allow_missing_keys: bool = False):
        MapTransform.__init__(self, keys, allow_missing_keys)
        BatchRandomizable.__init__(self, prob=transform.prob)
        self.transform = transform

    def set_random_state(self, seed=None, state=None):
        """Seed this transform and the wrapped batched transform."""
        super().set_random_state(seed=seed, state=state)
        self.transform.set_random_state(seed=seed, state=state)
        return self

    def randomize(self, data: torch.Tensor) -> None:
        """Draw the per-sample parameters for ``data`` (the reference tensor of the batch)."""
        self.transform.randomize(data)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        keys = list(self.key_iterator(d))
        if not keys:
            return d
        check_same_batch(d, keys, type(self).__name__)
        self.randomize(d[keys[0]])
        for key in keys:
            d[key] = self.transform(d[key], randomize=False)
        return d
