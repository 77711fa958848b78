"""Errors of the data path that name what failed: file, FOV, timepoint, array and request."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["ImageReadError"]


def _format_index(value: Any) -> str:
    if isinstance(value, slice):
        start = "" if value.start is None else value.start
        stop = "" if value.stop is None else value.stop
        return f"{start}:{stop}"
    if isinstance(value, Sequence) and not isinstance(value, str):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)


class ImageReadError(RuntimeError):
    """Reading image data from a store failed.

    The message names the file, the FOV, the timepoint, the array and the region requested, and
    ends with the original error (also kept as ``__cause__``). A single message argument keeps the
    exception re-creatable in the main process when it is raised in a DataLoader worker process.

    Examples
    --------
    >>> try:
    ...     raise ValueError("Invalid blosc-compressed data")
    ... except ValueError as err:
    ...     error = ImageReadError.describe(
    ...         err, path="/data/plate.zarr/A/1/0/0", fov="A/1/0", timepoint=3, array="0",
    ...         request={"c": [0, 1], "z": slice(0, 6)}, shape=(6, 2, 3, 64, 64),
    ...     )
    >>> print(error)  # doctest: +NORMALIZE_WHITESPACE
    cannot read array '0' of FOV 'A/1/0' at timepoint 3 (c=[0, 1] z=0:6) from /data/plate.zarr/A/1/0/0
    (array shape (6, 2, 3, 64, 64)): ValueError: Invalid blosc-compressed data
    """

    @classmethod
    def describe(
        cls,
        error: BaseException,
        *,
        path: Any,
        fov: str,
        timepoint: int,
        array: str,
        request: Mapping[str, Any],
        shape: Sequence[int] | None = None,
    ) -> ImageReadError:
        """Build the error for a failed read of ``request`` (axis name -> index) of one array.

        Parameters
        ----------
        error : BaseException
            The original error; chain it with ``raise ... from error``.
        path : str or pathlib.Path
            File (array directory) that was read.
        fov : str
            FOV name, e.g. ``"A/1/0"`` (or ``"experiment:A/1/0"`` where FOVs of several plates are read).
        timepoint : int
            Timepoint index.
        array : str
            Array name in the FOV, e.g. ``"0"``.
        request : Mapping
            Index per axis (slices, lists or ints), in axis order.
        shape : sequence of int, optional
            Shape of the array, when known (tells an out-of-range request at a glance).
        """
        region = " ".join(f"{axis}={_format_index(index)}" for axis, index in request.items())
        region = f" ({region})" if region else ""
        shape_text = "" if shape is None else f" (array shape {tuple(int(s) for s in shape)})"
        return cls(
            f"cannot read array '{array}' of FOV '{fov}' at timepoint {int(timepoint)}{region} from {path}"
            f"{shape_text}: {type(error).__name__}: {error}"
        )
