import anndata as ad
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy.spatial.distance import cdist

from viscy_utils.evaluation.clustering import rank_nearest_neighbors
from viscy_utils.evaluation.distance import calculate_cosine_similarity_cell, compute_track_displacement
from viscy_utils.evaluation.smoothness import (
    compute_embeddings_smoothness,
    compute_piece_wise_distance,
    compute_temporal_order,
    find_distribution_peak,
)


def _linear_tracks(n_tracks=3, n_t=6, dim=3, shuffle_seed=0):
    """Tracks moving along a line: features = t * v, so distances between frames are known."""
    rng = np.random.default_rng(shuffle_seed)
    v = np.array([1.0, -2.0, 0.5, 1.5, -1.0][:dim])
    rows = [(f"/A/{k % 2}/0", k, t) for k in range(n_tracks) for t in range(n_t)]
    obs = pd.DataFrame(rows, columns=["fov_name", "track_id", "t"])
    obs["id"] = np.arange(len(obs))
    x = obs["t"].to_numpy()[:, None] * v[None, :]
    order = rng.permutation(len(obs))  # rows arrive unsorted; functions must sort by t
    obs = obs.iloc[order].reset_index(drop=True)
    obs.index = obs.index.astype(str)
    return ad.AnnData(X=x[order], obs=obs)


def test_cosine_similarity_cell_known_values():
    x = np.array([[1.0, 1.0], [0.0, 1.0], [1.0, 0.0], [-1.0, 0.0], [5.0, 5.0]])
    obs = pd.DataFrame(
        {"fov_name": ["/A/1/0"] * 4 + ["B/1/0"], "track_id": [7, 7, 7, 7, 7], "t": [1, 2, 0, 3, 0]},
        index=[str(i) for i in range(5)],
    )
    times, sim = calculate_cosine_similarity_cell(ad.AnnData(X=x, obs=obs), "A/1/0", 7)
    np.testing.assert_array_equal(times, [0, 1, 2, 3])
    np.testing.assert_allclose(sim, [1.0, 1 / np.sqrt(2), 0.0, -1.0], atol=1e-12)
    ds = xr.Dataset({"features": (("sample", "features"), x)}, coords={c: ("sample", obs[c].to_numpy()) for c in obs})
    _, sim_ds = calculate_cosine_similarity_cell(ds, "/A/1/0/", 7)
    np.testing.assert_allclose(sim_ds, sim)
    with pytest.raises(KeyError, match="track_id=8"):
        calculate_cosine_similarity_cell(ds, "A/1/0", 8)


def test_track_displacement_buckets_by_lag():
    adata = _linear_tracks(n_tracks=3, n_t=5, dim=2)
    result = compute_track_displacement(adata, distance_metric="euclidean")
    assert list(result) == [1, 2, 3, 4]
    speed = np.linalg.norm([1.0, -2.0])
    for tau, values in result.items():
        assert len(values) == 3 * (5 - tau)
        np.testing.assert_allclose(values, tau * speed)
    # cosine: points on a ray from a non-zero base never change direction, so every distance is 0
    shifted = ad.AnnData(X=adata.X + np.array([1.0, -2.0]), obs=adata.obs)
    cos = compute_track_displacement(shifted, distance_metric="cosine")
    np.testing.assert_allclose(np.concatenate(list(cos.values())), 0.0, atol=1e-12)
    ds = xr.Dataset(
        {"features": (("sample", "features"), adata.X)},
        coords={c: ("sample", adata.obs[c].to_numpy()) for c in adata.obs},
    )
    assert compute_track_displacement(ds, "euclidean").keys() == result.keys()


def test_piece_wise_distance_sorts_by_time():
    adata = _linear_tracks(n_tracks=2, n_t=4, dim=2)
    x = adata.X
    cross = cdist(x, x)
    ranks = rank_nearest_neighbors(cross)
    single = adata.obs.copy()
    single.loc[single.index[0], "track_id"] = 99  # a track of one sample is skipped
    dists, rank_steps = compute_piece_wise_distance(adata.obs, cross, ranks)
    assert len(dists) == 2 and all(len(d) == 3 for d in dists)
    np.testing.assert_allclose(np.concatenate(dists), np.linalg.norm([1.0, -2.0]))
    assert all(((r >= 0) & (r <= 1)).all() for r in rank_steps)
    dists, _ = compute_piece_wise_distance(single, cross, ranks)
    assert sum(len(d) for d in dists) == 6 - 1  # one row moved out of its track


@pytest.mark.parametrize("method", ["kde_robust", "histogram"])
def test_find_distribution_peak(method):
    rng = np.random.default_rng(0)
    data = np.concatenate([rng.normal(5.0, 0.3, 3000), rng.normal(1.0, 0.3, 1000)])
    assert find_distribution_peak(data, method) == pytest.approx(5.0, abs=0.2)
    with pytest.raises(ValueError, match="'mode'"):
        find_distribution_peak(data, "mode")


