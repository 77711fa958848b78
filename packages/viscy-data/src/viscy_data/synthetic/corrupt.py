"""Damage a written plate on purpose, for tests of error handling."""

from __future__ import annotations

from pathlib import Path

__all__ = ["corrupt_timepoint"]


def corrupt_timepoint(store_path: str | Path, fov_name: str, t: int, array: str = "0") -> list[Path]:
    """Truncate the chunk files of one timepoint of one FOV, as an interrupted copy would leave them.

    For tests of error handling: any read of that timepoint then fails in the codec (e.g. blosc) with
    the data on disk, not with a missing file.

    Parameters
    ----------
    store_path : str or pathlib.Path
        The plate.
    fov_name : str
        FOV, e.g. ``"A/1/0"``.
    t : int
        Timepoint whose chunks are truncated (chunks of one timepoint, iohub's default chunking).
    array : str, default "0"
        Image array of the FOV.

    Returns
    -------
    list of pathlib.Path
        The truncated chunk files.

    Raises
    ------
    FileNotFoundError
        If the timepoint has no chunk file.
    """
    array_dir = Path(store_path) / fov_name / array
    # zarr v2 with "/" separators keeps chunk <t>/<c>/<z>/<y>/<x> under <array>/<t>; zarr v3 under <array>/c/<t>
    roots = [array_dir / "c" / str(t)] if (array_dir / "zarr.json").exists() else [array_dir / str(t)]
    roots += [p for p in array_dir.glob(f"{t}.*") if p.is_file()]  # zarr v2 with "." separators
    chunks = sorted(p for root in roots for p in ([root] if root.is_file() else root.rglob("*")) if p.is_file())
    if not chunks:
        raise FileNotFoundError(f"no chunk file of timepoint {t} under {array_dir}")
    for chunk in chunks:
        data = chunk.read_bytes()
        chunk.write_bytes(data[: max(1, len(data) // 2)])
    return chunks
