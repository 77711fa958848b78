"""Pre-normalise selected channels of an HCS plate into a stack of float16 ``.npy`` files.

The output directory is what ``dask.array.to_npy_stack`` writes for an (N_fov, T, C, Z, Y, X) array
chunked one FOV per block: ``<i>.npy`` files shaped (1, T, C, Z, Y, X) plus dask's ``info`` file. Read
it with ``dask.array.from_npy_stack`` or ``numpy.load`` per FOV.
"""

from __future__ import annotations

import logging
import os
import pickle
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

__all__ = ["precompute_array"]

_logger = logging.getLogger(__name__)

#: lower bound of a divisor, so that flat channels do not blow up
_EPS = 1e-6


def _validate(
    channel_names: Sequence[str],
    subtrahends: Sequence[Literal["mean"] | float],
    divisors: Sequence[Literal["std"] | tuple[float, float]],
) -> None:
    """Check that there is one valid (subtrahend, divisor) pair per channel."""
    if not (len(channel_names) == len(subtrahends) == len(divisors)):
        raise ValueError(
            f"need one subtrahend and one divisor per channel: got {len(channel_names)} channel(s) "
            f"{list(channel_names)}, {len(subtrahends)} subtrahend(s) and {len(divisors)} divisor(s)"
        )
    for name, sub, div in zip(channel_names, subtrahends, divisors):
        if (sub == "mean") != (div == "std"):
            raise ValueError(
                f"channel '{name}': subtrahend 'mean' goes with divisor 'std' (z-score); otherwise use a percentile "
                f"subtrahend with a (low, high) percentile divisor, got subtrahend={sub!r}, divisor={div!r}"
            )
        if sub == "mean":
            continue
        if isinstance(sub, str) or not 0 <= float(sub) <= 100:
            raise ValueError(f"channel '{name}': subtrahend must be 'mean' or a percentile in [0, 100], got {sub!r}")
        if isinstance(div, str) or len(div) != 2 or not 0 <= float(div[0]) < float(div[1]) <= 100:
            raise ValueError(
                f"channel '{name}': divisor must be 'std' or (low, high) percentiles with 0 <= low < high <= 100, "
                f"got {div!r}"
            )


def _selected_fovs(
    plate: Any, include_wells: Sequence[str] | None, exclude_fovs: Sequence[str] | None
) -> Iterator[tuple[str, list[tuple[str, Any]]]]:
    """Yield ``(well name, [(fov name, position), ...])`` of the selected wells and FOVs, in plate order."""
    include = None if include_wells is None else {w.strip("/") for w in include_wells}
    exclude = {f.strip("/") for f in exclude_fovs or []}
    for well_name, well in plate.wells():
        if include is not None and well_name not in include:
            continue
        fovs = [(f"{well_name}/{name}", pos) for name, pos in well.positions()]
        fovs = [(name, pos) for name, pos in fovs if name not in exclude]
        if fovs:
            yield well_name, fovs


def _normalise_channel(values: np.ndarray, subtrahend: str | float, divisor: str | tuple[float, float]) -> None:
    """Normalise one channel of a well stack in place, jointly over all its FOVs."""
    if subtrahend == "mean":
        shift, scale = np.nanmean(values), np.nanstd(values)
    else:
        shift, low, high = np.nanpercentile(values, [float(subtrahend), float(divisor[0]), float(divisor[1])])
        scale = high - low
    values -= shift
    values /= max(float(scale), _EPS)


