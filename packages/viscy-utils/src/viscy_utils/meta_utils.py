"""Compute normalisation statistics of an HCS OME-Zarr plate and write them into its attributes.

The on-disk format is defined in :mod:`viscy_data.norm_meta`; this module only samples pixels and
calls :func:`~viscy_data.norm_meta.compute_statistics` and :func:`~viscy_data.norm_meta.merge_norm_meta`.

Interrupt safety: every statistic of every group is computed before anything is written, so an
exception, Ctrl-C or kill while sampling leaves the store untouched. Writing marks the plate
``normalization_pending`` first (one attribute write), then replaces each FOV's ``normalization``
attribute, and finally stores the plate-level statistics and removes the mark in a single write of the
plate's attributes (zarr writes each attribute file atomically). A plate killed while writing keeps the
mark: readers refuse it (:func:`viscy_data.norm_meta.check_norm_meta_complete`) and a re-run rewrites
every group and removes the mark.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from viscy_data.norm_meta import NORM_META_KEY, NORM_META_PENDING_KEY, compute_statistics, merge_norm_meta

__all__ = ["generate_normalization_metadata", "write_meta_field"]

_logger = logging.getLogger(__name__)


def write_meta_field(position: Any, metadata: dict, field_name: str, subfield_name: str) -> None:
    """Merge ``metadata`` into ``position.zattrs[field_name][subfield_name]``.

    Missing levels are created, keys of ``metadata`` overwrite stored keys, other stored keys are
    kept. The attribute is written in one assignment.

    Parameters
    ----------
    position : iohub.ngff.Position or iohub.ngff.Plate
        Any node with writable ``zattrs``.
    metadata : dict
        Values to merge.
    field_name : str
        Top-level attribute key, e.g. ``"normalization"``.
    subfield_name : str
        Second-level key, e.g. a channel name.
    """
    field = dict(position.zattrs.get(field_name, {}))
    subfield = dict(field.get(subfield_name, {}))
    subfield.update(metadata)
    field[subfield_name] = subfield
    position.zattrs[field_name] = field


def _resolve_channels(channel_ids: int | Sequence[int], channel_names: Sequence[str], store: Path) -> list[int]:
    """Turn ``-1`` / an int / a list of ints into validated channel indices."""
    if isinstance(channel_ids, (int, np.integer)):
        channel_ids = list(range(len(channel_names))) if channel_ids == -1 else [int(channel_ids)]
    channel_ids = [int(c) for c in channel_ids]
    bad = [c for c in channel_ids if not 0 <= c < len(channel_names)]
    if bad:
        raise ValueError(f"channel index {bad} out of range for {store} with channels {list(channel_names)}")
    if not channel_ids:
        raise ValueError(f"no channel selected in {store}")
    return channel_ids


def _sample_fov(position: Any, channel_ids: list[int], grid_spacing: int) -> np.ndarray:
    """Read the (T, C_selected, Z, Y/g, X/g) grid sample of one FOV in one read per channel."""
    array = position["0"]
    return np.stack([np.asarray(array[:, c, :, ::grid_spacing, ::grid_spacing]) for c in channel_ids], axis=1)


def _fov_statistics(sample: np.ndarray) -> list[dict[str, float]]:
    """FOV-level statistics of every channel of one sample (T, C, Z, Y, X)."""
    return [compute_statistics(sample[:, i]) for i in range(sample.shape[1])]


def generate_normalization_metadata(
    zarr_dir: str | Path,
    num_workers: int = 4,
    channel_ids: int | Sequence[int] = -1,
    grid_spacing: int = 32,
) -> None:
    """Compute dataset, FOV and timepoint statistics of an HCS plate and store them in its attributes.

    Each FOV is read once, on a YX grid of spacing ``grid_spacing`` (all timepoints and Z slices).
    Statistics are those of :func:`viscy_data.norm_meta.compute_statistics` on exactly those pixels:

    - ``fov_statistics``: the FOV's own sample;
    - ``dataset_statistics``: all FOVs' samples together (written to the plate and every FOV);
    - ``timepoint_statistics[str(t)]``: all FOVs' samples at timepoint ``t`` (plate and every FOV).

    Existing statistics of other channels and other levels are kept; the levels computed here
    replace the stored ones of the same channel.

    Parameters
    ----------
    zarr_dir : str or pathlib.Path
        HCS OME-Zarr plate, opened in ``r+`` mode.
    num_workers : int
        Threads reading and summarising FOVs in parallel; ``<= 0`` uses every available core.
    channel_ids : int or sequence of int
        Channel indices; ``-1`` for all channels.
    grid_spacing : int
        YX sub-sampling step (1 reads every pixel).

    Raises
    ------
    ValueError
        If a channel index is out of range, ``grid_spacing`` is not positive or the plate has no FOV.
    """
    from iohub import open_ome_zarr
    from tqdm.auto import tqdm

    zarr_dir = Path(zarr_dir)
    if grid_spacing < 1:
        raise ValueError(f"grid_spacing must be a positive integer, got {grid_spacing}")
    if num_workers <= 0:
        num_workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    with open_ome_zarr(zarr_dir, layout="hcs", mode="r+") as plate:
        channel_names = list(plate.channel_names)
        channels = _resolve_channels(channel_ids, channel_names, zarr_dir)
        positions = list(plate.positions())
        if not positions:
            raise ValueError(f"no FOV found in the plate {zarr_dir}")
        names = [name for name, _ in positions]

        def work(item: tuple[str, Any]) -> tuple[np.ndarray, list[dict[str, float]]]:
            sample = _sample_fov(item[1], channels, grid_spacing)
            return sample, _fov_statistics(sample)

        # Compute everything before writing anything (interrupt safety).
        with ThreadPoolExecutor(max_workers=max(1, num_workers)) as pool:
            results = list(tqdm(pool.map(work, positions), total=len(positions), desc="Sampling FOVs", unit="FOV"))
        samples = [sample for sample, _ in results]
        n_timepoints = max(sample.shape[0] for sample in samples)
        _logger.info("Sampled %d FOVs, %d timepoint(s), channels %s", len(samples), n_timepoints, channels)

        plate_update: dict[str, dict[str, Any]] = {}
        for i, c in enumerate(tqdm(channels, desc="Dataset statistics", unit="channel")):
            per_channel = [sample[:, i] for sample in samples]
            dataset_stats = compute_statistics(np.concatenate([s.ravel() for s in per_channel]))
            timepoint_stats = {
                str(t): compute_statistics(np.concatenate([s[t].ravel() for s in per_channel if s.shape[0] > t]))
                for t in range(n_timepoints)
            }
            plate_update[channel_names[c]] = {
                "dataset_statistics": dataset_stats,
                "timepoint_statistics": timepoint_stats,
            }
        position_updates = {
            name: {
                channel_names[c]: {
                    "dataset_statistics": plate_update[channel_names[c]]["dataset_statistics"],
                    "fov_statistics": fov_stats[i],
                    "timepoint_statistics": plate_update[channel_names[c]]["timepoint_statistics"],
                }
                for i, c in enumerate(channels)
            }
            for name, (_, fov_stats) in zip(names, results)
        }

        # Write: mark the plate, one assignment per FOV, then plate statistics and unmarking in one write.
        plate.zattrs[NORM_META_PENDING_KEY] = {"channels": [channel_names[c] for c in channels]}
        for name, position in tqdm(positions, desc="Writing statistics", unit="FOV"):
            position.zattrs[NORM_META_KEY] = merge_norm_meta(position.zattrs.get(NORM_META_KEY), position_updates[name])
        attrs = dict(plate.zattrs)
        attrs[NORM_META_KEY] = merge_norm_meta(attrs.get(NORM_META_KEY), plate_update)
        attrs.pop(NORM_META_PENDING_KEY)
        plate.zattrs.put(attrs)
