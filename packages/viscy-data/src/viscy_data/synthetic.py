"""Write small synthetic HCS OME-Zarr plates with moving, dividing, tracked cells.

The plate is meant for tests, demos and benchmarks: it is deterministic from a seed, writes in about a
second at the default size, and carries everything the loaders read:

- images ``(T, C, Z, Y, X)`` in array ``"0"`` of every FOV: a phase-like channel (textured blobs,
  darker rim, in focus at the middle slice) and a fluorescence reporter that is dim and diffuse over
  the cell before infection and bright and nucleus-sized after the well's infection onset (optionally:
  onsets drawn per cell lineage, bystander cells that stay uninfected, a phenotype that develops over
  several frames, transient reporter puncta, per-acquisition gain, background and blur);
- per-FOV tracks CSVs (``track_id, t, y, x, id, parent_track_id, parent_id``) with divisions and
  cells close to the borders (or kept ``border_margin`` pixels inside);
- normalisation statistics (:mod:`viscy_data.norm_meta` format) on every FOV and on the plate;
- ground truth in :attr:`SyntheticPlate.annotations`: infection state, infection onset and division.

Lineage conventions (those of ultrack): ``id`` is unique per detection within a FOV; ``parent_id`` is
the id of the previous detection of the same lineage (the mother's last detection for a daughter's
first row, -1 for roots); ``parent_track_id`` is the mother's track id for daughters, -1 for roots.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from viscy_data._typing import INDEX_COLUMNS, LABEL_CELL_DIVISION_STATE, LABEL_INFECTION_STATE
from viscy_data.importers.tracks import TRACKS_COLUMNS
from viscy_data.norm_meta import NORM_META_KEY, compute_statistics, merge_norm_meta

__all__ = ["INFECTION_PHENOTYPES", "TRACKS_COLUMNS", "SyntheticPlate", "corrupt_timepoint", "write_synthetic_plate"]

#: radius (pixels) of a synthetic cell
CELL_RADIUS = 7.0
#: minimum number of frames a track lives before it may divide again
MIN_CYCLE_FRAMES = 3
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


@dataclass(frozen=True)
class SyntheticPlate:
    """A plate written by :func:`write_synthetic_plate`.

    Attributes
    ----------
    store_path : pathlib.Path
        The OME-Zarr plate.
    tracks_path : pathlib.Path
        Root of the tracks layout ``<tracks_path>/<row>/<col>/<fov>/tracks.csv``.
    channel_names : tuple of str
        Channel names, phase-like first.
    fov_names : tuple of str
        FOV names, e.g. ``"A/1/0"``.
    annotations : pandas.DataFrame
        One row per detection: ``fov_name, track_id, t, id, parent_track_id, parent_id, z, y, x,
        infection_state, division, infection_onset`` (``infection_state`` per ``LABEL_INFECTION_STATE``,
        ``division`` per ``LABEL_CELL_DIVISION_STATE``: 1 when the cell divides within one frame;
        ``infection_onset``: first infected frame of the cell's lineage, -1 for cells never infected).
    shape : tuple of int
        Shape ``(T, C, Z, Y, X)`` of every FOV's image array.
    """

    store_path: Path
    tracks_path: Path
    channel_names: tuple[str, ...]
    fov_names: tuple[str, ...]
    annotations: pd.DataFrame
    shape: tuple[int, int, int, int, int]

    def tracks_csv(self, fov_name: str) -> Path:
        """Path of the tracks CSV of FOV ``fov_name`` (e.g. ``"A/1/0"``)."""
        return self.tracks_path / fov_name / "tracks.csv"

    def write_annotation_csv(self, path: str | Path) -> Path:
        """Write :attr:`annotations` as a CSV (the classification annotation format) and return its path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.annotations.to_csv(path, index=False)
        return path


def _simulate_tracks(
    rng: np.random.Generator,
    n_timepoints: int,
    yx_size: tuple[int, int],
    n_cells: int,
    division_probability: float,
    border_margin: float | None = None,
) -> pd.DataFrame:
    """Random-walk cells with divisions; returns one row per detection (lineage columns included).

    Without ``border_margin`` the first cell starts a few pixels from a border so that every FOV has border
    cases, and cells roam the whole image; with it, every centroid stays ``border_margin`` pixels inside.
    """
    height, width = yx_size
    if border_margin is None:
        margin = CELL_RADIUS + 2
        low = np.zeros(2)
        high = np.array([height - 1.0, width - 1.0])
        pos = rng.uniform([margin, margin], [height - margin, width - margin], size=(n_cells, 2))
        if n_cells:
            pos[0] = (rng.uniform(2.0, 5.0), rng.uniform(margin, width - margin))
    else:
        low = np.full(2, float(border_margin))
        high = np.array([height - 1.0, width - 1.0]) - border_margin
        pos = rng.uniform(low, high, size=(n_cells, 2))
    vel = rng.normal(0.0, 0.8, size=(n_cells, 2))
    track_ids = np.arange(n_cells)
    parent_tracks = np.full(n_cells, -1)
    last_ids = np.full(n_cells, -1)  # id of each live track's previous detection
    ages = rng.integers(0, MIN_CYCLE_FRAMES, size=n_cells)
    next_track, next_id = n_cells, 0
    frames = []
    for t in range(n_timepoints):
        if t > 0:
            divides = (ages >= MIN_CYCLE_FRAMES) & (rng.random(len(track_ids)) < division_probability)
            if divides.any():
                # each dividing mother ends; two daughters start on either side of it
                mothers = np.flatnonzero(divides)
                offset = rng.normal(0.0, 1.0, size=(len(mothers), 2))
                offset *= (CELL_RADIUS * 0.6) / np.linalg.norm(offset, axis=1, keepdims=True).clip(1e-6)
                d_pos = np.concatenate([pos[mothers] + offset, pos[mothers] - offset])
                d_vel = np.concatenate([vel[mothers] + offset * 0.2, vel[mothers] - offset * 0.2])
                n_new = 2 * len(mothers)
                keep = ~divides
                pos = np.concatenate([pos[keep], d_pos])
                vel = np.concatenate([vel[keep], d_vel])
                parent_tracks = np.concatenate([parent_tracks[keep], np.tile(track_ids[mothers], 2)])
                last_ids = np.concatenate([last_ids[keep], np.tile(last_ids[mothers], 2)])
                ages = np.concatenate([ages[keep], np.zeros(n_new, dtype=ages.dtype)])
                track_ids = np.concatenate([track_ids[keep], np.arange(next_track, next_track + n_new)])
                next_track += n_new
            vel = 0.8 * vel + rng.normal(0.0, 0.5, size=vel.shape)
            pos = pos + vel
            # cells stay inside the field of view, or its interior (reflect at the limits)
            pos = low + np.abs(pos - low)
            pos = np.where(pos > high, 2 * high - pos, pos).clip(low, high)
        ids = np.arange(next_id, next_id + len(track_ids))
        next_id += len(track_ids)
        frames.append(
            pd.DataFrame(
                {
                    "track_id": track_ids,
                    "t": t,
                    "y": pos[:, 0].round(2),
                    "x": pos[:, 1].round(2),
                    "id": ids,
                    "parent_track_id": parent_tracks,
                    "parent_id": last_ids,
                }
            )
        )
        last_ids = ids
        ages = ages + 1
    tracks = pd.concat(frames, ignore_index=True)
    # parent_track_id is a property of the whole track; only its first row links to the mother's detection
    return tracks[TRACKS_COLUMNS]


def _lineage_roots(tracks: pd.DataFrame) -> np.ndarray:
    """Root track id of every detection's lineage (daughters map to their first ancestor)."""
    parent = tracks.groupby("track_id")["parent_track_id"].first()
    root = pd.Series(parent.index.to_numpy(), index=parent.index)
    up = parent.copy()
    # climb one generation per pass; lineages are a few generations deep
    while (up >= 0).any():
        has = up >= 0
        root[has] = up[has].to_numpy()
        up[has] = parent.reindex(up[has].to_numpy()).fillna(-1).astype(np.int64).to_numpy()
    return tracks["track_id"].map(root).to_numpy(dtype=np.int64)


def _infection_onsets(
    rng: np.random.Generator,
    tracks: pd.DataFrame,
    infected_well: bool,
    infection_onset: int,
    onset_spread: int,
    never_infected_fraction: float,
) -> np.ndarray:
    """First infected frame of every detection's lineage (-1: never infected).

    Every lineage of an infected well draws its onset uniformly from ``infection_onset + [0, onset_spread]``
    and is a bystander that never gets infected with probability ``never_infected_fraction``; daughters
    inherit their mother's onset. ``rng`` is the lineages' own generator: the tracks and images do not depend
    on whether onsets are drawn.
    """
    if not infected_well:
        return np.full(len(tracks), -1, dtype=np.int64)
    if onset_spread == 0 and never_infected_fraction == 0:
        return np.full(len(tracks), infection_onset, dtype=np.int64)
    unique_roots, inverse = np.unique(_lineage_roots(tracks), return_inverse=True)
    onset = infection_onset + rng.integers(0, onset_spread + 1, size=unique_roots.size)
    onset[rng.random(unique_roots.size) < never_infected_fraction] = -1
    return onset[inverse]


def _division_labels(tracks: pd.DataFrame) -> np.ndarray:
    """1 for detections within one frame of a division (mother's last frame, daughters' first two)."""
    daughters = tracks[tracks["parent_track_id"] >= 0]
    birth = daughters.groupby("track_id")["t"].min()
    mother_end = tracks.groupby("track_id")["t"].max()
    division_t = pd.Series(birth.to_numpy(), index=daughters.groupby("track_id")["parent_track_id"].first().to_numpy())
    division_t = division_t[~division_t.index.duplicated()]
    near = np.zeros(len(tracks), dtype=bool)
    # daughters: first frame and the one after
    first = tracks["track_id"].map(birth)
    near |= first.notna().to_numpy() & (tracks["t"].to_numpy() - first.fillna(-10).to_numpy() <= 1)
    # mothers: their last frame (the frame before the daughters appear)
    is_mother = tracks["track_id"].isin(division_t.index).to_numpy()
    near |= is_mother & (tracks["t"].to_numpy() == tracks["track_id"].map(mother_end).to_numpy())
    return np.where(near, LABEL_CELL_DIVISION_STATE["mitosis"], LABEL_CELL_DIVISION_STATE["interphase"])


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


def write_synthetic_plate(
    path: str | Path,
    *,
    wells: Sequence[str] = ("A/1", "A/2", "B/1", "B/2"),
    fovs_per_well: int = 1,
    n_timepoints: int = 8,
    z_size: int = 4,
    yx_size: tuple[int, int] = (128, 128),
    cells_per_fov: int = 6,
    channel_names: Sequence[str] = ("Phase3D", "GFP"),
    infected_wells: Sequence[str] = ("B/1", "B/2"),
    infection_onset: int = 4,
    division_probability: float = 0.08,
    infection_phenotype: str = "bright_nucleus",
    reporter_brightness_sd: float = 0.0,
    border_margin: float | None = None,
    noise_sd: float = 0.05,
    transient_puncta: float = 0.0,
    texture_contrast: float = 0.3,
    onset_spread: int = 0,
    never_infected_fraction: float = 0.0,
    phenotype_frames: int = 1,
    puncta_anywhere: bool = False,
    reporter_gain: float = 1.0,
    background: float = 0.1,
    blur_sigma: float = 0.0,
    seed: int = 0,
    version: str = "0.4",
    tracks_path: str | Path | None = None,
    write_norm_meta: bool = True,
    dtype: str | np.dtype = "float32",
    chunks: tuple[int, ...] | None = None,
) -> SyntheticPlate:
    """Write a synthetic HCS plate with tracked, dividing cells and a per-well infection.

    Parameters
    ----------
    path : str or pathlib.Path
        Where the plate (``*.zarr``) is written; an existing store is replaced.
    wells : sequence of str, default ("A/1", "A/2", "B/1", "B/2")
        Well names ``"<row>/<col>"``.
    fovs_per_well : int, default 1
        FOVs per well, named ``"0"``, ``"1"``, ...
    n_timepoints : int, default 8
        Number of frames T.
    z_size : int, default 4
        Number of Z slices; cells are in focus in the middle.
    yx_size : tuple of int, default (128, 128)
        Image height and width.
    cells_per_fov : int, default 6
        Cells at the first frame (divisions add more).
    channel_names : sequence of str, default ("Phase3D", "GFP")
        The first is the phase-like channel, every other one shows the infection reporter.
    infected_wells : sequence of str, default ("B/1", "B/2")
        Wells whose cells are infected from ``infection_onset`` on (names not in ``wells`` are ignored).
    infection_onset : int, default 4
        First infected frame (the earliest one when ``onset_spread`` > 0).
    division_probability : float, default 0.08
        Probability per frame that a cell (at least 3 frames old) divides.
    infection_phenotype : {"bright_nucleus", "relocalisation"}, default "bright_nucleus"
        What infection does to the reporter. ``"bright_nucleus"``: dim and diffuse over the cell before,
        bright and nucleus-sized after (infection changes the total intensity). ``"relocalisation"``: the
        reporter fills the cytoplasm (a ring around a dark nucleus) before and is packed into the nucleus
        after, with the same integrated intensity, so only the structure tells the states apart. Either
        appears in full at the labelled onset frame unless ``phenotype_frames`` > 1.
    reporter_brightness_sd : float, default 0.0
        Standard deviation of the log of a per-track reporter expression level (cell-to-cell variation of
        brightness); 0 draws none.
    border_margin : float, optional
        Keep every cell centroid at least this many pixels from the image border (e.g. half a training patch,
        so that every patch is centred on its cell). Default: cells roam the whole image and every FOV has a
        cell starting a few pixels from a border.
    noise_sd : float, default 0.05
        Standard deviation of the Gaussian camera noise added to every channel (cells peak around 1).
    transient_puncta : float, default 0.0
        Mean number (Poisson, at most 4) of bright reporter puncta in the cytoplasm of every cell, drawn
        afresh in every frame: short-lived structures as bright as the infected nucleus that a classifier must
        tell from the persistent infection phenotype. 0 draws none.
    texture_contrast : float, default 0.3
        Contrast of the striped phase texture whose orientation is fixed per track (a cue to a cell's
        identity); 0 makes every cell's phase image the same blob.
    onset_spread : int, default 0
        Asynchronous infection: every cell lineage of an infected well draws its own onset uniformly from
        ``infection_onset`` to ``infection_onset + onset_spread`` (daughters inherit their mother's); 0 infects
        the whole well at ``infection_onset``.
    never_infected_fraction : float, default 0.0
        Fraction of the lineages of infected wells that are never infected (bystanders).
    phenotype_frames : int, default 1
        Frames over which the infection phenotype develops: at ``k`` frames after its onset a cell shows
        ``min(1, (k + 1) / phenotype_frames)`` of it (the reporter moves gradually); 1 shows it in full at the
        onset. The label ``infection_state`` switches at the onset either way.
    puncta_anywhere : bool, default False
        Place the transient puncta anywhere in the cell, over the nucleus too (a distractor that can mimic
        the infected nucleus in a single frame); default: in the cytoplasm only.
    reporter_gain : float, default 1.0
        Gain of the acquisition's fluorescence channels (detector and exposure).
    background : float, default 0.1
        Background offset of the fluorescence channels.
    blur_sigma : float, default 0.0
        Standard deviation (pixels) of a Gaussian blur of the image plane before the noise (the optics or a
        slight defocus of the acquisition); 0 keeps images sharp.
    seed : int, default 0
        Everything (tracks, textures, noise) is a function of it.
    version : {"0.4", "0.5"}, default "0.4"
        OME-NGFF version: 0.4 is zarr v2, 0.5 is zarr v3.
    tracks_path : str or pathlib.Path, optional
        Root of the tracks CSV layout; default: inside the plate, ``<store>/<row>/<col>/<fov>/tracks.csv``.
    write_norm_meta : bool, default True
        Write ``normalization`` attributes (FOV: dataset/FOV/timepoint statistics, plate: dataset/timepoint).
    dtype : str or numpy.dtype, default "float32"
        Stored dtype; integer dtypes store ``round(1000 * value + 500)``.
    chunks : tuple of int, optional
        Chunk shape of the image arrays (iohub's default when None).

    Returns
    -------
    SyntheticPlate
        Paths, names, image shape and ground-truth annotations.
    """
    from iohub.ngff import open_ome_zarr

    if infection_phenotype not in INFECTION_PHENOTYPES:
        raise ValueError(f"infection_phenotype must be one of {INFECTION_PHENOTYPES}, got {infection_phenotype!r}")
    if reporter_brightness_sd < 0:
        raise ValueError(f"reporter_brightness_sd must be >= 0, got {reporter_brightness_sd}")
    if border_margin is not None and not 0 <= border_margin < (min(yx_size) - 1) / 2:
        raise ValueError(
            f"border_margin must be in [0, {(min(yx_size) - 1) / 2}) for yx_size {tuple(yx_size)}, got {border_margin}"
        )
    if texture_contrast < 0:
        raise ValueError(f"texture_contrast must be >= 0, got {texture_contrast}")
    if transient_puncta < 0:
        raise ValueError(f"transient_puncta must be >= 0, got {transient_puncta}")
    if noise_sd < 0:
        raise ValueError(f"noise_sd must be >= 0, got {noise_sd}")
    if onset_spread < 0:
        raise ValueError(f"onset_spread must be >= 0, got {onset_spread}")
    if not 0 <= never_infected_fraction <= 1:
        raise ValueError(f"never_infected_fraction must be in [0, 1], got {never_infected_fraction}")
    if phenotype_frames < 1:
        raise ValueError(f"phenotype_frames must be >= 1, got {phenotype_frames}")
    if reporter_gain <= 0:
        raise ValueError(f"reporter_gain must be > 0, got {reporter_gain}")
    if blur_sigma < 0:
        raise ValueError(f"blur_sigma must be >= 0, got {blur_sigma}")
    if version not in ("0.4", "0.5"):
        raise ValueError(f"version must be '0.4' or '0.5', got {version!r}")
    channel_names = tuple(channel_names)
    if not channel_names:
        raise ValueError("channel_names must name at least one channel")
    for well in wells:
        if len(well.split("/")) != 2:
            raise ValueError(f"well name {well!r} should look like 'A/1'")
    dtype = np.dtype(dtype)
    store_path = Path(path)
    tracks_root = store_path if tracks_path is None else Path(tracks_path)
    yx_size = (int(yx_size[0]), int(yx_size[1]))
    shape = (n_timepoints, len(channel_names), z_size, *yx_size)

    fov_names, tables, images = [], [], []
    for well in wells:
        for f in range(fovs_per_well):
            fov_name = f"{well}/{f}"
            rng = np.random.default_rng([seed, len(fov_names)])
            tracks = _simulate_tracks(rng, n_timepoints, yx_size, cells_per_fov, division_probability, border_margin)
            onset = _infection_onsets(
                np.random.default_rng([seed, len(fov_names), 1]),
                tracks,
                well in infected_wells,
                infection_onset,
                onset_spread,
                never_infected_fraction,
            )
            since = tracks["t"].to_numpy() - onset
            infected = (onset >= 0) & (since >= 0)
            progress = np.where(infected, np.minimum(1.0, (since + 1.0) / phenotype_frames), 0.0)
            division = _division_labels(tracks)
            images.append(
                _to_dtype(
                    _render_fov(
                        rng,
                        tracks,
                        progress,
                        division.astype(bool),
                        n_timepoints,
                        len(channel_names),
                        z_size,
                        yx_size,
                        infection_phenotype,
                        reporter_brightness_sd,
                        noise_sd,
                        transient_puncta,
                        texture_contrast,
                        puncta_anywhere,
                        reporter_gain,
                        background,
                        blur_sigma,
                    ),
                    dtype,
                )
            )
            annotation = tracks.assign(
                fov_name=fov_name,
                z=z_size // 2,
                infection_state=np.where(
                    infected, LABEL_INFECTION_STATE["infected"], LABEL_INFECTION_STATE["uninfected"]
                ),
                division=division,
                infection_onset=onset,
            )
            tables.append(annotation)
            fov_names.append(fov_name)

    norm = _norm_meta(images, channel_names) if write_norm_meta else None
    with open_ome_zarr(store_path, layout="hcs", mode="w", channel_names=list(channel_names), version=version) as plate:
        for i, (fov_name, image) in enumerate(zip(fov_names, images)):
            row, col, fov = fov_name.split("/")
            position = plate.create_position(row, col, fov)
            position.create_image("0", image, chunks=chunks)
            if norm is not None:
                position.zattrs[NORM_META_KEY] = merge_norm_meta(None, norm["fovs"][i])
        if norm is not None:
            plate.zattrs[NORM_META_KEY] = merge_norm_meta(None, norm["plate"])

    for fov_name, table in zip(fov_names, tables):
        csv = tracks_root / fov_name / "tracks.csv"
        csv.parent.mkdir(parents=True, exist_ok=True)
        table[TRACKS_COLUMNS].to_csv(csv, index=False)

    annotations = pd.concat(tables, ignore_index=True)[
        [*INDEX_COLUMNS, "infection_state", "division", "infection_onset"]
    ]
    return SyntheticPlate(
        store_path=store_path,
        tracks_path=tracks_root,
        channel_names=channel_names,
        fov_names=tuple(fov_names),
        annotations=annotations,
        shape=shape,
    )


def _norm_meta(images: list[np.ndarray], channel_names: tuple[str, ...]) -> dict:
    """Statistics per FOV and for the plate, in the layout ``merge_norm_meta`` takes."""
    stack = np.stack(images)  # (FOV, T, C, Z, Y, X)
    plate_level = {}
    for c, name in enumerate(channel_names):
        plate_level[name] = {
            "dataset_statistics": compute_statistics(stack[:, :, c]),
            "timepoint_statistics": {str(t): compute_statistics(stack[:, t, c]) for t in range(stack.shape[1])},
        }
    fovs = [
        {
            name: {**plate_level[name], "fov_statistics": compute_statistics(image[:, c])}
            for c, name in enumerate(channel_names)
        }
        for image in images
    ]
    return {"plate": plate_level, "fovs": fovs}


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
