import sys

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from viscy_utils.evaluation.dimensionality_reduction import (
    _fit_transform_umap,
    compute_pca,
    compute_phate,
    compute_umap,
)


def _blobs(n_per=20, dim=6, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.zeros((2, dim))
    centres[1, 0] = 20.0
    x = np.concatenate([rng.normal(c, 1.0, size=(n_per, dim)) for c in centres])
    labels = np.repeat([0, 1], n_per)
    return x, labels


def _adata(x):
    n = len(x)
    obs = pd.DataFrame(
        {"fov_name": ["A/1/0"] * n, "track_id": np.arange(n), "t": np.zeros(n, int), "id": np.arange(n)},
        index=[str(i) for i in range(n)],
    )
    rng = np.random.default_rng(1)
    return ad.AnnData(X=x.astype(np.float32), obs=obs, obsm={"X_projections": x[:, :3] + rng.normal(size=(n, 3))})


def test_compute_pca_matches_sklearn_and_keeps_ids():
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    x, _ = _blobs()
    components, frame = compute_pca(_adata(x), n_components=3)
    expected = PCA(n_components=3, random_state=42).fit_transform(StandardScaler().fit_transform(x.astype(np.float32)))
    np.testing.assert_allclose(np.abs(components), np.abs(expected), atol=1e-4)
    assert list(frame.columns) == ["id", "fov_name", "t", "track_id", "PC1", "PC2", "PC3"]
    # array input: only PC columns; unnormalised PCA variance ordering
    comps, frame = compute_pca(x, n_components=2, normalize_features=False)
    assert list(frame.columns) == ["PC1", "PC2"]
    assert comps[:, 0].var() > comps[:, 1].var()


def test_compute_pca_on_legacy_xarray():
    x, _ = _blobs(n_per=5)
    ds = xr.Dataset(
        {"features": (("sample", "features"), x)},
        coords={"fov_name": ("sample", ["/A/1/0"] * 10), "id": ("sample", np.arange(10))},
    )
    _, frame = compute_pca(ds, n_components=2)
    assert list(frame.columns) == ["id", "fov_name", "PC1", "PC2"]
    assert (frame["fov_name"] == "A/1/0").all()


def test_umap_separates_blobs():
    x, labels = _blobs()
    _, emb = _fit_transform_umap(x, n_neighbors=5)
    assert emb.shape == (40, 2)
    centroid_gap = np.linalg.norm(emb[labels == 0].mean(0) - emb[labels == 1].mean(0))
    spread = max(emb[labels == 0].std(0).max(), emb[labels == 1].std(0).max())
    assert centroid_gap > 3 * spread


def test_compute_umap_columns():
    x, _ = _blobs(n_per=10)
    _, _, frame = compute_umap(_adata(x))
    assert list(frame.columns) == ["id", "track_id", "t", "fov_name", "UMAP1", "UMAP2", "UMAP1_proj", "UMAP2_proj"]
    assert len(frame) == 20 and np.isfinite(frame[["UMAP1", "UMAP2_proj"]].to_numpy()).all()


def test_compute_phate_shape_and_update():
    x, labels = _blobs(n_per=15)
    adata = _adata(x)
    _, emb = compute_phate(adata, scale_embeddings=True, knn=3, update_dataset=True, n_jobs=1)
    assert emb.shape == (30, 2)
    np.testing.assert_array_equal(adata.obsm["X_phate"], emb)
    gap = np.linalg.norm(emb[labels == 0].mean(0) - emb[labels == 1].mean(0))
    assert gap > 2 * emb[labels == 0].std(0).max()
    ds = xr.Dataset(
        {
            "features": (("sample", "features"), x),
            "PHATE1": ("sample", np.zeros(30)),
            "PHATE2": ("sample", np.zeros(30)),
        }
    )
    _, emb = compute_phate(ds, knn=3, update_dataset=True, n_jobs=1)
    np.testing.assert_allclose(ds["PHATE2"].values, emb[:, 1])


@pytest.mark.parametrize("module,func", [("phate", compute_phate), ("umap", _fit_transform_umap)])
def test_missing_extra_names_it(monkeypatch, module, func):
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ImportError, match=r'pip install "viscy-utils\[eval\]"'):
        func(np.zeros((5, 2)))


def test_missing_sklearn_names_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.decomposition", None)
    with pytest.raises(ImportError, match=r"viscy-utils\[eval\]"):
        compute_pca(np.zeros((5, 2)))
