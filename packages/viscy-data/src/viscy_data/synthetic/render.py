"""Rendering of synthetic plates: the phase-like and reporter images of one FOV from its tracks."""

from __future__ import annotations

import numpy as np
import pandas as pd

from viscy_data.synthetic.cells import CELL_RADIUS

__all__ = ["INFECTION_PHENOTYPES"]

#: infection phenotypes of the reporter channel (see ``write_synthetic_plate``)
INFECTION_PHENOTYPES = ("bright_nucleus", "relocalisation")
# relocalisation: nucleus sigma = radius / _NUCLEUS_FRACTION, cell body sigma = radius / 1.6; the amplitudes make the
# integrated reporter of the nucleus equal to that of the cytoplasm (body minus nucleus)
_NUCLEUS_FRACTION = 3.5
_CYTOPLASM_AMPLITUDE = 0.5
_NUCLEUS_AMPLITUDE = _CYTOPLASM_AMPLITUDE * ((_NUCLEUS_FRACTION / 1.6) ** 2 - 1.0)
# transient puncta: at most this many per cell and frame, each as bright as the infected nucleus, a little smaller
_MAX_PUNCTA = 4
_PUNCTA_VAR = 2 * (CELL_RADIUS / 4.5) ** 2


def _render_fov(
    rng: np.random.Generator,
    tracks: pd.DataFrame,
    progress: np.ndarray,
    dividing: np.ndarray,
    n_timepoints: int,
    n_channels: int,
    z_size: int,
    yx_size: tuple[int, int],
    infection_phenotype: str = "bright_nucleus",
    reporter_brightness_sd: float = 0.0,
    noise_sd: float = 0.05,
    transient_puncta: float = 0.0,
    texture_contrast: float = 0.3,
    puncta_anywhere: bool = False,
    reporter_gain: float = 1.0,
    background: float = 0.1,
    blur_sigma: float = 0.0,
) -> np.ndarray:
    """Draw ``(T, C, Z, Y, X)`` float32 images for one FOV, each cell in a window around it.

    ``progress`` is each detection's infection phenotype, from 0 (uninfected) to 1 (fully developed).
    """
    height, width = yx_size
    z = np.arange(z_size, dtype=np.float32)
    focus = np.exp(-((z - (z_size - 1) / 2) ** 2) / (2 * max(z_size / 3, 0.5) ** 2))  # (Z,)
    phase = np.zeros((n_timepoints, height, width), dtype=np.float32)
    reporter = np.zeros((n_timepoints, height, width), dtype=np.float32)
    # per-cell texture orientation, fixed for a track
    track_codes = tracks["track_id"].to_numpy()
    texture_rng = np.random.default_rng(rng.integers(1 << 31))
    angles = texture_rng.uniform(0, np.pi, size=track_codes.max() + 1 if len(track_codes) else 1)
    # per-track reporter expression level (drawn only when asked, so the default images stay the same)
    brightness = np.ones_like(angles)
    if reporter_brightness_sd > 0:
        brightness = np.exp(texture_rng.normal(0.0, reporter_brightness_sd, size=angles.shape))
    # transient reporter puncta: a new random set in every frame of every cell (drawn only when asked)
    n_det = len(track_codes)
    n_puncta = np.zeros(n_det, dtype=np.int64)
    puncta_yx = np.zeros((n_det, _MAX_PUNCTA, 2), dtype=np.float32)
    if transient_puncta > 0:
        puncta_rng = np.random.default_rng(texture_rng.integers(1 << 31))
        n_puncta = np.minimum(puncta_rng.poisson(transient_puncta, size=n_det), _MAX_PUNCTA)
        if puncta_anywhere:  # uniform over the cell's disc, nucleus included
            where = np.sqrt(puncta_rng.uniform(0.0, 0.81, size=(n_det, _MAX_PUNCTA))) * CELL_RADIUS
        else:  # uniform over the cytoplasm annulus, away from the nucleus
            where = puncta_rng.uniform(0.45, 0.9, size=(n_det, _MAX_PUNCTA)) * CELL_RADIUS
        turn = puncta_rng.uniform(0.0, 2 * np.pi, size=(n_det, _MAX_PUNCTA))
        puncta_yx = np.stack([where * np.sin(turn), where * np.cos(turn)], axis=-1).astype(np.float32)
    # each cell is drawn in a small window around it (cost independent of the image size)
    half = int(np.ceil(CELL_RADIUS * 2))
    offsets = np.arange(-half, half + 1, dtype=np.float32)
    for det, (t, cy, cx, track, p, div) in enumerate(
        zip(tracks["t"].to_numpy(), tracks["y"].to_numpy(), tracks["x"].to_numpy(), track_codes, progress, dividing)
    ):
        iy, ix = int(round(cy)), int(round(cx))
        ys = np.clip(iy + offsets.astype(int), 0, height - 1)
        xs = np.clip(ix + offsets.astype(int), 0, width - 1)
        ys, xs = np.unique(ys), np.unique(xs)
        dy = (ys - cy).astype(np.float32)[:, None]
        dx = (xs - cx).astype(np.float32)[None, :]
        r2 = dy**2 + dx**2
        # mitotic cells round up: smaller and brighter
        radius = CELL_RADIUS * (0.75 if div else 1.0)
        body = np.exp(-r2 / (2 * (radius / 1.6) ** 2))
        rim = np.exp(-((np.sqrt(r2) - radius) ** 2) / 2.0)
        angle = angles[track]
        texture = 1.0 + texture_contrast * np.cos(0.9 * (dy * np.cos(angle) + dx * np.sin(angle)))
        window = np.ix_(ys, xs)
        phase[t][window] += (1.5 if div else 1.0) * body * texture - 0.4 * rim
        if infection_phenotype == "bright_nucleus":
            nucleus = np.exp(-r2 / (2 * (radius / 4.0) ** 2))
            after, before = 3.0 * nucleus, 0.35 * body
        else:  # relocalisation: the same amount of reporter, diffuse over the cytoplasm or packed in the nucleus
            nucleus = np.exp(-r2 / (2 * (radius / _NUCLEUS_FRACTION) ** 2))
            after = _NUCLEUS_AMPLITUDE * nucleus
            before = _CYTOPLASM_AMPLITUDE * np.clip(body - nucleus, 0.0, None)
        # a developing phenotype moves the reporter gradually; 0 and 1 draw exactly the uninfected/infected cell
        state = after if p >= 1 else before if p <= 0 else p * after + (1.0 - p) * before
        reporter[t][window] += brightness[track] * state
        if n_puncta[det]:
            py, px = puncta_yx[det, : n_puncta[det]].T
            spots = np.exp(-((dy[None] - py[:, None, None]) ** 2 + (dx[None] - px[:, None, None]) ** 2) / _PUNCTA_VAR)
            peak = 3.0 if infection_phenotype == "bright_nucleus" else _NUCLEUS_AMPLITUDE
            reporter[t][window] += brightness[track] * peak * spots.sum(0)
    if blur_sigma > 0:  # the acquisition's optics: a Gaussian point-spread function in the image plane
        from scipy.ndimage import gaussian_filter

        phase = gaussian_filter(phase, sigma=(0, blur_sigma, blur_sigma), mode="nearest")
        reporter = gaussian_filter(reporter, sigma=(0, blur_sigma, blur_sigma), mode="nearest")
    images = np.empty((n_timepoints, n_channels, z_size, height, width), dtype=np.float32)
    images[:, 0] = focus[None, :, None, None] * phase[:, None]
    for c in range(1, n_channels):
        images[:, c] = (0.5 + 0.5 * focus[None, :, None, None]) * (reporter_gain * reporter[:, None]) + background
    images += rng.normal(0.0, noise_sd, size=images.shape).astype(np.float32)
    return images


def _to_dtype(images: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(images * 1000.0 + 500.0), info.min, info.max).astype(dtype)
    return images.astype(dtype)
