"""Cell simulation of synthetic plates: random-walk tracks with divisions, lineages, onsets, labels.

Tracks follow the lineage conventions of :mod:`viscy_data.synthetic` (those of ultrack).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from viscy_data._typing import LABEL_CELL_DIVISION_STATE
from viscy_data.importers.tracks import TRACKS_COLUMNS

__all__ = ["CELL_RADIUS", "MIN_CYCLE_FRAMES"]

#: radius (pixels) of a synthetic cell
CELL_RADIUS = 7.0
#: minimum number of frames a track lives before it may divide again
MIN_CYCLE_FRAMES = 3


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
