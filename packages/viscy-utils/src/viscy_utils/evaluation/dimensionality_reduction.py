"""PCA, UMAP and PHATE of embeddings (needs the ``[eval]`` extra: scikit-learn, umap-learn, phate).

Every function accepts an AnnData (``X`` = features, ``obsm["X_projections"]``), a legacy xarray
embedding dataset (``features``/``projections`` variables) or, where no metadata is used, an array.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from viscy_utils.evaluation._inputs import _is_xarray_dataset, get_features, get_obs
from viscy_utils.evaluation._optional import require

__all__ = ["compute_pca", "compute_phate", "compute_umap"]

_ID_COLUMNS = ["id", "fov_name", "t", "track_id"]


def _standardize(features: np.ndarray) -> np.ndarray:
    preprocessing = require("sklearn.preprocessing", "eval", "feature scaling")
    return preprocessing.StandardScaler().fit_transform(features)


def _metadata_columns(data: Any, columns: list[str]) -> pd.DataFrame:
    """Return the requested metadata columns that ``data`` carries (empty frame for plain arrays)."""
    try:
        obs = get_obs(data)
    except TypeError:
        return pd.DataFrame()
    return obs[[c for c in columns if c in obs.columns]]


def compute_phate(
    embedding_dataset: Any,
    scale_embeddings: bool = False,
    n_components: int = 2,
    knn: int = 5,
    decay: int = 40,
    update_dataset: bool = False,
    random_state: int = 42,
    **phate_kwargs: Any,
) -> tuple[Any, np.ndarray]:
    """Embed features with PHATE.

    Parameters
    ----------
    embedding_dataset : AnnData, xarray.Dataset or array-like
        Embeddings (features are used).
    scale_embeddings : bool
        Standardise features first.
    n_components, knn, decay, random_state
        PHATE parameters.
    update_dataset : bool
        For an xarray dataset, write the first (up to two) components into its existing ``PHATE1``
        and ``PHATE2`` variables/coordinates; for an AnnData, store all components in
        ``obsm["X_phate"]``.
    **phate_kwargs
        Further ``phate.PHATE`` arguments (e.g. ``n_jobs``).

    Returns
    -------
    tuple
        The fitted ``phate.PHATE`` model and the embedding, shape ``(n_samples, n_components)``.
    """
    try:
        import phate
    except ImportError as err:
        raise ImportError('PHATE is not available. Install with: pip install "viscy-utils[eval]"') from err
    features = get_features(embedding_dataset)
    if scale_embeddings:
        features = _standardize(features)
    phate_kwargs.setdefault("verbose", 0)
    model = phate.PHATE(n_components=n_components, knn=knn, decay=decay, random_state=random_state, **phate_kwargs)
    embedding = np.asarray(model.fit_transform(features))
    if update_dataset:
        if _is_xarray_dataset(embedding_dataset):
            for i in range(min(2, n_components)):
                embedding_dataset[f"PHATE{i + 1}"].values = embedding[:, i]
        elif hasattr(embedding_dataset, "obsm"):
            embedding_dataset.obsm["X_phate"] = embedding
    return model, embedding


def compute_pca(
    embedding_dataset: Any, n_components: int | None = None, normalize_features: bool = True
) -> tuple[np.ndarray, pd.DataFrame]:
    """Principal components of the features.

    Parameters
    ----------
    embedding_dataset : AnnData, xarray.Dataset or array-like
        Embeddings (features are used).
    n_components : int, optional
        Number of components (all when None).
    normalize_features : bool
        Standardise features before PCA.

    Returns
    -------
    tuple
        ``(components (n_samples, k), DataFrame)``; the frame has ``PC1..PCk`` preceded by the
        ``id, fov_name, t, track_id`` columns the input carries.
    """
    decomposition = require("sklearn.decomposition", "eval", "compute_pca")
    features = get_features(embedding_dataset)
    if normalize_features:
        features = _standardize(features)
    components = decomposition.PCA(n_components=n_components, random_state=42).fit_transform(features)
    frame = _metadata_columns(embedding_dataset, _ID_COLUMNS).reset_index(drop=True)
    pcs = pd.DataFrame(components, columns=[f"PC{i + 1}" for i in range(components.shape[1])])
    return components, pd.concat([frame, pcs], axis=1)


def _fit_transform_umap(
    embeddings: np.ndarray, n_components: int = 2, n_neighbors: int = 15, normalize: bool = True
) -> tuple[Any, np.ndarray]:
    """Fit UMAP (random_state 42) on optionally standardised ``embeddings``; return model and embedding."""
    try:
        import umap
    except ImportError as err:
        raise ImportError('UMAP is not available. Install with: pip install "viscy-utils[eval]"') from err
    embeddings = np.asarray(embeddings)
    if normalize:
        embeddings = _standardize(embeddings)
    model = umap.UMAP(n_components=n_components, n_neighbors=n_neighbors, random_state=42)
    return model, np.asarray(model.fit_transform(embeddings))


def compute_umap(embedding_dataset: Any, normalize_features: bool = True) -> tuple[Any, Any, pd.DataFrame]:
    """2-D UMAP of features and of projections.

    Parameters
    ----------
    embedding_dataset : AnnData or xarray.Dataset
        Embeddings with both features and projections.
    normalize_features : bool
        Standardise each matrix before UMAP.

    Returns
    -------
    tuple
        ``(features_model, projections_model, DataFrame)``; the frame has the ``id, track_id, t,
        fov_name`` columns present then ``UMAP1, UMAP2, UMAP1_proj, UMAP2_proj``.
    """
    features = get_features(embedding_dataset)
    projections = get_features(embedding_dataset, "projections")
    n_neighbors = max(2, min(15, features.shape[0] - 1))
    features_model, features_umap = _fit_transform_umap(features, n_neighbors=n_neighbors, normalize=normalize_features)
    projection_model, projection_umap = _fit_transform_umap(
        projections, n_neighbors=n_neighbors, normalize=normalize_features
    )
    frame = _metadata_columns(embedding_dataset, ["id", "track_id", "t", "fov_name"]).reset_index(drop=True)
    frame = frame.assign(
        UMAP1=features_umap[:, 0],
        UMAP2=features_umap[:, 1],
        UMAP1_proj=projection_umap[:, 0],
        UMAP2_proj=projection_umap[:, 1],
    )
    return features_model, projection_model, frame
