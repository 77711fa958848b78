"""The demo's evaluation: linear probe of infection state, temporal smoothness, embedding figure."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["EmbeddingScores", "label_embeddings", "plot_embeddings", "score_embeddings"]

#: ground-truth columns joined onto the embedding stores
_KEYS = ["fov_name", "track_id", "t"]


@dataclass(frozen=True)
class EmbeddingScores:
    """How well one encoder's embeddings capture infection and time.

    Attributes
    ----------
    balanced_accuracy : float
        Balanced accuracy of infection state on the held-out experiment, from a logistic regression
        trained on the training experiments' embeddings.
    smoothness : float
        Mean cosine distance between consecutive frames of a track divided by that of random pairs
        (held-out experiment, standardised features); lower is smoother.
    """

    balanced_accuracy: float
    smoothness: float


def label_embeddings(store: str | Path, annotations: pd.DataFrame):
    """Read an EmbeddingWriter store and add the ground truth of its cells to ``obs``.

    Parameters
    ----------
    store : str or pathlib.Path
        AnnData zarr store written by :class:`~viscy_utils.callbacks.embedding_writer.EmbeddingWriter`.
    annotations : pandas.DataFrame
        One experiment's ground truth with ``fov_name, track_id, t, infection_state``.

    Returns
    -------
    anndata.AnnData
        The embeddings with ``obs["infection_state"]`` (0/1).

    Raises
    ------
    ValueError
        If a predicted cell has no ground truth.
    """
    import anndata

    adata = anndata.read_zarr(store)
    obs = adata.obs.reset_index(drop=True)
    keyed = obs[_KEYS].astype({"fov_name": str, "track_id": np.int64, "t": np.int64})
    truth = annotations[[*_KEYS, "infection_state"]].astype({"fov_name": str, "track_id": np.int64, "t": np.int64})
    merged = keyed.merge(truth, on=_KEYS, how="left", validate="one_to_one")
    missing = merged["infection_state"].isna()
    if missing.any():
        example = keyed[missing].iloc[0].to_dict()
        raise ValueError(f"{store}: {int(missing.sum())} embedded cells have no annotation, e.g. {example}")
    adata.obs["infection_state"] = merged["infection_state"].astype(int).to_numpy()
    return adata


def score_embeddings(train, held_out, seed: int = 42) -> EmbeddingScores:
    """Linear-probe accuracy (train -> held-out) and temporal smoothness (held-out).

    Parameters
    ----------
    train : anndata.AnnData
        Labelled embeddings of the training experiments (``obs["infection_state"]``).
    held_out : anndata.AnnData
        Labelled embeddings of the held-out experiment (``obs`` also needs ``fov_name, track_id, t``).
    seed : int, default 42
        Seed of the random pairs of the smoothness figure.

    Returns
    -------
    EmbeddingScores
        The two figures.
    """
    from sklearn.metrics import balanced_accuracy_score

    from viscy_utils.evaluation.linear_classifier import train_linear_classifier
    from viscy_utils.evaluation.smoothness import compute_embeddings_smoothness

    pipeline, _ = train_linear_classifier(
        train,
        "infection_state",
        split_train_data=1.0,
        classifier_params={"max_iter": 2000, "class_weight": "balanced"},
        random_seed=seed,
    )
    predicted = pipeline.predict(np.asarray(held_out.X))
    accuracy = balanced_accuracy_score(held_out.obs["infection_state"].astype(str).to_numpy(), predicted)
    stats, _, _ = compute_embeddings_smoothness(held_out, distance_metric="cosine", seed=seed)
    return EmbeddingScores(balanced_accuracy=float(accuracy), smoothness=float(stats["smoothness_score"]))


def plot_embeddings(embeddings: dict, path: str | Path, interval_minutes: float, start_hpi: float) -> Path:
    """Save a PNG: PCA of each encoder's held-out embeddings, coloured by infection state and by time.

    Parameters
    ----------
    embeddings : dict
        Title (e.g. ``"trained"``) -> labelled held-out AnnData; one row of panels each.
    path : str or pathlib.Path
        PNG to write.
    interval_minutes, start_hpi : float
        The held-out experiment's clock, to show hours post infection.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    fig, axes = plt.subplots(len(embeddings), 2, figsize=(9, 4 * len(embeddings)), squeeze=False)
    for row, (title, adata) in zip(axes, embeddings.items()):
        pcs = PCA(n_components=2, random_state=0).fit_transform(StandardScaler().fit_transform(np.asarray(adata.X)))
        infected = adata.obs["infection_state"].to_numpy() == 1
        hours = start_hpi + adata.obs["t"].to_numpy(dtype=float) * interval_minutes / 60
        for mask, colour, label in ((~infected, "tab:blue", "uninfected"), (infected, "tab:red", "infected")):
            row[0].scatter(pcs[mask, 0], pcs[mask, 1], s=4, c=colour, label=label, alpha=0.6, linewidths=0)
        row[0].legend(markerscale=3, loc="best")
        row[0].set_title(f"{title}: infection state")
        points = row[1].scatter(pcs[:, 0], pcs[:, 1], s=4, c=hours, cmap="viridis", alpha=0.8, linewidths=0)
        fig.colorbar(points, ax=row[1], label="hours post infection")
        row[1].set_title(f"{title}: time")
        for ax in row:
            ax.set_xlabel("PC 1")
            ax.set_ylabel("PC 2")
    fig.suptitle("DynaCLR demo: held-out experiment embeddings (PCA)")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
