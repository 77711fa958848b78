import sys

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from viscy_utils.evaluation.clustering import (
    clustering_evaluation,
    compare_time_offset,
    dbscan_clustering,
    knn_accuracy,
    pairwise_distance_matrix,
    rank_nearest_neighbors,
    select_block,
)


def _blobs(seed=0, n_per=30):
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = np.concatenate([rng.normal(c, 0.3, size=(n_per, 2)) for c in centres])
    return x, np.repeat(["a", "b", "c"], n_per)


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "cityblock"])
@pytest.mark.parametrize("device", ["auto", "cpu", None, "scipy", "gpu"])
def test_pairwise_distance_matches_scipy(metric, device):
    x = np.random.default_rng(1).normal(size=(50, 7)).astype(np.float32)
    d = pairwise_distance_matrix(x, metric=metric, device=device)
    assert d.dtype == np.float64 and d.shape == (50, 50)
    np.testing.assert_allclose(d, cdist(x.astype(np.float64), x.astype(np.float64), metric=metric), atol=1e-10)


def test_pairwise_distance_blocks(monkeypatch):
    import viscy_utils.evaluation.clustering as clustering

    monkeypatch.setattr(clustering, "_BLOCK_ROWS", 7)
    x = np.random.default_rng(2).normal(size=(30, 4))
    np.testing.assert_allclose(pairwise_distance_matrix(x, "euclidean", "cpu"), cdist(x, x), atol=1e-12)


def test_pairwise_distance_errors():
    with pytest.raises(ValueError, match="'tpu'"):
        pairwise_distance_matrix(np.zeros((3, 2)), device="tpu")
    with pytest.raises(ValueError, match="2-D"):
        pairwise_distance_matrix(np.zeros(3))


def test_rank_nearest_neighbors():
    d = np.array([[0.0, 3.0, 1.0, 2.0], [3.0, 0.0, 5.0, 4.0]])
    np.testing.assert_array_equal(rank_nearest_neighbors(d, normalize=False), [[0, 3, 1, 2], [1, 0, 3, 2]])
    np.testing.assert_allclose(rank_nearest_neighbors(d), [[0, 1, 1 / 3, 2 / 3], [1 / 3, 0, 1, 2 / 3]])


def test_select_block_and_time_offset():
    m = np.arange(25).reshape(5, 5)
    np.testing.assert_array_equal(select_block(m, [1, 3]), [[6, 8], [16, 18]])
    np.testing.assert_array_equal(compare_time_offset(m, 1), [5, 11, 17, 23])
    np.testing.assert_array_equal(compare_time_offset(m, 2), [10, 16, 22])


def test_knn_accuracy_on_blobs():
    x, y = _blobs()
    assert knn_accuracy(x, y, k=5) == 1.0
    assert knn_accuracy(x, y, k=5, leave_one_out=False) == 1.0
    # random labels: leave-one-out is near chance, scoring on training data is optimistic
    rng = np.random.default_rng(3)
    noise = rng.normal(size=(300, 5))
    labels = rng.integers(0, 2, 300)
    honest = knn_accuracy(noise, labels, k=1)
    assert 0.35 < honest < 0.65
    assert knn_accuracy(noise, labels, k=1, leave_one_out=False) == 1.0
    with pytest.raises(ValueError, match="annotations has 2"):
        knn_accuracy(noise, labels[:2])


def test_dbscan_and_clustering_evaluation():
    x, y = _blobs()
    labels = dbscan_clustering(x, eps=1.0, min_samples=3)
    assert len(set(labels) - {-1}) == 3
    assert clustering_evaluation(x, y, "nmi") == pytest.approx(1.0)
    assert clustering_evaluation(x, y, "ari") == pytest.approx(1.0)
    with pytest.raises(ValueError, match="Invalid method. Choose 'nmi' or 'ari'."):
        clustering_evaluation(x, y, "f1")


def test_missing_sklearn(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.cluster", None)
    with pytest.raises(ImportError, match=r"viscy-utils\[eval\]"):
        dbscan_clustering(np.zeros((4, 2)))
