import sys
import types

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from viscy_utils.evaluation.visualization import (
    EmbeddingVisualizationApp,
    plot_embedding_scatter,
    plot_smoothness_distributions,
    plot_track_trajectories,
)


def _adata(n_tracks=4, n_t=5, seed=0):
    rng = np.random.default_rng(seed)
    n = n_tracks * n_t
    obs = pd.DataFrame(
        {
            "fov_name": [f"A/1/{k % 2}" for k in range(n_tracks) for _ in range(n_t)],
            "track_id": np.repeat(np.arange(n_tracks), n_t),
            "t": np.tile(np.arange(n_t), n_tracks),
            "id": np.arange(n),
            "y": rng.uniform(10, 54, n),
            "x": rng.uniform(10, 54, n),
            "state": rng.choice(["infected", "uninfected"], n),
        }
    )
    obs.index = obs.index.astype(str)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    return ad.AnnData(X=x, obs=obs, obsm={"X_umap": rng.normal(size=(n, 2)), "X_pca": rng.normal(size=(n, 3))})


def _assert_png(path, expected):
    assert path == expected and path.stat().st_size > 1000
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size[0] > 100 and img.size[1] > 100
        assert np.asarray(img.convert("L")).std() > 0  # not a blank canvas


@pytest.mark.parametrize("color_by", ["state", "t", None])
def test_scatter_writes_png(tmp_path, color_by):
    adata = _adata()
    adata.obs.loc[adata.obs.index[0], "state"] = np.nan
    out = tmp_path / "sub" / f"scatter_{color_by}.png"
    _assert_png(plot_embedding_scatter(adata, color_by, out), out)


def test_scatter_from_dataframe_and_pca_components(tmp_path):
    adata = _adata()
    frame = adata.obs.assign(UMAP1=adata.obsm["X_umap"][:, 0], UMAP2=adata.obsm["X_umap"][:, 1])
    _assert_png(plot_embedding_scatter(frame, "t", tmp_path / "df.png", basis=["UMAP1", "UMAP2"]), tmp_path / "df.png")
    out = tmp_path / "pca.png"
    _assert_png(plot_embedding_scatter(adata, "state", out, basis="X_pca", components=(1, 2)), out)


def test_scatter_errors(tmp_path):
    adata = _adata()
    with pytest.raises(KeyError, match="'nope'"):
        plot_embedding_scatter(adata, "nope", tmp_path / "a.png")
    with pytest.raises(KeyError, match="X_phate"):
        plot_embedding_scatter(adata, "t", tmp_path / "a.png", basis="X_phate")
    with pytest.raises(ValueError, match="PNG"):
        plot_embedding_scatter(adata, "t", tmp_path / "a.jpg")
    with pytest.raises(ValueError, match="components"):
        plot_embedding_scatter(adata, "t", tmp_path / "a.png", components=(0, 2))


def test_track_trajectories_png(tmp_path):
    adata = _adata()
    out = tmp_path / "tracks.png"
    _assert_png(plot_track_trajectories(adata, out), out)
    out2 = tmp_path / "two.png"
    _assert_png(plot_track_trajectories(adata, out2, tracks=[("/A/1/0", 0), ("A/1/1", 1)], basis="X_pca"), out2)
    with pytest.raises(KeyError, match="tracks not found"):
        plot_track_trajectories(adata, tmp_path / "x.png", tracks=[("A/1/0", 1)])


def test_smoothness_distributions_png(tmp_path):
    rng = np.random.default_rng(0)
    dists = {"adjacent_frame_distribution": rng.gamma(2, 0.1, 200), "random_frame_distribution": rng.gamma(5, 0.2, 200)}
    out = tmp_path / "smooth.png"
    _assert_png(plot_smoothness_distributions(dists, out), out)
    with pytest.raises(KeyError, match="random_frame_distribution"):
        plot_smoothness_distributions({"adjacent_frame_distribution": [1.0]}, out)


def test_app_requires_viz_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "dash", None)
    with pytest.raises(ImportError, match=r'pip install "viscy-utils\[viz\]"'):
        EmbeddingVisualizationApp(str(tmp_path), str(tmp_path), str(tmp_path), ["Phase3D"], {"A/1/0": "all"})


