"""Histograms of adjacent-frame versus random-pair embedding distances."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from viscy_utils.evaluation.visualization._common import save_figure

__all__ = ["plot_smoothness_distributions"]


def plot_smoothness_distributions(
    distributions: dict[str, np.ndarray], output_path: str | Path, bins: int = 50, title: str | None = None
) -> Path:
    """Overlay the two distance distributions of ``compute_embeddings_smoothness``; save as PNG.

    Parameters
    ----------
    distributions : dict
        ``adjacent_frame_distribution`` and ``random_frame_distribution`` arrays.
    output_path : str or Path
        Destination ``.png``.
    bins : int
        Histogram bins (shared by both distributions).
    title : str, optional
        Figure title.

    Returns
    -------
    Path
        The written file.
    """
    keys = ("adjacent_frame_distribution", "random_frame_distribution")
    missing = [k for k in keys if k not in distributions]
    if missing:
        raise KeyError(f"distributions lacks {missing}")
    values = [np.asarray(distributions[k], dtype=np.float64) for k in keys]
    edges = np.histogram_bin_edges(np.concatenate(values), bins=bins)
    figure = Figure(figsize=(6, 4))
    ax = figure.add_subplot()
    for data, label in zip(values, ("adjacent frames", "random pairs"), strict=True):
        ax.hist(data, bins=edges, density=True, alpha=0.5, label=label)
    ax.set_xlabel("distance")
    ax.set_ylabel("density")
    ax.legend()
    ax.set_title(title or "embedding smoothness")
    return save_figure(figure, output_path)