def test_smoothness_known_answer():
    n_tracks, n_t, dim = 50, 20, 3
    adata = _linear_tracks(n_tracks=n_tracks, n_t=n_t, dim=dim)
    stats, dists, per_track = compute_embeddings_smoothness(adata, distance_metric="euclidean")
    # after standardisation each column is +-(t - mean) / std(t): a step moves sqrt(dim) / std(t)
    step = np.sqrt(dim) / np.std(np.arange(n_t))
    assert len(per_track) == n_tracks
    np.testing.assert_allclose(dists["adjacent_frame_distribution"], step, rtol=1e-10)
    assert stats["adjacent_frame_mean"] == pytest.approx(step)
    assert stats["adjacent_frame_std"] == pytest.approx(0.0, abs=1e-9)
    # random distinct pairs: distance = step * |t_i - t_j|, E|t_i - t_j| = (T^2 - 1) / (3 T) * n / (n - 1)
    n = n_tracks * n_t
    expected_random = step * (n_t**2 - 1) / (3 * n_t) * n / (n - 1)
    assert stats["random_frame_mean"] == pytest.approx(expected_random, rel=0.08)
    assert stats["smoothness_score"] == pytest.approx(step / expected_random, rel=0.08)
    assert stats["dynamic_range"] == pytest.approx(stats["random_frame_peak"] - stats["adjacent_frame_peak"])
    assert len(dists["random_frame_distribution"]) == len(dists["adjacent_frame_distribution"])
    # private generator: global numpy state untouched, result reproducible
    np.random.seed(123)  # noqa: NPY002 (the legacy global state is what must stay untouched)
    state = np.random.get_state()[1].copy()  # noqa: NPY002
    again, _, _ = compute_embeddings_smoothness(adata, distance_metric="euclidean")
    assert again == stats
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # noqa: NPY002


def test_smoothness_cosine_smooth_beats_shuffled(capsys):
    rng = np.random.default_rng(0)
    n_tracks, n_t = 30, 10
    # each track drifts slowly around its own random direction
    base = rng.normal(size=(n_tracks, 1, 8))
    x = (base + 0.05 * np.cumsum(rng.normal(size=(n_tracks, n_t, 8)), axis=1)).reshape(-1, 8)
    obs = pd.DataFrame(
        {"fov_name": "A/1/0", "track_id": np.repeat(np.arange(n_tracks), n_t), "t": np.tile(np.arange(n_t), n_tracks)},
    )
    obs.index = obs.index.astype(str)
    smooth, _, _ = compute_embeddings_smoothness(ad.AnnData(X=x, obs=obs), verbose=True)
    assert "smoothness_score" in capsys.readouterr().out
    shuffled, _, _ = compute_embeddings_smoothness(ad.AnnData(X=rng.permutation(x), obs=obs))
    assert smooth["smoothness_score"] < 0.3
    assert shuffled["smoothness_score"] == pytest.approx(1.0, abs=0.15)
    with pytest.raises(ValueError, match="two or more time points"):
        compute_embeddings_smoothness(ad.AnnData(X=x[:3], obs=obs.iloc[:3].assign(track_id=[0, 1, 2])))


def _order_tracks(n_tracks, n_t, drift, identity, noise, seed=0):
    """Per-track constant identity vector + a drift along a shared direction with time + noise."""
    rng = np.random.default_rng(seed)
    rows, x = [], []
    direction = rng.normal(size=8)
    for k in range(n_tracks):
        base = identity * rng.normal(size=8)
        for t in range(n_t):
            x.append(base + drift * t * direction + noise * rng.normal(size=8))
            rows.append((f"A/{k % 3}/0", k, t))
    obs = pd.DataFrame(rows, columns=["fov_name", "track_id", "t"])
    order = rng.permutation(len(obs))
    obs = obs.iloc[order].reset_index(drop=True)
    obs.index = obs.index.astype(str)
    return ad.AnnData(X=np.asarray(x)[order], obs=obs)


def test_temporal_order_rewards_drift_not_identity():
    drifting = compute_temporal_order(_order_tracks(20, 8, drift=1.0, identity=1.0, noise=0.3), "euclidean")
    assert drifting.n_tracks == 20 and drifting.per_track.shape == (20,)
    assert drifting.score > 0.8
    # features that only tell cells apart (constant within a track) carry no temporal order
    identity = compute_temporal_order(_order_tracks(20, 8, drift=0.0, identity=5.0, noise=0.3), "euclidean")
    assert abs(identity.score) < 0.15
    # an exactly linear track: distance is a monotone function of the lag
    exact = compute_temporal_order(_linear_tracks(n_tracks=3, n_t=6), "euclidean")
    assert (exact.per_track > 0.98).all()  # (rounding breaks the ties between equal lags at random)


def test_temporal_order_mask_and_errors():
    adata = _order_tracks(6, 5, drift=1.0, identity=1.0, noise=0.1)
    mask = adata.obs["track_id"].to_numpy() < 2
    assert compute_temporal_order(adata, track_mask=mask).n_tracks == 2
    # tracks shorter than min_frames are skipped
    assert compute_temporal_order(adata, min_frames=5).n_tracks == 6
    with pytest.raises(ValueError, match="no track with at least 6 frames"):
        compute_temporal_order(adata, min_frames=6)
    with pytest.raises(ValueError, match="min_frames"):
        compute_temporal_order(adata, min_frames=2)
    with pytest.raises(ValueError, match="track_mask"):
        compute_temporal_order(adata, track_mask=mask[:-1])