@pytest.fixture
def fake_viz(monkeypatch):
    """Stand-ins for dash and plotly so that the app's data preparation runs without them."""
    for name in ("dash", "plotly"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))


def _plate(tmp_path, adata):
    from iohub.ngff import open_ome_zarr

    rng = np.random.default_rng(0)
    path = tmp_path / "plate.zarr"
    with open_ome_zarr(path, layout="hcs", mode="w", channel_names=["Phase3D", "GFP"]) as plate:
        for fov in sorted(set(adata.obs["fov_name"])):
            row, col, name = fov.split("/")
            position = plate.create_position(row, col, name)
            position.create_image("0", rng.random((5, 2, 3, 64, 64)).astype(np.float32))
    return path


def test_app_data_cache_and_clusters(fake_viz, tmp_path):
    adata = _adata()
    del adata.obsm["X_pca"]
    features = tmp_path / "emb.zarr"
    adata.write_zarr(features)
    plate = _plate(tmp_path, adata)
    app = EmbeddingVisualizationApp(
        str(plate),
        str(tmp_path / "tracks"),
        str(features),
        ["Phase3D", "GFP"],
        {"/A/1/0": [0], "A/1/1": "all"},
        z_range=(0, 3),
        yx_patch_size=(16, 16),
        num_PC_components=2,
        output_dir=str(tmp_path / "out"),
        num_loading_workers=2,
    )
    df = app.features_df
    # track 0 of A/1/0 plus both tracks (1, 3) of A/1/1
    assert sorted(set(zip(df["fov_name"], df["track_id"], strict=True))) == [("A/1/0", 0), ("A/1/1", 1), ("A/1/1", 3)]
    assert app.axis_options == ["UMAP1", "UMAP2", "PC1", "PC2"]
    app.preload_images()
    assert len(app.image_cache) == len(df)
    key = ("A/1/0", 0, 0)
    assert set(app.image_cache[key]) == {"Phase3D", "GFP"}
    import base64
    import io

    with Image.open(io.BytesIO(base64.b64decode(app.image_cache[key]["GFP"]))) as img:
        assert img.format == "JPEG" and img.size == (16, 16)
    cache = app.save_cache()
    app.image_cache = {}
    assert app.load_cache(str(cache)) and len(app.image_cache) == len(df)
    app.z_range = (0, 1)  # different settings: the cache must not be reused
    app.image_cache = {}
    assert not app.load_cache(str(cache)) and app.image_cache == {}
    assert not app.load_cache(str(tmp_path / "none.pkl"))

    assert app.save_clusters_to_csv() == ""
    app.add_cluster([("A/1/0", 0, 1), ("A/1/1", 1, 2)], "dividing")
    app.add_cluster([("A/1/1", 3, 0)])
    path = app.save_clusters_to_csv()
    assert path.startswith(str(tmp_path / "out" / "clusters_")) and path.endswith(".csv")
    saved = pd.read_csv(path)
    assert list(saved.columns) == ["cluster_id", "cluster_name", "track_id", "time", "fov_name", "cluster_size"]
    assert saved["cluster_id"].tolist() == [1, 1, 2] and saved["cluster_size"].tolist() == [2, 2, 1]
    assert saved["cluster_name"].tolist() == ["dividing", "dividing", "Cluster 2"]
    assert app.get_output_dir() == tmp_path / "out"
    port = app._free_port(None)
    assert 8050 <= port <= 8070


def test_app_unknown_channel(fake_viz, tmp_path):
    adata = _adata(n_tracks=1, n_t=2)
    adata.write_zarr(tmp_path / "emb.zarr")
    app = EmbeddingVisualizationApp(
        str(_plate(tmp_path, adata)), "", str(tmp_path / "emb.zarr"), "DAPI", {"A/1/0": "all"}, num_loading_workers=1
    )
    assert app.channels_to_display == ["DAPI"]
    with pytest.raises(KeyError, match="DAPI"):
        app.preload_images()
