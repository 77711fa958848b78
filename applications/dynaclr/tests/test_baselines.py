"""Baseline features and read-outs of dynaclr.evaluation.baselines."""

import numpy as np
import pytest

from dynaclr.evaluation.baselines import (
    baseline_features,
    cell_patches,
    fit_linear_probe,
    fit_linear_readout,
)

pytest.importorskip("sklearn")


def test_baseline_features_are_the_pixels_and_the_disc_statistics():
    size = 21
    yy, xx = np.mgrid[:size, :size]
    distance = np.hypot(yy - 10, xx - 10)
    nucleus = (distance <= 4).astype(np.float32) * 3.0  # bright nucleus of radius 4 on a dark cell
    images = np.stack([nucleus, np.ones_like(nucleus)])[None, :, None]  # (1, 2, 1, 21, 21)
    features = baseline_features(np.concatenate([images, 2 * images]), {"nucleus": 4, "cell": 8})
    assert features["raw_pixels"].shape == (2, 2 * size * size)
    np.testing.assert_array_equal(features["raw_pixels"][1], 2 * images.ravel())
    discs = features["disc_features"]
    # per disc and channel: mean, std, min, max, median
    assert discs.shape == (2, 2 * 2 * 5) and discs.dtype == np.float32
    assert discs[0, 0:5].tolist() == [3.0, 0.0, 3.0, 3.0, 3.0]  # channel 0, nucleus disc
    assert discs[0, 5:10].tolist() == [1.0, 0.0, 1.0, 1.0, 1.0]  # channel 1 is flat
    in_big = nucleus[distance <= 8]
    np.testing.assert_allclose(discs[0, 10:15], [in_big.mean(), in_big.std(), 0.0, 3.0, np.median(in_big)], rtol=1e-6)
    np.testing.assert_allclose(discs[1], 2 * discs[0], rtol=1e-6)
    with pytest.raises(ValueError, match="holds no pixel"):
        baseline_features(images, {"dot": -1.0})


def test_probe_and_readout_on_learnable_and_random_targets():
    from scipy.stats import spearmanr
    from sklearn.metrics import balanced_accuracy_score

    rng = np.random.default_rng(0)
    x = rng.normal(size=(240, 5))
    labels = np.where(x[:, 0] > 0.5, "a", np.where(x[:, 0] < -0.5, "c", "b"))
    groups = np.repeat(np.arange(12), 20)
    train, test = slice(0, 160), slice(160, None)
    probe = fit_linear_probe(x[train], labels[train], groups[train])
    assert balanced_accuracy_score(labels[test], probe.predict(x[test])) > 0.85
    shuffled = fit_linear_probe(x[train], rng.permutation(labels[train]), groups[train])
    assert balanced_accuracy_score(labels[test], shuffled.predict(x[test])) < 0.6
    # the grid search saw only training groups: one C per fold, refitted on all training cells
    assert probe.n_splits_ == 5 and probe.best_params_["logisticregression__C"] in (0.001, 0.01, 0.1, 1.0, 10.0)
    target = 2 * x[:, 1] + 0.1 * rng.normal(size=240)
    readout = fit_linear_readout(x[train], target[train], groups[train])
    assert spearmanr(readout.predict(x[test]), target[test]).statistic > 0.95


def test_cell_patches_are_what_prediction_reads(tmp_path):
    """One normalised, centre-cropped patch per tracked cell, read by the data module, in index order."""
    from _mx_testdata import make_experiment, write_experiments_yaml  # loaded by conftest.py

    from dynaclr.datamodule import MultiExperimentDataModule
    from viscy_transforms import NormalizeSampled

    config = make_experiment(tmp_path, "exp_a", n_t=6, n_z=1, size=48, condition_wells={"all": ["A/1"]})
    dm = MultiExperimentDataModule(
        experiments_yaml=str(write_experiments_yaml(tmp_path / "experiments.yml", [config])),
        z_range=(0, 1),
        yx_patch_size=(16, 16),
        final_yx_patch_size=(12, 12),
        batch_size=5,
        num_workers=0,
        normalizations=[
            NormalizeSampled(keys=["ch_0", "ch_1"], level="fov_statistics", subtrahend="mean", divisor="std")
        ],
    )
    patches = cell_patches(dm)
    assert patches.images.dtype == np.float32
    assert patches.images.shape == (3 * 6, 2, 1, 12, 12)  # 3 tracks x 6 frames
    assert len(patches.index) == len(patches.images)
    assert (patches.index["fov_name"] == "A/1/0").all()
    # pixels are code * 1000 + channel * 100 + t, normalised by mean code * 1000 + channel * 100 and std 2
    expected = patches.index["t"].to_numpy(dtype=np.float32) / 2
    np.testing.assert_allclose(patches.images.reshape(len(expected), -1), expected[:, None].repeat(2 * 144, axis=1))


def test_probe_solver_follows_the_feature_count_and_not_the_answer(monkeypatch):
    """Newton steps for few features, L-BFGS for many: the same regularised optimum either way."""
    import dynaclr.evaluation.baselines as baselines

    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 8))
    labels = (x[:, 0] + 0.5 * x[:, 1] + 0.3 * rng.normal(size=200) > 0).astype(int)
    groups = np.repeat(np.arange(10), 20)
    newton = fit_linear_probe(x, labels, groups)
    assert newton.best_estimator_[-1].solver == "newton-cholesky"
    monkeypatch.setattr(baselines, "NEWTON_MAX_FEATURES", 4)
    lbfgs = fit_linear_probe(x, labels, groups)
    assert lbfgs.best_estimator_[-1].solver == "lbfgs"
    assert newton.best_params_ == lbfgs.best_params_
    np.testing.assert_allclose(newton.best_estimator_[-1].coef_, lbfgs.best_estimator_[-1].coef_, atol=1e-3)
