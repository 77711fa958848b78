"""Distances of embeddings along cell tracks."""

from __future__ import annotations

from typing import Any

import numpy as np

from viscy_utils.evaluation._inputs import get_features, get_obs, require_columns, track_groups
from viscy_utils.evaluation.clustering import pairwise_distance_matrix

__all__ = ["calculate_cosine_similarity_cell", "compute_track_displacement"]


def calculate_cosine_similarity_cell(
    embedding_dataset: Any, fov_name: str, track_id: int
) -> tuple[np.ndarray, list[float]]:
    """Cosine similarity of each time point of one track to the track's first time point.

    Parameters
    ----------
    embedding_dataset : AnnData or xarray.Dataset
        Embeddings with ``fov_name``, ``track_id`` and ``t`` metadata.
    fov_name : str
        FOV of the track (leading/trailing ``/`` ignored).
    track_id : int
        Track identifier.

    Returns
    -------
    tuple
        Sorted time points and the similarities (clipped to [-1, 1]), one per time point.
    """
    obs = get_obs(embedding_dataset)
    require_columns(obs, ["fov_name", "track_id", "t"], "calculate_cosine_similarity_cell")
    rows = np.flatnonzero((obs["fov_name"].to_numpy() == fov_name.strip("/")) & (obs["track_id"] == track_id))
    if rows.size == 0:
        raise KeyError(f"No samples for fov_name={fov_name!r}, track_id={track_id!r}")
    times = obs["t"].to_numpy()[rows]
    order = np.argsort(times, kind="stable")
    rows, times = rows[order], times[order]
    features = get_features(embedding_dataset)[rows].astype(np.float64)
    unit = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), np.finfo(np.float64).tiny)
    similarity = np.clip(unit @ unit[0], -1.0, 1.0)
    return times, similarity.tolist()


def compute_track_displacement(embedding_dataset: Any, distance_metric: str = "cosine") -> dict[int, list[float]]:
    """Embedding distances between every pair of time points of every track, bucketed by time lag.

    For each (``fov_name``, ``track_id``) the samples are sorted by ``t``; the distance between
    samples ``i < j`` goes to bucket ``tau = t[j] - t[i]``. Values are plain (not squared) distances.

    Parameters
    ----------
    embedding_dataset : AnnData or xarray.Dataset
        Embeddings with ``fov_name``, ``track_id`` and ``t`` metadata.
    distance_metric : str
        ``"cosine"``, ``"euclidean"`` or any scipy ``cdist`` metric.

    Returns
    -------
    dict
        ``{tau: [distance, ...]}`` with integer lags in increasing order.
    """
    obs = get_obs(embedding_dataset)
    require_columns(obs, ["fov_name", "track_id", "t"], "compute_track_displacement")
    features = get_features(embedding_dataset)
    times = obs["t"].to_numpy()
    lags, distances = [], []
    for rows in track_groups(obs, ["fov_name", "track_id"]):
        if len(rows) < 2:
            continue
        matrix = pairwise_distance_matrix(features[rows], metric=distance_metric, device="cpu")
        i, j = np.triu_indices(len(rows), k=1)
        lags.append(times[rows][j] - times[rows][i])
        distances.append(matrix[i, j])
    if not lags:
        return {}
    lags, distances = np.concatenate(lags), np.concatenate(distances)
    order = np.argsort(lags, kind="stable")
    lags, distances = lags[order], distances[order]
    unique, starts = np.unique(lags, return_index=True)
    return {int(tau): chunk.tolist() for tau, chunk in zip(unique, np.split(distances, starts[1:]), strict=True)}
