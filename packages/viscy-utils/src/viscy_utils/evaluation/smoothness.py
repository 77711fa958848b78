"""Temporal structure of embeddings: adjacent-frame versus random-pair distances, and temporal order in a track."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy.signal import find_peaks
from scipy.stats import gaussian_kde, spearmanr

from viscy_utils.evaluation._inputs import get_features, get_obs, track_groups
from viscy_utils.evaluation._optional import require
from viscy_utils.evaluation.clustering import compare_time_offset, select_block

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = [
    "TemporalOrder",
    "compute_embeddings_smoothness",
    "compute_piece_wise_distance",
    "compute_temporal_order",
    "find_distribution_peak",
]

#: peaks lower than this fraction of the highest density are ignored
_PEAK_MIN_HEIGHT = 0.1


def compute_piece_wise_distance(
    features_df: pd.DataFrame,
    cross_dist: np.ndarray,
    rank_fractions: np.ndarray,
    groupby: list[str] | None = None,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Adjacent-step distances and rank fractions along each track.

    Parameters
    ----------
    features_df : pandas.DataFrame
        One row per sample, rows aligned with ``cross_dist``; needs the ``groupby`` columns. Within a
        group, rows are ordered by ``t`` when that column exists (by row order otherwise).
    cross_dist : numpy.ndarray
        Pairwise distances ``(n, n)``.
    rank_fractions : numpy.ndarray
        Normalised neighbour ranks ``(n, n)`` (see ``rank_nearest_neighbors``).
    groupby : list of str
        Columns identifying a track; default ``["fov_name", "track_id"]``.

    Returns
    -------
    tuple
        Two lists with one array per track of more than one sample: distances between consecutive
        samples, and the matching rank fractions.
    """
    groupby = ["fov_name", "track_id"] if groupby is None else groupby
    distances, ranks = [], []
    for rows in track_groups(features_df.reset_index(drop=True), groupby):
        if len(rows) < 2:
            continue
        distances.append(compare_time_offset(select_block(cross_dist, rows), 1))
        ranks.append(compare_time_offset(select_block(rank_fractions, rows), 1))
    return distances, ranks


def find_distribution_peak(data: np.ndarray, method: str = "kde_robust") -> float:
    """Location of the main mode of a 1-D sample.

    Parameters
    ----------
    data : numpy.ndarray
        Sample values.
    method : {"kde_robust", "histogram"}
        ``"histogram"``: 50-bin density histogram; ``"kde_robust"``: Gaussian KDE on 1000 points
        spanning the data. Among peaks at least 10 % as high as the maximum the highest wins; without
        such a peak the arg-max is returned.

    Returns
    -------
    float
        The peak location.
    """
    data = np.asarray(data, dtype=np.float64).ravel()
    if method == "histogram":
        density, edges = np.histogram(data, bins=50, density=True)
        grid = (edges[:-1] + edges[1:]) / 2
    elif method == "kde_robust":
        if np.ptp(data) == 0:
            return float(data[0])
        grid = np.linspace(data.min(), data.max(), 1000)
        density = gaussian_kde(data)(grid)
    else:
        raise ValueError(f"Unknown method {method!r}; choose 'kde_robust' or 'histogram'.")
    peaks, properties = find_peaks(density, height=_PEAK_MIN_HEIGHT * density.max())
    if peaks.size == 0:
        return float(grid[np.argmax(density)])
    return float(grid[peaks[np.argmax(properties["peak_heights"])]])


def _summary(values: np.ndarray, prefix: str) -> dict[str, float]:
    return {
        f"{prefix}_mean": float(np.mean(values)),
        f"{prefix}_std": float(np.std(values)),
        f"{prefix}_median": float(np.median(values)),
        f"{prefix}_peak": find_distribution_peak(values),
    }


def _row_distances(features: np.ndarray, a: np.ndarray, b: np.ndarray, metric: str) -> np.ndarray:
    """Distance between ``features[a[k]]`` and ``features[b[k]]`` for every k, without an n x n matrix."""
    x, y = features[a], features[b]
    if metric == "cosine":
        norms = np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1)
        return 1.0 - np.einsum("ij,ij->i", x, y) / np.maximum(norms, np.finfo(np.float64).tiny)
    if metric == "euclidean":
        return np.linalg.norm(x - y, axis=1)
    pairwise = require("sklearn.metrics.pairwise", "eval", "paired distances")
    return pairwise.paired_distances(x, y, metric=metric)


