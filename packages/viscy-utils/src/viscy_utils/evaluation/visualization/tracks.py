"""Trajectories of tracked cells through a 2-D embedding."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.collections import LineCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from viscy_utils.evaluation._inputs import require_columns, track_groups
from viscy_utils.evaluation.visualization._common import embedding_coordinates, save_figure

__all__ = ["plot_track_trajectories"]


def plot_track_trajectories(
    embeddings: Any,
    output_path: str | Path,
    basis: str | list[str] = "X_umap",
    tracks: list[tuple[str, int]] | None = None,
    max_tracks: int = 20,
    components: tuple[int, int] = (0, 1),
    title: str | None = None,
    cmap: str = "viridis",
) -> Path:
    """Draw each track as a time-coloured path over the grey cloud of all samples; save as PNG.

    Parameters
    ----------
    embeddings : AnnData or pandas.DataFrame
        Embedding with ``fov_name``, ``track_id`` and ``t`` metadata (see ``plot_embedding_scatter``).
    output_path : str or Path
        Destination ``.png``.
    basis : str or list of str
        Coordinates (``obsm`` key, ``"X"``, or two frame columns).
    tracks : list of (fov_name, track_id), optional
        Tracks to draw; default the ``max_tracks`` longest.
    max_tracks : int
        Limit when ``tracks`` is None.
    components : tuple of int
        Which two components of the basis.
    title : str, optional
        Figure title.
    cmap : str
        Colour map of time.

    Returns
    -------
    Path
        The written file.
    """
    xy, obs, (xlabel, ylabel) = embedding_coordinates(embeddings, basis, components)
    require_columns(obs, ["fov_name", "track_id", "t"], "plot_track_trajectories")
    obs = obs.assign(fov_name=obs["fov_name"].astype(str).str.strip("/"))
    groups = track_groups(obs, ["fov_name", "track_id"])
    keys = [(obs["fov_name"].iat[g[0]], obs["track_id"].iat[g[0]]) for g in groups]
    if tracks is not None:
        wanted = {(str(f).strip("/"), t) for f, t in tracks}
        selected = [g for g, k in zip(groups, keys, strict=True) if k in wanted]
        found = {k for k in keys if k in wanted}
        if wanted - found:
            raise KeyError(f"tracks not found in the embeddings: {sorted(wanted - found)}")
    else:
        selected = sorted(groups, key=len, reverse=True)[:max_tracks]
    times = obs["t"].to_numpy(dtype=np.float64)
    norm = Normalize(vmin=times.min(), vmax=max(times.max(), times.min() + 1))
    figure = Figure(figsize=(6, 5))
    ax = figure.add_subplot()
    ax.scatter(xy[:, 0], xy[:, 1], s=2, c="lightgrey", linewidths=0)
    segments = [np.stack([xy[rows[:-1]], xy[rows[1:]]], axis=1) for rows in selected if len(rows) > 1]
    if segments:
        step_times = np.concatenate([times[rows[1:]] for rows in selected if len(rows) > 1])
        lines = LineCollection(np.concatenate(segments), cmap=colormaps[cmap], norm=norm, linewidths=1.2)
        lines.set_array(step_times)
        ax.add_collection(lines)
    starts = np.array([rows[0] for rows in selected], dtype=np.int64)
    points = ax.scatter(xy[starts, 0], xy[starts, 1], c=times[starts], cmap=cmap, norm=norm, s=25, marker="o")
    figure.colorbar(points, ax=ax, label="t")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title or f"{len(selected)} tracks in {basis}")
    return save_figure(figure, output_path)
