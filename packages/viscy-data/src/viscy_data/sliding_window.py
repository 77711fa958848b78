"""Sliding Z-window datasets over HCS OME-Zarr plates (virtual staining), used by ``HCSDataModule``."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from iohub.ngff import Position
from monai.data.meta_tensor import MetaTensor
from torch import Tensor
from torch.utils.data import Dataset

from viscy_data._io import LazyPositions, channel_indices, fov_name
from viscy_data._typing import ChannelMap, DictTransform, Sample
from viscy_data._utils import _ensure_channel_list, _read_norm_meta
from viscy_data.norm_meta import select_timepoint

__all__ = ["MaskTestDataset", "SlidingWindowDataset"]


def _plain(tensor: Tensor) -> Tensor:
    """Drop MONAI metadata so batches hold plain tensors."""
    return tensor.as_tensor() if isinstance(tensor, MetaTensor) else tensor


class SlidingWindowDataset(Dataset):
    """Z windows of every timepoint of every FOV, as virtual-staining samples.

    Parameters
    ----------
    positions : sequence of iohub Position
        FOVs to read (windows are enumerated FOV by FOV, then time, then Z start).
    channels : ChannelMap
        ``source`` and optional ``target`` channel names.
    z_window_size : int
        Number of Z slices per sample.
    array_key : str, default "0"
        Image array of each FOV (multiscale level).
    transform : callable, optional
        MONAI dictionary transform applied to ``{channel: (1, Z, Y, X)}`` (may return a list of
        dicts, e.g. multi-sample crops).
    load_normalization_metadata : bool, default True
        Attach each FOV's ``norm_meta`` (``timepoint_statistics`` selected for the sample's timepoint).

    Raises
    ------
    IndexError
        If a FOV has fewer than ``z_window_size`` slices.
    ValueError
        If a channel is not in the plate.
    """

    def __init__(
        self,
        positions: Sequence[Position],
        channels: ChannelMap,
        z_window_size: int,
        array_key: str = "0",
        transform: DictTransform | None = None,
        load_normalization_metadata: bool = True,
    ) -> None:
        super().__init__()
        if not positions:
            raise ValueError("SlidingWindowDataset needs at least one FOV")
        positions = list(positions)
        self.positions = LazyPositions(positions)
        self.channels = {k: _ensure_channel_list(v) for k, v in channels.items()}
        self.source_ch = self.channels["source"]
        self.target_ch = self.channels.get("target", [])
        self.z_window_size = int(z_window_size)
        self.array_key = array_key
        self.transform = transform
        self.load_normalization_metadata = load_normalization_metadata
        self.source_ch_idx = channel_indices(positions[0], self.source_ch)
        self.target_ch_idx = channel_indices(positions[0], self.target_ch)
        counts = []
        for position in positions:
            image = position[array_key]
            if image.slices < self.z_window_size:
                raise IndexError(
                    f"FOV '{fov_name(position)}' has {image.slices} Z slices, fewer than z_window_size={z_window_size}"
                )
            counts.append(image.frames * (image.slices - self.z_window_size + 1))
        # window offsets: bisect instead of sorting per item
        self._ends = np.cumsum(counts)
        # statistics are read once per FOV, not once per sample
        self._norm_meta = [_read_norm_meta(p) if load_normalization_metadata else None for p in positions]
        self._n_z = [p[array_key].slices - self.z_window_size + 1 for p in positions]
        self._array_names = ["/" + p[array_key].path.strip("/") for p in positions]

    def __len__(self) -> int:
        return int(self._ends[-1])

    def _find_window(self, index: int) -> tuple[int, int, int]:
        """FOV ordinal, timepoint and Z start of window ``index``."""
        if not 0 <= index < len(self):
            raise IndexError(f"window {index} out of range for {len(self)} windows")
        fov = int(np.searchsorted(self._ends, index, side="right"))
        local = index - (int(self._ends[fov - 1]) if fov else 0)
        return fov, local // self._n_z[fov], local % self._n_z[fov]

    def _read(self, fov: int, t: int, z: int) -> dict[str, Tensor]:
        """Read all channels of one window as ``{name: (1, Z, Y, X)}`` float32."""
        names = self.source_ch + self.target_ch
        idx = self.source_ch_idx + self.target_ch_idx
        data = self.positions[fov][self.array_key].oindex[t, idx, z : z + self.z_window_size]
        data = torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32))
        return {name: data[i : i + 1] for i, name in enumerate(names)}

    def _sample(self, fov: int, t: int, z: int) -> tuple[dict[str, Any], tuple[str, int, int]]:
        sample: dict[str, Any] = self._read(fov, t, z)
        if self.target_ch:
            sample["weight"] = sample[self.target_ch[0]]
        norm_meta = select_timepoint(self._norm_meta[fov], t)
        if norm_meta is not None:
            sample["norm_meta"] = norm_meta
        return sample, (self._array_names[fov], t, z)

    def _stack(self, d: dict[str, Any], names: list[str]) -> Tensor:
        return torch.cat([_plain(d[name]) for name in names], dim=0)

    def _output(self, transformed: dict | list[dict], index: tuple, norm_meta: Any) -> Sample:
        """Pack transformed channel dicts into ``source``/``target`` (lists for multi-sample transforms)."""
        out: dict[str, Any] = {"index": index}
        if isinstance(transformed, list):
            out["source"] = [self._stack(d, self.source_ch) for d in transformed]
            if self.target_ch:
                out["target"] = [self._stack(d, self.target_ch) for d in transformed]
        else:
            out["source"] = self._stack(transformed, self.source_ch)
            if self.target_ch:
                out["target"] = self._stack(transformed, self.target_ch)
        if norm_meta is not None:
            out["norm_meta"] = norm_meta
        return out

    def __getitem__(self, index: int) -> Sample:
        fov, t, z = self._find_window(index)
        sample, stack_index = self._sample(fov, t, z)
        norm_meta = sample.get("norm_meta")
        transformed = self.transform(sample) if self.transform is not None else sample
        return self._output(transformed, stack_index, norm_meta)


class MaskTestDataset(SlidingWindowDataset):
    """:class:`SlidingWindowDataset` that adds ground-truth masks where available.

    Masks are PNGs named ``*cp_masks.png`` with ``_p<3 digits>`` (the FOV's ordinal among
    ``positions``, so FOVs of different wells never collide) and ``_z<digits>`` (the slice); time is
    taken as 0. A window whose (FOV, t, z_start + z_window_size // 2) has a mask gets ``"labels"``,
    an int16 ``(Y, X)`` tensor. Intended for batch size 1.

    Parameters
    ----------
    positions, channels, z_window_size, transform
        As for :class:`SlidingWindowDataset`.
    ground_truth_masks : str or pathlib.Path, optional
        Directory of mask PNGs.
    """

    def __init__(
        self,
        positions: Sequence[Position],
        channels: ChannelMap,
        z_window_size: int,
        transform: DictTransform | None = None,
        ground_truth_masks: str | Path | None = None,
    ) -> None:
        super().__init__(positions, channels, z_window_size, transform=transform)
        self.masks: dict[tuple[int, int, int], Path] = {}
        if ground_truth_masks is not None:
            mask_dir = Path(ground_truth_masks)
            if not mask_dir.is_dir():
                raise NotADirectoryError(f"ground-truth mask directory not found: {mask_dir}")
            for path in sorted(mask_dir.glob("*cp_masks.png")):
                p = re.search(r"_p(\d{3})", path.name)
                z = re.search(r"_z(\d+)", path.name)
                if p is None or z is None:
                    raise ValueError(f"mask file name {path.name} lacks '_p<3 digits>' or '_z<digits>'")
                self.masks[(int(p.group(1)), 0, int(z.group(1)))] = path

    def __getitem__(self, index: int) -> Sample:
        out = super().__getitem__(index)
        fov, t, z = self._find_window(index)
        mask = self.masks.get((fov, t, z + self.z_window_size // 2))
        if mask is not None:
            import imageio.v3 as iio

            out["labels"] = torch.from_numpy(iio.imread(mask).astype(np.int16))
        return out