def compute_embeddings_smoothness(
    features_ad: AnnData, distance_metric: str = "cosine", verbose: bool = False, seed: int = 42
) -> tuple[dict[str, float], dict[str, np.ndarray], list[np.ndarray]]:
    """Compare distances between consecutive frames of a track with distances between random pairs.

    Features are standardised; distances are computed only for the pairs needed (memory grows
    linearly with the number of samples, not quadratically).

    Parameters
    ----------
    features_ad : AnnData
        Embeddings (``X``) with ``fov_name``, ``track_id`` and ``t`` in ``obs`` (an xarray embedding
        dataset works too).
    distance_metric : str
        ``"cosine"``, ``"euclidean"`` or another scipy metric.
    verbose : bool
        Print the statistics.
    seed : int
        Seed of the private random generator drawing the random pairs.

    Returns
    -------
    tuple
        ``stats`` (``adjacent_frame_{mean,std,median,peak}``, ``random_frame_{mean,std,median,peak}``,
        ``smoothness_score`` = mean adjacent / mean random (lower is smoother), ``dynamic_range`` =
        random peak - adjacent peak), ``distributions`` (``adjacent_frame_distribution``,
        ``random_frame_distribution``) and the adjacent distances of each track.
    """
    preprocessing = require("sklearn.preprocessing", "eval", "compute_embeddings_smoothness")
    features = preprocessing.StandardScaler().fit_transform(get_features(features_ad).astype(np.float64))
    obs = get_obs(features_ad)
    tracks = [rows for rows in track_groups(obs, ["fov_name", "track_id"]) if len(rows) > 1]
    if not tracks:
        raise ValueError("compute_embeddings_smoothness needs at least one track with two or more time points")
    per_track = [_row_distances(features, rows[:-1], rows[1:], distance_metric) for rows in tracks]
    adjacent = np.concatenate(per_track)
    rng = np.random.default_rng(seed)
    n = len(features)
    first = rng.integers(0, n, size=adjacent.size)
    # a uniform draw among the other n - 1 samples: never pairs a sample with itself
    second = (first + rng.integers(1, n, size=adjacent.size)) % n
    random = _row_distances(features, first, second, distance_metric)
    stats = {**_summary(adjacent, "adjacent_frame"), **_summary(random, "random_frame")}
    stats["smoothness_score"] = stats["adjacent_frame_mean"] / stats["random_frame_mean"]
    stats["dynamic_range"] = stats["random_frame_peak"] - stats["adjacent_frame_peak"]
    if verbose:
        for key, value in stats.items():
            print(f"{key}: {value:.4f}")
    distributions = {"adjacent_frame_distribution": adjacent, "random_frame_distribution": random}
    return stats, distributions, per_track


@dataclass(frozen=True)
class TemporalOrder:
    """Within-track temporal order of embeddings (see :func:`compute_temporal_order`).

    Attributes
    ----------
    score : float
        Mean over tracks of the Spearman correlation between the embedding distance of two frames of the
        track and their time lag; 1: the farther apart in time, the farther apart in the embedding.
    per_track : numpy.ndarray
        The correlation of every scored track.
    n_tracks : int
        Number of scored tracks.
    """

    score: float
    per_track: np.ndarray
    n_tracks: int


def compute_temporal_order(
    features_ad: AnnData,
    distance_metric: str = "cosine",
    min_frames: int = 4,
    track_mask: np.ndarray | None = None,
) -> TemporalOrder:
    """How well embedding distances within a track follow the time lag between its frames.

    For every track, all pairs of its frames are compared: the Spearman rank correlation between their
    embedding distance and their time lag ``|t_i - t_j|``. Comparing frames of one cell only controls for
    cell identity: features that are constant within a track (a cell's brightness, its shape) cannot score,
    unlike in a ratio of adjacent to random-pair distances. Features are standardised over all samples first.

    Parameters
    ----------
    features_ad : AnnData
        Embeddings (``X``) with ``fov_name``, ``track_id`` and ``t`` in ``obs`` (an xarray embedding
        dataset works too).
    distance_metric : str, default "cosine"
        ``"cosine"``, ``"euclidean"`` or another scipy metric.
    min_frames : int, default 4
        Tracks with fewer frames are skipped (they have too few distinct lags).
    track_mask : numpy.ndarray, optional
        Boolean per sample: only these samples form the scored tracks (e.g. cells whose state changes);
        all samples still define the standardisation.

    Returns
    -------
    TemporalOrder
        Mean correlation, per-track correlations and the number of tracks. Tracks whose distances or lags
        are all equal have no rank correlation and are skipped.

    Raises
    ------
    ValueError
        If ``min_frames < 3`` (two frames have a single lag), ``track_mask`` has the wrong length, or no
        track can be scored.
    """
    preprocessing = require("sklearn.preprocessing", "eval", "compute_temporal_order")
    if min_frames < 3:
        raise ValueError(f"min_frames must be >= 3 to have more than one time lag, got {min_frames}")
    features = preprocessing.StandardScaler().fit_transform(get_features(features_ad).astype(np.float64))
    obs = get_obs(features_ad)
    if track_mask is not None:
        track_mask = np.asarray(track_mask, dtype=bool)
        if track_mask.shape != (len(obs),):
            raise ValueError(f"track_mask must have one value per sample ({len(obs)}), got shape {track_mask.shape}")
        rows_kept = np.flatnonzero(track_mask)
        groups = [rows_kept[g] for g in track_groups(obs.iloc[rows_kept], ["fov_name", "track_id"])]
    else:
        groups = track_groups(obs, ["fov_name", "track_id"])
    t = obs["t"].to_numpy(dtype=np.float64)
    correlations = []
    for rows in groups:
        if len(rows) < min_frames:
            continue
        i, j = np.triu_indices(len(rows), k=1)
        distances = _row_distances(features, rows[i], rows[j], distance_metric)
        lags = np.abs(t[rows[j]] - t[rows[i]])
        if np.ptp(distances) == 0 or np.ptp(lags) == 0:
            continue
        correlations.append(spearmanr(lags, distances).statistic)
    if not correlations:
        raise ValueError(f"compute_temporal_order found no track with at least {min_frames} frames to score")
    per_track = np.asarray(correlations, dtype=np.float64)
    return TemporalOrder(score=float(per_track.mean()), per_track=per_track, n_tracks=int(per_track.size))
