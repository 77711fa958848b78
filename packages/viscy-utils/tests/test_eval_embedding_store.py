"""Evaluation tools read what this project's EmbeddingWriter writes (both through anndata and the xarray reader)."""

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from viscy_utils.callbacks.embedding_writer import read_embedding_dataset, write_embedding_dataset
from viscy_utils.evaluation.dimensionality_reduction import compute_pca
from viscy_utils.evaluation.distance import calculate_cosine_similarity_cell, compute_track_displacement
from viscy_utils.evaluation.smoothness import compute_embeddings_smoothness
from viscy_utils.evaluation.visualization import plot_embedding_scatter, plot_track_trajectories


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    rng = np.random.default_rng(0)
    n_tracks, n_t = 6, 8
    n = n_tracks * n_t
    index = pd.DataFrame(
        {
            "fov_name": ["/A/1/0/"] * n,
            "track_id": np.repeat(np.arange(n_tracks), n_t),
            "t": np.tile(np.arange(n_t), n_tracks),
            "id": np.arange(n),
            "parent_track_id": -1,
            "parent_id": -1,
            "z": 0,
            "y": rng.uniform(0, 64, n),
            "x": rng.uniform(0, 64, n),
        }
    )
    features = (rng.normal(size=(n_tracks, 1, 16)) + 0.05 * rng.normal(size=(n_tracks, n_t, 16))).reshape(n, 16)
    path = tmp_path_factory.mktemp("emb") / "embeddings.zarr"
    write_embedding_dataset(path, features, index, projections=features[:, :4], pca_kwargs={"n_components": 3})
    return path, features


def test_anndata_store_feeds_evaluation(store, tmp_path):
    path, features = store
    adata = ad.read_zarr(path)
    stats, _, per_track = compute_embeddings_smoothness(adata)
    assert len(per_track) == 6 and stats["smoothness_score"] < 0.5
    _, frame = compute_pca(adata, n_components=2)
    assert list(frame.columns) == ["id", "fov_name", "t", "track_id", "PC1", "PC2"]
    out = plot_embedding_scatter(adata, "track_id", tmp_path / "pca.png", basis="X_pca")
    assert out.stat().st_size > 1000
    assert plot_track_trajectories(adata, tmp_path / "tracks.png", basis="X_pca").stat().st_size > 1000


def test_xarray_reader_feeds_evaluation(store):
    path, features = store
    dataset = read_embedding_dataset(path)
    times, similarity = calculate_cosine_similarity_cell(dataset, "A/1/0", 2)
    np.testing.assert_array_equal(times, np.arange(8))
    expected = features[16:24] @ features[16] / (np.linalg.norm(features[16:24], axis=1) * np.linalg.norm(features[16]))
    np.testing.assert_allclose(similarity, expected, rtol=1e-5)
    lags = compute_track_displacement(dataset, "euclidean")
    assert sorted(lags) == list(range(1, 8)) and len(lags[1]) == 6 * 7
