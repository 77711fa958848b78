"""Write predicted embeddings to an AnnData zarr store, and read embedding stores back.

On-disk format (``AnnData.write_zarr``):

- ``X``: features (n_samples, n_features);
- ``obs``: the index columns of each sample (``fov_name`` without leading/trailing ``/``, ``track_id``,
  ``t``, ``id``, ``parent_track_id``, ``parent_id``, ``z``, ``y``, ``x`` when present), indexed ``"0".."n-1"``;
- ``obsm``: ``X_projections`` and, when requested, ``X_pca``, ``X_umap``, ``X_phate``.

A store is written to a temporary sibling and renamed into place when complete, so readers never
see a partial store. Under multi-process prediction every rank sends its predictions to rank 0,
which alone writes (one file, no concurrent writers); the other ranks wait at a barrier.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter

from viscy_data import INDEX_COLUMNS

__all__ = ["EmbeddingWriter", "get_available_index_columns", "read_embedding_dataset", "write_embedding_dataset"]

_logger = logging.getLogger(__name__)

#: obsm key -> coordinate prefix in the xarray view of a store
_OBSM_COORDS = {"X_pca": "PC", "X_umap": "UMAP", "X_phate": "PHATE"}


def _require_anndata() -> Any:
    try:
        import anndata
    except ImportError as err:
        raise ImportError(
            'Writing and reading AnnData embeddings needs anndata. Install with: pip install "viscy-utils[anndata]"'
        ) from err
    return anndata


def _to_numpy(value: Any) -> Any:
    """Tensors to numpy (on the CPU), 0-d tensors to Python scalars; anything else unchanged."""
    if isinstance(value, torch.Tensor):
        return value.item() if value.ndim == 0 else value.detach().cpu().numpy()
    return value


def _index_frame(index: Any) -> pd.DataFrame:
    """One batch's ``index`` (dict of columns or list of per-sample dicts) as a DataFrame."""
    if isinstance(index, Mapping):
        return pd.DataFrame({key: _to_numpy(value) for key, value in index.items()})
    return pd.DataFrame([{key: _to_numpy(value) for key, value in sample.items()} for sample in index])


