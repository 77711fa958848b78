"""Opening HCS plates and resolving channels, with errors that name the culprit."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from iohub.ngff import Plate, Position, open_ome_zarr

from viscy_data.errors import ImageReadError

__all__ = [
    "WORKER_IMPLEMENTATION",
    "LazyPositions",
    "channel_indices",
    "fov_name",
    "open_plate",
    "position_read_error",
    "store_root",
]

#: iohub implementation used to reopen plates in worker processes (fork-safe, see LazyPositions)
WORKER_IMPLEMENTATION = "zarr-python"


def open_plate(path: str | Path, mode: str = "r") -> Plate:
    """Open an HCS OME-Zarr plate.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If ``path`` is not an HCS plate (e.g. a single FOV or a plain zarr group).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"OME-Zarr store not found: {path}")
    try:
        plate = open_ome_zarr(path, layout="hcs", mode=mode)
    except Exception as err:  # iohub raises several types for foreign layouts
        raise ValueError(f"{path} is not an HCS OME-Zarr plate (row/col/fov layout): {err}") from err
    if not isinstance(plate, Plate):
        raise ValueError(f"{path} is not an HCS OME-Zarr plate")
    return plate


def fov_name(position: Position) -> str:
    """FOV name as used in filters and CSVs, e.g. ``"A/1/0"``."""
    return position.zgroup.name.strip("/")


def store_root(position: Position) -> Path:
    """Local directory of the store holding ``position``."""
    return Path(str(position.zgroup.store.root))


def position_read_error(
    error: BaseException, position: Position, array_key: str, t: int, request: dict
) -> ImageReadError:
    """Build the :class:`~viscy_data.errors.ImageReadError` of a failed zarr read of one FOV's array.

    For the whole-volume and sliding-window datasets, which read with iohub/zarr in worker processes
    (patches around cells are read, and their errors named, by :mod:`viscy_data.patch_reader`).
    """
    array = position[array_key]
    return ImageReadError.describe(
        error,
        path=store_root(position) / array.path,
        fov=fov_name(position),
        timepoint=t,
        array=array_key,
        request=request,
        shape=array.shape,
    )


def channel_indices(position: Position, channel_names: Sequence[str]) -> list[int]:
    """Return the indices of ``channel_names`` in the position's channels.

    Raises
    ------
    ValueError
        Naming the unknown channel, the FOV and the available channel names.
    """
    available = list(position.channel_names)
    missing = [name for name in channel_names if name not in available]
    if missing:
        raise ValueError(
            f"channel(s) {missing} not found in FOV '{fov_name(position)}'; available channels: {available}"
        )
    return [available.index(name) for name in channel_names]


class LazyPositions:
    """FOVs of one plate, reopened lazily in every process that reads them.

    Open zarr stores are not worth pickling to workers and must not be shared across processes. This
    keeps only the store path and FOV names and opens the plate on first access in each process.

    In any process other than the one that created it (forked or spawned DataLoader workers) the
    plate is reopened with iohub's pure-Python ``"zarr-python"`` codec pipeline: iohub's default
    ``"zarrs-python"`` pipeline decodes on a global Rust (rayon) thread pool that a forked child
    inherits without its threads, so the first multi-chunk read in a worker waits forever. zarr's
    own event-loop thread is reset after a fork by zarr itself; parallelism in workers comes from
    the processes, so the Python pipeline costs little there.

    Parameters
    ----------
    positions : sequence of iohub Position
        FOVs, all from the same plate.
    """

    def __init__(self, positions: Sequence[Position]) -> None:
        self.names = [fov_name(p) for p in positions]
        roots = {store_root(p) for p in positions}
        if len(roots) > 1:
            raise ValueError(f"FOVs come from several stores {sorted(map(str, roots))}; use one dataset per plate")
        self.root = roots.pop() if roots else None
        self._pid = os.getpid()
        self._positions: list[Position] | None = list(positions)

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> Position:
        if self._positions is None or self._pid != os.getpid():
            plate = open_ome_zarr(self.root, layout="hcs", mode="r", implementation=WORKER_IMPLEMENTATION)
            self._positions = [plate[name] for name in self.names]
            self._pid = os.getpid()
        return self._positions[index]

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_positions"] = None
        return state
