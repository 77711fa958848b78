"""The synthetic plate writer: tracks, images, tracks CSVs, normalisation statistics and ground truth."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from viscy_data._typing import INDEX_COLUMNS, LABEL_INFECTION_STATE
from viscy_data.importers.tracks import TRACKS_COLUMNS
from viscy_data.norm_meta import NORM_META_KEY, compute_statistics, merge_norm_meta
from viscy_data.synthetic.cells import _division_labels, _infection_onsets, _simulate_tracks
from viscy_data.synthetic.render import INFECTION_PHENOTYPES, _render_fov, _to_dtype

__all__ = ["SyntheticPlate", "write_synthetic_plate"]


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
