"""Distance matrices, neighbour ranks and clustering quality of embeddings."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from scipy.spatial.distance import cdist

from viscy_utils.evaluation._optional import require

__all__ = [
    "clustering_evaluation",
    "compare_time_offset",
    "dbscan_clustering",
    "knn_accuracy",
    "pairwise_distance_matrix",
    "rank_nearest_neighbors",
    "select_block",
]

#: rows per block of the torch distance computation; bounds the temporary memory to block x n
_BLOCK_ROWS = 4096


def knn_accuracy(embeddings: np.ndarray, annotations: np.ndarray, k: int = 5, leave_one_out: bool = True) -> float:
    """Accuracy of a k-nearest-neighbour vote over the embeddings.

    Parameters
    ----------
    embeddings : numpy.ndarray
        Shape ``(n_samples, n_features)``.
    annotations : numpy.ndarray
        Label of each sample, shape ``(n_samples,)``.
    k : int
        Number of neighbours voting.
    leave_one_out : bool
        Exclude each sample from its own vote (an honest estimate). ``False`` reproduces the
        reference behaviour: fit and score on the same samples, so each sample votes for itself.

    Returns
    -------
    float
        Fraction of samples whose majority-vote label equals their annotation.
    """
    neighbors = require("sklearn.neighbors", "eval", "knn_accuracy")
    embeddings = np.asarray(embeddings)
    annotations = np.asarray(annotations)
    if len(embeddings) != len(annotations):
        raise ValueError(f"embeddings has {len(embeddings)} rows but annotations has {len(annotations)}")
    if not leave_one_out:
        classifier = neighbors.KNeighborsClassifier(n_neighbors=k).fit(embeddings, annotations)
        return float(classifier.score(embeddings, annotations))
    classes, codes = np.unique(annotations, return_inverse=True)
    index = neighbors.NearestNeighbors(n_neighbors=min(k + 1, len(embeddings))).fit(embeddings)
    _, neighbor_idx = index.kneighbors(embeddings)
    # drop each sample's own entry (not always in column 0 when duplicates exist), keep k others
    others = neighbor_idx != np.arange(len(embeddings))[:, None]
    others &= np.cumsum(others, axis=1) <= k
    votes = np.zeros((len(embeddings), len(classes)), dtype=np.int64)
    rows = np.broadcast_to(np.arange(len(embeddings))[:, None], neighbor_idx.shape)
    np.add.at(votes, (rows[others], codes[neighbor_idx[others]]), 1)
    return float(np.mean(votes.argmax(axis=1) == codes))


def _torch_device(device: str | None) -> torch.device | None:
    """Resolve ``device`` to a torch device, or None when scipy must be used."""
    if device in (None, "scipy"):
        return None
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device in ("cuda", "gpu"):
        return torch.device("cuda") if torch.cuda.is_available() else None
    if device == "cpu":
        return torch.device("cpu")
    raise ValueError(f"Unknown device {device!r}; choose 'auto', 'cuda', 'gpu', 'cpu', 'scipy' or None.")


def _torch_distances(features: np.ndarray, metric: str, device: torch.device) -> np.ndarray:
    x = torch.as_tensor(features, dtype=torch.float64, device=device)
    if metric == "cosine":
        x = torch.nn.functional.normalize(x, dim=1)
    out = np.empty((len(x), len(x)), dtype=np.float64)
    for start in range(0, len(x), _BLOCK_ROWS):
        block = x[start : start + _BLOCK_ROWS]
        if metric == "cosine":
            dist = 1.0 - block @ x.T
        else:
            dist = torch.cdist(block, x, compute_mode="donot_use_mm_for_euclid_dist")
        out[start : start + len(block)] = dist.cpu().numpy()
    return out


def pairwise_distance_matrix(
    features: np.ndarray, metric: str = "cosine", device: Literal["auto", "cuda", "gpu", "cpu"] | None = "auto"
) -> np.ndarray:
    """All pairwise distances between rows of ``features``.

    Parameters
    ----------
    features : numpy.ndarray
        Shape ``(n_samples, n_features)``; computed in float64.
    metric : str
        ``"cosine"`` (1 - cosine similarity) or ``"euclidean"`` run on torch; any other
        ``scipy.spatial.distance.cdist`` metric runs on scipy.
    device : {"auto", "cuda", "gpu", "cpu", "scipy", None}
        Torch device (``"auto"``: CUDA when available). ``None``/``"scipy"`` forces scipy. CUDA
        requested but unavailable, or a torch failure (e.g. out of memory), falls back to scipy.

    Returns
    -------
    numpy.ndarray
        Shape ``(n_samples, n_samples)``, float64.
    """
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2:
        raise ValueError(f"features must be 2-D (n_samples, n_features), got shape {features.shape}")
    torch_device = _torch_device(device)
    if torch_device is not None and metric in ("cosine", "euclidean"):
        try:
            return _torch_distances(features, metric, torch_device)
        except RuntimeError:  # CUDA out of memory or driver failure: the CPU path still gives the answer
            pass
    return cdist(features, features, metric=metric)


def rank_nearest_neighbors(cross_dissimilarity: np.ndarray, normalize: bool = True) -> np.ndarray:
    """Rank of every column within its row (0 = most similar).

    Parameters
    ----------
    cross_dissimilarity : numpy.ndarray
        Shape ``(n, m)`` dissimilarities.
    normalize : bool
        Divide ranks by ``m - 1`` so that the nearest is 0 and the farthest 1.

    Returns
    -------
    numpy.ndarray
        Ranks with the shape of the input.
    """
    cross_dissimilarity = np.asarray(cross_dissimilarity)
    ranks = np.argsort(np.argsort(cross_dissimilarity, axis=1, kind="stable"), axis=1, kind="stable")
    if normalize:
        return ranks / max(cross_dissimilarity.shape[1] - 1, 1)
    return ranks


def select_block(distances: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Square sub-matrix ``distances[index][:, index]``."""
    index = np.asarray(index)
    return np.asarray(distances)[np.ix_(index, index)]


def compare_time_offset(single_track_distances: np.ndarray, time_offset: int = 1) -> np.ndarray:
    """Entries ``(i + time_offset, i)`` of a track's distance matrix (length ``n - time_offset``)."""
    return np.diagonal(np.asarray(single_track_distances), offset=-time_offset).copy()


def dbscan_clustering(embeddings: np.ndarray, eps: float = 0.5, min_samples: int = 5) -> np.ndarray:
    """DBSCAN cluster labels of the embeddings (``-1`` = noise)."""
    cluster = require("sklearn.cluster", "eval", "dbscan_clustering")
    return cluster.DBSCAN(eps=eps, min_samples=min_samples).fit_predict(np.asarray(embeddings))


def clustering_evaluation(embeddings: np.ndarray, annotations: np.ndarray, method: str = "nmi") -> float:
    """Agreement between annotations and default-parameter DBSCAN clusters.

    Parameters
    ----------
    embeddings : numpy.ndarray
        Shape ``(n_samples, n_features)``.
    annotations : numpy.ndarray
        Label per sample.
    method : {"nmi", "ari"}
        Normalised mutual information or adjusted Rand index.

    Returns
    -------
    float
        The score.
    """
    if method not in ("nmi", "ari"):
        raise ValueError("Invalid method. Choose 'nmi' or 'ari'.")
    metrics = require("sklearn.metrics", "eval", "clustering_evaluation")
    labels = dbscan_clustering(embeddings)
    if method == "nmi":
        return float(metrics.normalized_mutual_info_score(annotations, labels))
    return float(metrics.adjusted_rand_score(annotations, labels))
