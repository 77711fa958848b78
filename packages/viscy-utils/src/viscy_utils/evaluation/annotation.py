"""Attach annotation CSVs to embeddings and convert legacy xarray embedding stores to AnnData."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import xarray as xr

from viscy_data import INDEX_COLUMNS
from viscy_utils.evaluation._inputs import get_obs
from viscy_utils.evaluation._optional import require

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = ["convert", "load_annotation_anndata"]

_REDUCTIONS = {"pca": "X_pca", "umap": "X_umap", "phate": "X_phate"}


def _join_keys(fov_name: pd.Series, ids: pd.Series) -> pd.MultiIndex:
    """(fov_name, id) keys with ``/`` stripped from FOV names and integer ids where possible."""
    if ids.dtype == object:
        numeric = pd.to_numeric(ids, errors="coerce")
        ids = numeric if numeric.notna().all() else ids
    if pd.api.types.is_float_dtype(ids) and np.all(np.isfinite(ids)) and np.all(ids == np.round(ids)):
        ids = ids.astype(np.int64)
    return pd.MultiIndex.from_arrays(
        [fov_name.astype(str).str.strip("/").to_numpy(), np.asarray(ids)], names=["fov_name", "id"]
    )


def load_annotation_anndata(adata: AnnData, path: str, name: str, categories: dict | None = None) -> AnnData:
    """Attach one annotation column of a CSV to ``adata.obs``, joined on (``fov_name``, ``id``).

    Parameters
    ----------
    adata : AnnData
        Embeddings whose ``obs`` has ``fov_name`` and ``id`` columns.
    path : str
        Annotation CSV with ``fov_name`` (leading ``/`` tolerated), ``id`` and the column ``name``.
    name : str
        Column of the CSV to attach; written to ``adata.obs[name]``.
    categories : dict, optional
        Renames categorical levels, e.g. ``{1: "uninfected", 2: "infected"}``.

    Returns
    -------
    AnnData
        ``adata`` itself, modified in place. Cells without an annotation get NaN.

    Raises
    ------
    KeyError
        When the CSV lacks ``name``, ``fov_name`` or ``id``, or ``adata.obs`` lacks ``fov_name``/``id``.
    ValueError
        When the CSV holds the same (fov_name, id) more than once.
    """
    annotations = pd.read_csv(path)
    for column in ("fov_name", "id", name):
        if column not in annotations.columns:
            raise KeyError(f"Annotation CSV {path} has no column {column!r} (columns: {list(annotations.columns)})")
    for column in ("fov_name", "id"):
        if column not in adata.obs.columns:
            raise KeyError(f"adata.obs has no column {column!r} needed to join annotations from {path}")
    annotations.index = _join_keys(annotations["fov_name"], annotations["id"])
    duplicated = annotations.index.duplicated()
    if duplicated.any():
        examples = list(annotations.index[duplicated][:3])
        raise ValueError(f"Annotation CSV {path} has duplicated (fov_name, id) rows, e.g. {examples}")
    values = annotations[name].reindex(_join_keys(adata.obs["fov_name"], adata.obs["id"]))
    if categories:
        values = values.astype("category").cat.rename_categories(categories)
    adata.obs[name] = pd.Series(values.array, index=adata.obs.index)
    return adata


def convert(
    embeddings_ds: xr.Dataset | Path,
    output_path: Path,
    overwrite: bool = False,
    return_anndata: bool = False,
) -> AnnData | None:
    """Convert a legacy xarray embedding store (or opened dataset) to an AnnData zarr store.

    Parameters
    ----------
    embeddings_ds : xarray.Dataset or Path
        Dataset with a ``features`` variable (sample, features) and per-sample coordinates, or the
        path of such a zarr store.
    output_path : Path
        Destination AnnData zarr store.
    overwrite : bool
        Replace an existing ``output_path``; otherwise an existing path raises ``FileExistsError``.
    return_anndata : bool
        Return the AnnData object as well as writing it.

    Returns
    -------
    AnnData or None
        The converted object when ``return_anndata`` is true.
    """
    anndata = require("anndata", "anndata", "convert")
    output_path = Path(output_path)
    if output_path.exists() and not overwrite:
        raise FileExistsError(f"Output path {output_path} already exists; pass overwrite=True to replace it.")
    if not isinstance(embeddings_ds, xr.Dataset):
        embeddings_ds = xr.open_zarr(embeddings_ds)
    if "features" not in embeddings_ds:
        raise KeyError(f"xarray dataset has no 'features' variable (variables: {list(embeddings_ds.data_vars)})")
    natsort = require("natsort", "eval", "convert")
    coords = get_obs(embeddings_ds)
    obs = coords[[c for c in INDEX_COLUMNS if c in coords.columns]].copy()
    obs.index = obs.index.astype(str)
    obsm = {}
    if "projections" in coords.columns:
        obsm["X_projections"] = np.stack(coords["projections"].to_numpy())
    elif "projections" in embeddings_ds:
        obsm["X_projections"] = np.asarray(embeddings_ds["projections"].values)
    for token, key in _REDUCTIONS.items():
        columns = natsort.natsorted(c for c in coords.columns if token in c.lower())
        if columns:
            obsm[key] = coords[columns].to_numpy(dtype=np.float64)
    adata = anndata.AnnData(X=np.asarray(embeddings_ds["features"].values), obs=obs, obsm=obsm)
    if output_path.exists():
        shutil.rmtree(output_path)
    adata.write_zarr(output_path)
    return adata if return_anndata else None
