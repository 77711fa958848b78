"""Uniform access to embeddings stored as AnnData, legacy xarray datasets or plain arrays.

The embedding writer emits AnnData; older stores are xarray datasets with a ``features`` variable
and per-sample coordinates. Evaluation functions accept either (and arrays where no metadata is
needed), so they all go through these helpers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def _is_anndata(data: Any) -> bool:
    return type(data).__name__ == "AnnData" and hasattr(data, "obsm")


def _is_xarray_dataset(data: Any) -> bool:
    return type(data).__name__ == "Dataset" and hasattr(data, "data_vars")


def to_dense(matrix: Any) -> np.ndarray:
    """Return ``matrix`` as a dense numpy array (densifying scipy sparse matrices)."""
    if hasattr(matrix, "toarray"):
        matrix = matrix.toarray()
    return np.asarray(matrix)


def get_features(data: Any, name: str = "features") -> np.ndarray:
    """Return the per-sample embedding matrix, shape ``(n_samples, n_features)``.

    Parameters
    ----------
    data : AnnData, xarray.Dataset or array-like
        AnnData (``X``, or ``obsm["X_projections"]`` when ``name == "projections"``), legacy xarray
        dataset (variable ``name``) or a 2-D array.
    name : str
        ``"features"`` or ``"projections"``.

    Returns
    -------
    numpy.ndarray
        2-D array.
    """
    if _is_anndata(data):
        if name == "features":
            values = to_dense(data.X)
        elif f"X_{name}" in data.obsm:
            values = to_dense(data.obsm[f"X_{name}"])
        else:
            raise KeyError(f"AnnData has no obsm['X_{name}'] (available: {sorted(data.obsm.keys())})")
    elif _is_xarray_dataset(data):
        if name not in data:
            raise KeyError(f"xarray dataset has no variable {name!r} (available: {sorted(data.data_vars)})")
        values = np.asarray(data[name].values)
    else:
        values = np.asarray(data)
    if values.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {values.shape}")
    return values


def get_obs(data: Any) -> pd.DataFrame:
    """Return per-sample metadata (``fov_name``, ``track_id``, ``t``, ...) as a DataFrame.

    ``fov_name`` is stripped of leading/trailing ``/``. The index is a fresh ``RangeIndex`` so rows
    align positionally with :func:`get_features`.
    """
    if _is_anndata(data):
        obs = data.obs.reset_index(drop=True).copy()
    elif _is_xarray_dataset(data):
        dim = "sample" if "sample" in data.dims else next(iter(data.dims))
        columns = {}
        for name, coord in data.coords.items():
            if coord.dims == (dim,) and name != dim:
                columns[name] = np.asarray(coord.values)
        # a sample multi-index exposes its levels as coordinates too; the multi-index itself is skipped
        obs = pd.DataFrame(columns)
    else:
        raise TypeError(f"expected AnnData or xarray.Dataset with per-sample metadata, got {type(data).__name__}")
    if "fov_name" in obs:
        obs["fov_name"] = obs["fov_name"].astype(str).str.strip("/")
    return obs


def require_columns(obs: pd.DataFrame, columns: list[str], what: str) -> None:
    """Raise ``KeyError`` naming the columns of ``obs`` that ``what`` needs but are missing."""
    missing = [c for c in columns if c not in obs.columns]
    if missing:
        raise KeyError(f"{what} needs columns {missing} in the sample metadata (available: {list(obs.columns)})")


def track_groups(obs: pd.DataFrame, groupby: list[str], sort_by: str | None = "t") -> list[np.ndarray]:
    """Row positions of each group, in group order, sorted by ``sort_by`` within a group when present.

    Built with one stable sort instead of filtering the table once per track.
    """
    require_columns(obs, groupby, "grouping by track")
    sort_columns = [*groupby, sort_by] if sort_by is not None and sort_by in obs.columns else list(groupby)
    ordered = obs[sort_columns].reset_index(drop=True).sort_values(sort_columns, kind="stable")
    order = ordered.index.to_numpy()
    positions = ordered.groupby(groupby, sort=False, dropna=False).indices
    return [order[p] for p in positions.values()]
