"""Where patches fit in an image: ``z_range`` and patch size against an FOV's shape, centroids inside it.

Shared by :class:`~dynaclr.index.MultiExperimentIndex` (which refuses a FOV the patches do not fit) and
:mod:`dynaclr.check` (which reports every such FOV at once).
"""

from __future__ import annotations

import numpy as np

__all__ = ["geometry_problems", "inside_image"]


def inside_image(y: np.ndarray, x: np.ndarray, height, width) -> np.ndarray:
    """Whether centroids lie in the image: ``0 <= y < height`` and ``0 <= x < width`` (False for NaN)."""
    return (y >= 0) & (y < height) & (x >= 0) & (x < width)


def geometry_problems(
    image_shape: tuple[int, ...], z_range: slice, yx_patch_size: tuple[int, int]
) -> list[tuple[str, str]]:
    """Problems of reading ``z_range`` and ``yx_patch_size`` patches from one image.

    Parameters
    ----------
    image_shape : tuple[int, ...]
        ``(T, C, Z, Y, X)`` of the image array.
    z_range : slice
        Z planes read (``slice(start, stop)``).
    yx_patch_size : tuple[int, int]
        Patch height and width.

    Returns
    -------
    list[tuple[str, str]]
        ``(key, message)`` pairs, key ``"z_range"`` or ``"yx_patch_size"``; empty when the patches fit.
    """
    n_z, height, width = (int(s) for s in image_shape[-3:])
    out = []
    start = 0 if z_range.start is None else z_range.start
    stop = n_z if z_range.stop is None else z_range.stop
    if start < 0 or stop > n_z or stop <= start:
        out.append(
            (
                "z_range",
                f"z_range [{z_range.start}, {z_range.stop}] does not fit the image's {n_z} Z planes "
                f"(use 0 <= start < stop <= {n_z})",
            )
        )
    ph, pw = yx_patch_size
    if ph > height or pw > width:
        out.append(
            (
                "yx_patch_size",
                f"yx_patch_size [{ph}, {pw}] is larger than the {height} x {width} image: patches cannot be "
                f"centred on the cells (use at most [{height}, {width}])",
            )
        )
    return out
