"""Scatter plots of 2-D embeddings coloured by a metadata column."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure

from viscy_utils.evaluation.visualization._common import embedding_coordinates, save_figure

__all__ = ["plot_embedding_scatter"]

_MISSING_COLOR = "lightgrey"


def plot_embedding_scatter(
    embeddings: Any,
    color_by: str | None,
    output_path: str | Path,
    basis: str | list[str] = "X_umap",
    components: tuple[int, int] = (0, 1),
    title: str | None = None,
    point_size: float = 4.0,
    cmap: str = "viridis",
) -> Path:
    """Scatter the embedding and save it as PNG.

    Numeric columns get a continuous colour map and a colour bar; other columns (strings,
    categories) one colour per level and a legend. Samples with a missing value are grey.

    Parameters
    ----------
    embeddings : AnnData or pandas.DataFrame
        AnnData (``basis`` an ``obsm`` key or ``"X"``, ``color_by`` an ``obs`` column) or a frame
        (``basis`` two column names).
    color_by : str or None
        Column colouring the points (None: one colour).
    output_path : str or Path
        Destination ``.png``.
    basis : str or list of str
        Coordinates to plot (default ``"X_umap"``).
    components : tuple of int
        Which two components of the basis.
    title : str, optional
        Figure title.
    point_size : float
        Marker area.
    cmap : str
        Matplotlib colour map of numeric columns.

    Returns
    -------
    Path
        The written file.
    """
    xy, obs, (xlabel, ylabel) = embedding_coordinates(embeddings, basis, components)
    figure = Figure(figsize=(6, 5))
    ax = figure.add_subplot()
    if color_by is None:
        ax.scatter(xy[:, 0], xy[:, 1], s=point_size, linewidths=0)
    else:
        if color_by not in obs.columns:
            raise KeyError(f"color_by column {color_by!r} not found (columns: {list(obs.columns)})")
        values = obs[color_by]
        missing = values.isna().to_numpy()
        ax.scatter(xy[missing, 0], xy[missing, 1], s=point_size, c=_MISSING_COLOR, linewidths=0, label="missing")
        present = ~missing
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            points = ax.scatter(
                xy[present, 0], xy[present, 1], s=point_size, c=values[present].to_numpy(), cmap=cmap, linewidths=0
            )
            figure.colorbar(points, ax=ax, label=color_by)
        else:
            levels, codes = np.unique(values[present].astype(str).to_numpy(), return_inverse=True)
            palette = colormaps["tab10" if len(levels) <= 10 else "tab20"]
            for i, level in enumerate(levels):
                sel = np.flatnonzero(present)[codes == i]
                ax.scatter(
                    xy[sel, 0], xy[sel, 1], s=point_size, color=palette(i % palette.N), linewidths=0, label=level
                )
            ax.legend(title=color_by, markerscale=3, fontsize="small", loc="best")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title or (f"{basis} coloured by {color_by}" if color_by else str(basis)))
    return save_figure(figure, output_path)
