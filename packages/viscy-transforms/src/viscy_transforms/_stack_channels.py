"""Concatenate named single-channel entries into multi-channel ``source`` / ``target`` tensors."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import torch
from monai.transforms import Transform

__all__ = ["StackChannelsd"]


class StackChannelsd(Transform):
    """Stack channel entries of a sample into output keys.

    ``channel_map`` maps each output key to the input channel keys to concatenate along the channel axis
    (dim 0 of per-sample ``(C, Z, Y, X)`` tensors, dim 1 of batched ``(B, C, Z, Y, X)`` tensors). The output
    dict holds only the output keys. A single channel name may be given as a plain string.

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
