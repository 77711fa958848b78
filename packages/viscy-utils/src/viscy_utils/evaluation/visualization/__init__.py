"""Figures of embeddings and the interactive embedding explorer.

Static figures (matplotlib, written as PNG) live in small modules by purpose: ``embeddings``
(scatter coloured by a column), ``tracks`` (trajectories of cells through embedding space),
``distributions`` (smoothness distance histograms). ``EmbeddingVisualizationApp`` (``app``) is a
Dash application and needs the ``[viz]`` extra.
"""

from viscy_utils.evaluation.visualization.app import EmbeddingVisualizationApp
from viscy_utils.evaluation.visualization.distributions import plot_smoothness_distributions
from viscy_utils.evaluation.visualization.embeddings import plot_embedding_scatter
from viscy_utils.evaluation.visualization.tracks import plot_track_trajectories

__all__ = [
    "EmbeddingVisualizationApp",
    "plot_embedding_scatter",
    "plot_smoothness_distributions",
    "plot_track_trajectories",
]
