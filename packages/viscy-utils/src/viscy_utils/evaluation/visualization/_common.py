"""Shared plumbing of the static figures: coordinates from embeddings and PNG output."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from viscy_utils.evaluation._inputs import _is_anndata, get_obs, to_dense


def embedding_coordinates(
    embeddings: Any, basis: str | list[str], components: tuple[int, int] = (0, 1)
) -> tuple[np.ndarray, pd.DataFrame, tuple[str, str]]:
    """Return 2-D coordinates ``(n, 2)``, per-sample metadata and axis labels.

    Parameters
    ----------
    embeddings : AnnData or pandas.DataFrame
        AnnData: ``basis`` is an ``obsm`` key (``"X_umap"``, ``"X_pca"``, ...) or ``"X"``.
        DataFrame: ``basis`` is a list of two column names (``["UMAP1", "UMAP2"]``).
    basis : str or list of str
        See above.
    components : tuple of int
        Columns of the ``obsm`` matrix to plot.
    """
    if isinstance(embeddings, pd.DataFrame):
        if isinstance(basis, str) or len(basis) != 2:
            raise ValueError(f"for a DataFrame, basis must name two columns, got {basis!r}")
        missing = [c for c in basis if c not in embeddings.columns]
        if missing:
            raise KeyError(f"columns {missing} not in the DataFrame (columns: {list(embeddings.columns)})")
        obs = embeddings.reset_index(drop=True)
        return embeddings[list(basis)].to_numpy(dtype=np.float64), obs, (basis[0], basis[1])
    if not _is_anndata(embeddings):
        raise TypeError(f"expected AnnData or DataFrame, got {type(embeddings).__name__}")
    if basis == "X":
        matrix = to_dense(embeddings.X)
    elif basis in embeddings.obsm:
        matrix = to_dense(embeddings.obsm[basis])
    else:
        raise KeyError(f"basis {basis!r} not in obsm (available: {sorted(embeddings.obsm.keys())}) nor 'X'")
    if matrix.shape[1] <= max(components):
        raise ValueError(f"basis {basis!r} has {matrix.shape[1]} components; cannot plot components {components}")
    name = basis.removeprefix("X_").upper()
    labels = (f"{name}{components[0] + 1}", f"{name}{components[1] + 1}")
    return matrix[:, list(components)].astype(np.float64), get_obs(embeddings), labels


def save_figure(figure: Figure, output_path: str | Path, dpi: int = 150) -> Path:
    """Write ``figure`` as PNG (creating parent folders) and return the path."""
    output_path = Path(output_path)
    if output_path.suffix.lower() != ".png":
        raise ValueError(f"figures are written as PNG; got output path {output_path}")
    output_path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output_path, dpi=dpi, bbox_inches="tight", format="png")
    return output_path
