"""Normalisation by precomputed per-FOV / per-dataset statistics carried in ``sample["norm_meta"]``."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Literal

import torch
from monai.transforms import MapTransform

__all__ = ["NormalizeSampled"]


class NormalizeSampled(MapTransform):
    """Normalise channels with statistics from the sample's ``norm_meta``.

    For every key: ``(x - norm_meta[key][level][subtrahend]) / (norm_meta[key][level][divisor] + 1e-8)``.
    Statistics may be 0-d (one sample) or ``(B,)`` (a collated batch, one value per sample); they broadcast
    over the trailing axes of ``x`` and are moved to its device.

    Parameters
    ----------
    keys : str or sequence of str
        Channel keys to normalise; each must be a channel name in ``norm_meta``.
    level : str
        Statistics level, e.g. ``"fov_statistics"`` or ``"dataset_statistics"``; any level key present in
        ``norm_meta`` works (e.g. ``"timepoint_statistics"`` once flattened to the sample's time point).
    subtrahend : str
        Statistic subtracted (e.g. ``"mean"`` or ``"median"``).
    divisor : str
        Statistic divided by (e.g. ``"std"`` or ``"iqr"``).
    remove_meta : bool
        Delete ``"norm_meta"`` from the returned dict.
    """

    def __init__(
        self,
        keys: Sequence[str] | str,
        level: Literal["fov_statistics", "dataset_statistics"] | str,
        subtrahend: str = "mean",
        divisor: str = "std",
        remove_meta: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys=False)
        self.level = level
        self.subtrahend = subtrahend
        self.divisor = divisor
        self.remove_meta = remove_meta

    def _statistic(self, norm_meta: Mapping, key: Hashable, name: str) -> torch.Tensor:
        if key not in norm_meta:
            raise KeyError(f"norm_meta has no channel {key!r} (channels: {sorted(map(str, norm_meta))}).")
        levels = norm_meta[key]
        if self.level not in levels:
            raise KeyError(
                f"norm_meta[{key!r}] has no level {self.level!r} (channel {key!r}; levels: {sorted(map(str, levels))})."
            )
        stats = levels[self.level]
        if name not in stats:
            raise KeyError(
                f"norm_meta[{key!r}][{self.level!r}] has no statistic {name!r} "
                f"(channel {key!r}, level {self.level!r}; statistics: {sorted(map(str, stats))})."
            )
        return torch.as_tensor(stats[name])

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        if "norm_meta" not in d:
            raise KeyError(f"NormalizeSampled: the sample has no 'norm_meta' (keys: {sorted(map(str, d))}).")
        norm_meta = d["norm_meta"]
        if norm_meta is None:
            raise TypeError("NormalizeSampled: sample['norm_meta'] is None; this FOV has no normalization metadata.")
        for key in self.key_iterator(d):
            x = d[key]
            shift = self._statistic(norm_meta, key, self.subtrahend)
            scale = self._statistic(norm_meta, key, self.divisor)
            if shift.ndim > x.ndim:
                raise ValueError(
                    f"NormalizeSampled: statistics of {key!r} have shape {tuple(shift.shape)}, "
                    f"more dimensions than the data {tuple(x.shape)}."
                )
            trailing = (1,) * (x.ndim - shift.ndim)
            shift = shift.reshape(*shift.shape, *trailing).to(x.device)
            scale = scale.reshape(*scale.shape, *trailing).to(x.device)
            d[key] = (x - shift) / (scale + 1e-8)
        if self.remove_meta:
            del d["norm_meta"]
        return d
