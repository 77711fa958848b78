"""Concatenate named single-channel entries into multi-channel ``source`` / ``target`` tensors."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import torch
from monai.transforms import MapTransform

__all__ = ["StackChannelsd"]


class StackChannelsd(MapTransform):
    """Stack channel entries of a sample into output keys.

    ``channel_map`` maps each output key to the input channel keys to concatenate along the channel axis
    (dim 0 of per-sample ``(C, Z, Y, X)`` tensors, dim 1 of batched ``(B, C, Z, Y, X)`` tensors). The output
    dict holds only the output keys. A single channel name may be given as a plain string. As a MONAI
    ``MapTransform`` its ``keys`` are all the input channel keys (``allow_missing_keys`` is False).

    Parameters
    ----------
    channel_map : dict
        Output key -> channel name or sequence of channel names, e.g.
        ``{"source": ["Phase3D"], "target": ["Nuclei", "Membrane"]}``.
    """

    def __init__(self, channel_map: Mapping[str, str | Sequence[str]]) -> None:
        self.channel_map = {
            out: [channels] if isinstance(channels, str) else list(channels) for out, channels in channel_map.items()
        }
        for out, channels in self.channel_map.items():
            if not channels:
                raise ValueError(f"channel_map[{out!r}] lists no channels.")
        super().__init__([c for channels in self.channel_map.values() for c in channels], allow_missing_keys=False)

    def __call__(self, sample: Mapping[Hashable, torch.Tensor]) -> dict[str, torch.Tensor]:
        results = {}
        for out, channels in self.channel_map.items():
            missing = [c for c in channels if c not in sample]
            if missing:
                raise KeyError(f"StackChannelsd: channels {missing} for {out!r} not in sample (keys: {list(sample)}).")
            tensors = [sample[c] for c in channels]
            dim = 1 if tensors[0].ndim == 5 else 0
            results[out] = torch.cat(tensors, dim=dim)
        return results
