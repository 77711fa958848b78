"""Turn batches of image tensors into a single RGB grid for loggers."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["detach_sample", "render_images"]


def detach_sample(imgs: Sequence[torch.Tensor], log_samples_per_batch: int) -> list[list[np.ndarray]]:
    """Take the middle Z slice of the first samples of several (B, C, Z, Y, X) tensors.

    Parameters
    ----------
    imgs : sequence of torch.Tensor
        Tensors shaped (B, C, Z, Y, X), e.g. source, target and prediction.
    log_samples_per_batch : int
        Maximum number of samples to keep.

    Returns
    -------
    list[list[numpy.ndarray]]
        Rows are samples, columns are the tensors; each entry is the (C, Y, X) middle slice on the
        CPU, squeezed to (Y, X) when C == 1.
    """
    if len(imgs) == 0:
        return []
    for i, img in enumerate(imgs):
        if img.ndim != 5:
            raise ValueError(f"tensor {i} must be (B, C, Z, Y, X), got shape {tuple(img.shape)}")
    num_samples = min(imgs[0].shape[0], log_samples_per_batch)
    # one device transfer per tensor rather than one per sample
    slices = [img[:num_samples, :, img.shape[2] // 2].detach().cpu().numpy() for img in imgs]
    return [[np.squeeze(s[i]) for s in slices] for i in range(num_samples)]


def _to_rgb(channel: np.ndarray, cmap: str) -> np.ndarray:
    """Rescale one 2-D channel to [0, 1] and map it to RGB uint8 with a matplotlib colormap."""
    from matplotlib import colormaps

    channel = channel.astype(np.float32)
    low, high = float(np.nanmin(channel)), float(np.nanmax(channel))
    scaled = (channel - low) / (high - low) if high > low else np.zeros_like(channel)
    return (colormaps[cmap](scaled)[..., :3] * 255).astype(np.uint8)


def render_images(imgs: Sequence[Sequence[np.ndarray]], cmaps: Sequence[str] = ()) -> np.ndarray:
    """Render a grid of image patches into one RGB image.

    Parameters
    ----------
    imgs : sequence of sequence of numpy.ndarray
        Rows of patches as returned by :func:`detach_sample`; each patch is (Y, X) or (C, Y, X). All
        patches must share their (Y, X) shape.
    cmaps : sequence of str
        Colormap of each column; default ``"gray"`` for column 0 and ``"inferno"`` for the others.

    Returns
    -------
    numpy.ndarray
        uint8 array (H, W, 3): channels and columns side by side, rows stacked vertically. Each
        channel is rescaled to [0, 1] on its own.
    """
    if len(imgs) == 0:
        return np.zeros((0, 0, 3), dtype=np.uint8)
    rows = []
    for row in imgs:
        tiles = []
        for col, patch in enumerate(row):
            patch = np.asarray(patch)
            if patch.ndim == 2:
                patch = patch[np.newaxis]
            cmap = cmaps[col] if col < len(cmaps) else ("gray" if col == 0 else "inferno")
            tiles.extend(_to_rgb(channel, cmap) for channel in patch)
        shapes = {tile.shape for tile in tiles}
        if len(shapes) != 1:
            raise ValueError(f"all patches must share a (Y, X) shape, got {sorted(s[:2] for s in shapes)}")
        rows.append(np.concatenate(tiles, axis=1))
    widths = {row.shape[1] for row in rows}
    if len(widths) != 1:
        raise ValueError(f"every row must have the same number of channels and columns, got widths {sorted(widths)}")
    return np.concatenate(rows, axis=0)