def precompute_array(
    data_path: str | Path,
    output_path: str | Path,
    channel_names: Sequence[str],
    subtrahends: Sequence[Literal["mean"] | float],
    divisors: Sequence[Literal["std"] | tuple[float, float]],
    image_array_key: str = "0",
    include_wells: Sequence[str] | None = None,
    exclude_fovs: Sequence[str] | None = None,
) -> None:
    """Normalise channels of an HCS plate per well and save them as a float16 ``.npy`` stack.

    For each selected well, each channel is normalised jointly over all the well's FOVs:

    - ``subtrahend="mean"`` with ``divisor="std"``: ``(x - mean) / std``;
    - ``subtrahend=p`` with ``divisor=(lo, hi)``: ``(x - P_p) / (P_hi - P_lo)`` with percentiles in 0-100.

    Divisors are bounded below by 1e-6 (a constant channel becomes zeros, not infinities).

    Parameters
    ----------
    data_path : str or pathlib.Path
        HCS OME-Zarr plate (read only).
    output_path : str or pathlib.Path
        Directory to create; it receives ``0.npy, 1.npy, ...`` (one per FOV, (1, T, C, Z, Y, X) float16,
        in plate order) and dask's ``info`` file. It is written to a temporary sibling and renamed
        when complete, so it is either complete or absent.
    channel_names : sequence of str
        Channels to keep, in output order.
    subtrahends : sequence of ``"mean"`` or float
        One per channel.
    divisors : sequence of ``"std"`` or (float, float)
        One per channel.
    image_array_key : str
        Array of each FOV to read.
    include_wells : sequence of str, optional
        Wells to use (``"A/1"``); all when ``None``.
    exclude_fovs : sequence of str, optional
        FOVs to skip (``"A/1/0"``).

    Raises
    ------
    ValueError
        On mismatched or invalid normalisation arguments, unknown channels, FOVs of different shapes or
        an empty selection.
    FileExistsError
        If ``output_path`` already exists.
    """
    from iohub import open_ome_zarr
    from tqdm.auto import tqdm

    data_path, output_path = Path(data_path), Path(output_path)
    channel_names = list(channel_names)
    _validate(channel_names, subtrahends, divisors)
    if output_path.exists():
        raise FileExistsError(f"Output path {output_path} already exists.")
    output_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output_path.name}.", dir=output_path.parent))
    try:
        with open_ome_zarr(data_path, layout="hcs", mode="r") as plate:
            missing = [name for name in channel_names if name not in plate.channel_names]
            if missing:
                raise ValueError(f"channel(s) {missing} not in {data_path}; available: {list(plate.channel_names)}")
            channel_indices = [plate.channel_names.index(name) for name in channel_names]
            wells = list(_selected_fovs(plate, include_wells, exclude_fovs))
            if not wells:
                raise ValueError(
                    f"no FOV of {data_path} matches include_wells={include_wells} and exclude_fovs={exclude_fovs}"
                )
            n_fovs = sum(len(fovs) for _, fovs in wells)
            fov_shape = None
            written = 0
            with tqdm(total=n_fovs, desc="Precomputing", unit="FOV") as progress:
                for _, fovs in wells:
                    stack = []
                    for name, position in fovs:
                        array = position[image_array_key]
                        shape = (array.shape[0], len(channel_indices), *array.shape[2:])
                        if fov_shape is None:
                            fov_shape = shape
                        elif shape != fov_shape:
                            raise ValueError(f"FOV {name} has shape {shape}, expected {fov_shape} like the others")
                        stack.append(np.stack([np.asarray(array[:, c], dtype=np.float32) for c in channel_indices], 1))
                    well_stack = np.stack(stack)  # (F, T, C, Z, Y, X)
                    for i, (sub, div) in enumerate(zip(subtrahends, divisors)):
                        _normalise_channel(well_stack[:, :, i], sub, div)
                    for fov in well_stack.astype(np.float16):
                        # dask keeps the stacking axis in each block: (1, T, C, Z, Y, X)
                        np.save(tmp / f"{written}.npy", fov[np.newaxis])
                        written += 1
                        progress.update()
        chunks = ((1,) * written, *((size,) for size in fov_shape))
        with open(tmp / "info", "wb") as f:
            pickle.dump({"chunks": chunks, "dtype": np.dtype(np.float16), "axis": 0}, f)
        os.replace(tmp, output_path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _logger.info("Precomputed %d FOV(s) into %s", written, output_path)
