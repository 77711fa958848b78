import sys

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import xarray as xr

import viscy_utils.evaluation as evaluation
from viscy_utils.evaluation.annotation import convert, load_annotation_anndata


def _adata(n=6):
    obs = pd.DataFrame(
        {
            "fov_name": ["A/1/0"] * 3 + ["/B/2/0"] * (n - 3),
            "id": np.arange(n),
            "track_id": [0, 0, 0, 1, 1, 1][:n],
            "t": [0, 1, 2, 0, 1, 2][:n],
        },
        index=[str(i) for i in range(n)],
    )
    return ad.AnnData(X=np.arange(n * 4, dtype=np.float32).reshape(n, 4), obs=obs)


def test_lazy_package_attribute():
    assert evaluation.__all__ == ["load_annotation_anndata"]
    assert evaluation.load_annotation_anndata is load_annotation_anndata
    with pytest.raises(AttributeError, match="no_such_name"):
        evaluation.no_such_name  # noqa: B018


def test_load_annotation_joins_on_fov_and_id(tmp_path):
    csv = tmp_path / "ann.csv"
    # leading slash in CSV fov names, reversed row order, one cell missing (id 4)
    pd.DataFrame(
        {
            "fov_name": ["/B/2/0", "/B/2/0", "/A/1/0", "/A/1/0", "/A/1/0"],
            "id": [5, 3, 2, 1, 0],
            "infection_state": ["infected", "uninfected", "infected", "uninfected", "uninfected"],
        }
    ).to_csv(csv, index=False)
    adata = _adata()
    out = load_annotation_anndata(adata, str(csv), "infection_state")
    assert out is adata
    values = adata.obs["infection_state"].tolist()
    assert values[:4] == ["uninfected", "uninfected", "infected", "uninfected"]
    assert pd.isna(values[4])
    assert values[5] == "infected"


def test_load_annotation_categories_and_errors(tmp_path):
    csv = tmp_path / "ann.csv"
    pd.DataFrame({"fov_name": ["A/1/0"] * 3, "id": [0, 1, 2], "state": [1, 2, 1]}).to_csv(csv, index=False)
    adata = load_annotation_anndata(_adata(), str(csv), "state", categories={1: "alive", 2: "dead"})
    assert adata.obs["state"].iloc[:3].tolist() == ["alive", "dead", "alive"]
    assert adata.obs["state"].iloc[3:].isna().all()
    with pytest.raises(KeyError, match="missing_col"):
        load_annotation_anndata(_adata(), str(csv), "missing_col")
    dup = tmp_path / "dup.csv"
    pd.DataFrame({"fov_name": ["A/1/0", "/A/1/0"], "id": [0, 0], "state": [1, 2]}).to_csv(dup, index=False)
    with pytest.raises(ValueError, match="duplicated"):
        load_annotation_anndata(_adata(), str(dup), "state")


def _legacy_dataset(n=5):
    rng = np.random.default_rng(0)
    coords = {
        "fov_name": ("sample", ["/A/1/0"] * n),
        "track_id": ("sample", np.arange(n)),
        "t": ("sample", np.zeros(n, dtype=int)),
        "id": ("sample", np.arange(n)),
        "UMAP2": ("sample", rng.normal(size=n)),
        "UMAP1": ("sample", rng.normal(size=n)),
        "PCA10": ("sample", rng.normal(size=n)),
        "PCA2": ("sample", rng.normal(size=n)),
    }
    return xr.Dataset(
        {"features": (("sample", "features"), rng.normal(size=(n, 8)))},
        coords=coords,
    )


def test_convert_legacy_xarray(tmp_path):
    ds = _legacy_dataset()
    out = tmp_path / "emb.zarr"
    adata = convert(ds, out, return_anndata=True)
    assert adata.shape == (5, 8)
    np.testing.assert_array_equal(adata.X, ds["features"].values)
    assert list(adata.obs.columns) == ["fov_name", "track_id", "t", "id"]
    assert (adata.obs["fov_name"] == "A/1/0").all()
    # natural sort: UMAP1 before UMAP2, PCA2 before PCA10
    np.testing.assert_array_equal(adata.obsm["X_umap"][:, 0], ds["UMAP1"].values)
    np.testing.assert_array_equal(adata.obsm["X_pca"][:, 1], ds["PCA10"].values)
    back = ad.read_zarr(out)
    np.testing.assert_allclose(back.X, adata.X)
    with pytest.raises(FileExistsError, match="emb.zarr"):
        convert(ds, out)
    assert convert(ds, out, overwrite=True) is None


def test_convert_needs_anndata(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "anndata", None)
    with pytest.raises(ImportError, match=r"viscy-utils\[anndata\]"):
        convert(_legacy_dataset(), tmp_path / "x.zarr")