def _replace_atomically(tmp: Path, output_path: Path, overwrite: bool) -> None:
    """Move a complete store from ``tmp`` to ``output_path``, replacing an old one only if allowed."""
    if output_path.exists():
        if not overwrite:
            raise FileExistsError(f"Output path {output_path} already exists.")
        old = output_path.with_name(f".{output_path.name}.old-{uuid.uuid4().hex[:8]}")
        output_path.rename(old)
        tmp.rename(output_path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(output_path)


def _adjusted_neighbours(kwargs: dict[str, Any], key: str, default: int, fallback: int, n_samples: int) -> dict:
    """Copy ``kwargs`` with ``key`` defaulted and reduced to ``fallback`` when it reaches ``n_samples``."""
    kwargs = {key: default, **kwargs}
    if kwargs[key] >= n_samples:
        _logger.warning("%s=%d >= number of samples %d; using %d", key, kwargs[key], n_samples, fallback)
        kwargs[key] = fallback
    return kwargs


def write_embedding_dataset(
    output_path: str | Path,
    features: np.ndarray,
    index_df: pd.DataFrame,
    projections: np.ndarray | None = None,
    umap_kwargs: dict[str, Any] | None = None,
    phate_kwargs: dict[str, Any] | None = None,
    pca_kwargs: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> None:
    """Write embeddings and their index to an AnnData zarr store.

    Parameters
    ----------
    output_path : str or pathlib.Path
        Store to create.
    features : numpy.ndarray
        (n_samples, n_features), stored as ``X``.
    index_df : pandas.DataFrame
        One row per sample, with at least a ``fov_name`` column; stored as ``obs``.
    projections : numpy.ndarray, optional
        (n_samples, n_projections), stored as ``obsm["X_projections"]``.
    umap_kwargs : dict, optional
        Non-empty: compute ``obsm["X_umap"]`` (``n_components=2``, ``n_neighbors=15``, ``normalize=True``
        by default; ``n_neighbors`` reduced to ``min(15, n // 2)`` when it is not below n).
    phate_kwargs : dict, optional
        Non-empty: compute ``obsm["X_phate"]`` (``knn=5`` by default, reduced to ``max(2, n // 2)`` when
        it is not below n). A PHATE failure is logged as a warning and the key left out.
    pca_kwargs : dict, optional
        Non-empty: compute ``obsm["X_pca"]``; a failure is logged as a warning and the key left out.
    overwrite : bool
        Replace an existing store (only once the new one is complete).

    Raises
    ------
    FileExistsError
        If ``output_path`` exists and ``overwrite`` is false (checked before any computation).
    ValueError
        If ``fov_name`` is missing or the row counts disagree.
    """
    ad = _require_anndata()
    output_path = Path(output_path)
    if output_path.exists() and not overwrite:
        raise FileExistsError(f"Output path {output_path} already exists.")
    features = np.asarray(features)
    n_samples = features.shape[0]
    if "fov_name" not in index_df.columns:
        raise ValueError(f"index_df needs a 'fov_name' column, got columns {list(index_df.columns)}")
    if len(index_df) != n_samples:
        raise ValueError(f"index_df has {len(index_df)} rows but features have {n_samples}")
    obs = index_df.reset_index(drop=True)
    obs["fov_name"] = obs["fov_name"].astype(str).str.strip("/")
    obs.index = pd.RangeIndex(n_samples).astype(str)
    adata = ad.AnnData(X=features, obs=obs)
    if projections is not None:
        projections = np.asarray(projections)
        if projections.shape[0] != n_samples:
            raise ValueError(f"projections have {projections.shape[0]} rows but features have {n_samples}")
        adata.obsm["X_projections"] = projections
    if umap_kwargs:
        from viscy_utils.evaluation.dimensionality_reduction import _fit_transform_umap

        kwargs = _adjusted_neighbours(umap_kwargs, "n_neighbors", 15, min(15, n_samples // 2), n_samples)
        adata.obsm["X_umap"] = _fit_transform_umap(features, **kwargs)[1]
    if phate_kwargs:
        from viscy_utils.evaluation.dimensionality_reduction import compute_phate

        kwargs = _adjusted_neighbours(phate_kwargs, "knn", 5, max(2, n_samples // 2), n_samples)
        try:
            adata.obsm["X_phate"] = compute_phate(features, **kwargs)[1]
        except Exception:
            _logger.warning("PHATE failed; the store is written without X_phate", exc_info=True)
    if pca_kwargs:
        from viscy_utils.evaluation.dimensionality_reduction import compute_pca

        try:
            adata.obsm["X_pca"] = compute_pca(features, **pca_kwargs)[0]
        except Exception:
            _logger.warning("PCA failed; the store is written without X_pca", exc_info=True)

    output_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = output_path.with_name(f".{output_path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        with ad.settings.override(allow_write_nullable_strings=True):
            adata.write_zarr(tmp)
        _replace_atomically(tmp, output_path, overwrite)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _is_anndata_store(path: Path) -> bool:
    import zarr

    try:
        return zarr.open_group(path, mode="r").attrs.get("encoding-type") == "anndata"
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, ValueError):
        return False


def _anndata_to_xarray(path: Path) -> Any:
    """Open an AnnData store as a legacy-layout xarray Dataset.

    ``features``/``projections`` become variables; obs columns and reductions (``PC1``, ``UMAP1``,
    ``PHATE1``...) become per-sample coordinates.
    """
    import xarray as xr

    adata = _require_anndata().read_zarr(path)
    data_vars = {"features": (("sample", "features"), np.asarray(adata.X))}
    if "X_projections" in adata.obsm:
        data_vars["projections"] = (("sample", "projections"), np.asarray(adata.obsm["X_projections"]))
    coords = {column: ("sample", adata.obs[column].to_numpy()) for column in adata.obs.columns}
    for key, prefix in _OBSM_COORDS.items():
        if key in adata.obsm:
            values = np.asarray(adata.obsm[key])
            coords.update({f"{prefix}{i + 1}": ("sample", values[:, i]) for i in range(values.shape[1])})
    return xr.Dataset(data_vars, coords=coords)


def get_available_index_columns(dataset: Any, dataset_path: str | None = None) -> list[str]:
    """List the :data:`~viscy_data._typing.INDEX_COLUMNS` an embedding dataset carries, in that order.

    Parameters
    ----------
    dataset : xarray.Dataset or anndata.AnnData
        Embeddings (columns are looked up in ``coords`` or ``obs``).
    dataset_path : str, optional
        Only used in the warning message.

    Returns
    -------
    list[str]
        Present index columns; missing ones are reported in a warning.
    """
    present = set(dataset.obs.columns) if hasattr(dataset, "obs") else set(dataset.coords)
    available = [column for column in INDEX_COLUMNS if column in present]
    missing = [column for column in INDEX_COLUMNS if column not in present]
    if missing:
        where = f" in {dataset_path}" if dataset_path else ""
        _logger.warning("Index columns %s are missing%s; it appears to be a legacy dataset format.", missing, where)
    return available


def read_embedding_dataset(path: str | Path) -> Any:
    """Open an embedding store (AnnData zarr or legacy xarray zarr) as an xarray Dataset.

    Parameters
    ----------
    path : str or pathlib.Path
        Store written by :class:`EmbeddingWriter` (AnnData) or by older versions (xarray).

    Returns
    -------
    xarray.Dataset
        ``features`` (sample, features), ``projections`` (sample, projections) when stored, index and
        reduction columns as coordinates, and a ``sample`` multi-index over the available index
        columns.
    """
    import xarray as xr

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Embedding store not found: {path}")
    dataset = _anndata_to_xarray(path) if _is_anndata_store(path) else xr.open_zarr(path)
    index_columns = get_available_index_columns(dataset, str(path))
    return dataset.set_index(sample=index_columns) if index_columns else dataset


class EmbeddingWriter(BasePredictionWriter):
    """Write the embeddings predicted in one epoch to an AnnData zarr store.

    ``predict_step`` must return a dict with ``features`` (B, F) and ``projections`` (B, P) tensors
    and ``index`` (a dict of columns or a list of per-sample dicts with the index columns).

    Parameters
    ----------
    output_path : pathlib.Path
        Store to write.
    write_interval : {"epoch"}
        Only ``"epoch"``: reductions (UMAP, PHATE, PCA) need every sample. ``"batch"`` and
        ``"batch_and_epoch"`` are rejected with a ``ValueError``.
    umap_kwargs, phate_kwargs, pca_kwargs : dict, optional
        See :func:`write_embedding_dataset`; ``None`` or ``{}`` skips the reduction.
    overwrite : bool
        Replace an existing store; otherwise an existing ``output_path`` fails at the start of
        prediction, before any compute is spent.
    """

    def __init__(
        self,
        output_path: Path,
        write_interval: Literal["batch", "epoch", "batch_and_epoch"] = "epoch",
        umap_kwargs: dict | None = None,
        phate_kwargs: dict | None = None,
        pca_kwargs: dict | None = None,
        overwrite: bool = False,
    ) -> None:
        if write_interval != "epoch":
            raise ValueError(
                f"EmbeddingWriter supports write_interval='epoch' only, got {write_interval!r}: "
                "UMAP/PHATE/PCA need all samples at once"
            )
        super().__init__(write_interval)
        self.output_path = Path(output_path)
        self.umap_kwargs = dict(umap_kwargs) if umap_kwargs else None
        self.phate_kwargs = dict(phate_kwargs) if phate_kwargs else None
        self.pca_kwargs = dict(pca_kwargs) if pca_kwargs else None
        self.overwrite = overwrite

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Fail early if the output exists and may not be overwritten."""
        if self.output_path.exists() and not self.overwrite:
            raise FileExistsError(f"Output path {self.output_path} already exists.")

    @staticmethod
    def _collect(predictions: Sequence[Any]) -> tuple[np.ndarray, np.ndarray | None, pd.DataFrame] | None:
        """Concatenate one rank's per-batch predictions (``None`` when this rank predicted nothing)."""
        if predictions and isinstance(predictions[0], list):  # several predict dataloaders
            predictions = [batch for loader in predictions for batch in loader]
        if not predictions:
            return None
        features = torch.cat([p["features"].detach().cpu() for p in predictions]).numpy()
        projections = None
        if all(p.get("projections") is not None for p in predictions):
            projections = torch.cat([p["projections"].detach().cpu() for p in predictions]).numpy()
        index = pd.concat([_index_frame(p["index"]) for p in predictions], ignore_index=True)
        return features, projections, index

    @staticmethod
    def _gather_to_rank_zero(trainer: Trainer, payload: Any) -> list[Any] | None:
        """Every rank's payload on rank 0 (in rank order), ``None`` on the other ranks."""
        if trainer.world_size <= 1:
            return [payload]
        import torch.distributed as dist

        gathered = [None] * trainer.world_size if trainer.global_rank == 0 else None
        dist.gather_object(payload, gathered, dst=0)
        return gathered

    def write_on_epoch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        predictions: Sequence[Any],
        batch_indices: Sequence[Any] | None,
    ) -> None:
        """Gather the epoch's predictions on rank 0 and write them there."""
        parts = self._gather_to_rank_zero(trainer, self._collect(predictions))
        if parts is not None:
            parts = [part for part in parts if part is not None]
            if not parts:
                raise ValueError("EmbeddingWriter received no predictions")
            features = np.concatenate([part[0] for part in parts])
            projections = None
            if all(part[1] is not None for part in parts):
                projections = np.concatenate([part[1] for part in parts])
            index = pd.concat([part[2] for part in parts], ignore_index=True)
            _logger.info("Writing %d embeddings to %s", len(index), self.output_path)
            write_embedding_dataset(
                self.output_path,
                features,
                index,
                projections=projections,
                umap_kwargs=self.umap_kwargs,
                phate_kwargs=self.phate_kwargs,
                pca_kwargs=self.pca_kwargs,
                overwrite=self.overwrite,
            )
        if trainer.world_size > 1:
            trainer.strategy.barrier("EmbeddingWriter")
