import sys

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from torch import nn

from viscy_utils.evaluation.feature import (
    CellFeatures,
    DynamicFeatures,
    _haralick,
    _zernike_moments,
    disc_intensity_features,
)
from viscy_utils.evaluation.lca import (
    AssembledClassifier,
    fit_logistic_regression,
    linear_from_binary_logistic_regression,
)


def _disc(size=64, radius=12, centre=None):
    yy, xx = np.indices((size, size))
    cy, cx = centre or (size / 2, size / 2)
    return ((yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2).astype(np.float64)


def test_intensity_features_values():
    rng = np.random.default_rng(0)
    img = rng.normal(10, 2, size=(64, 64))
    f = CellFeatures(img).compute_intensity_features()
    assert f["mean_intensity"] == pytest.approx(img.mean())
    assert f["std_dev"] == pytest.approx(img.std())
    assert (f["min_intensity"], f["max_intensity"]) == (img.min(), img.max())
    assert abs(f["kurtosis"]) < 0.2 and abs(f["skewness"]) < 0.1  # normal noise
    assert f["iqr"] == pytest.approx(2 * 1.349, rel=0.05)
    # zero-mean white noise has a flat spectrum: entropy close to log2(number of frequencies);
    # an offset concentrates power in the DC term and lowers it
    centred = CellFeatures(img - img.mean()).compute_intensity_features()["spectral_entropy"]
    assert centred > 0.9 * np.log2(64 * 64) > f["spectral_entropy"]
    flat = CellFeatures(np.full((16, 16), 3.0)).compute_intensity_features()
    assert np.isnan(flat["kurtosis"]) and np.isnan(flat["skewness"])
    assert flat["weighted_intensity_gradient"] == 0.0 and flat["spectral_entropy"] == 0.0


def test_texture_features_order_smooth_vs_noise():
    rng = np.random.default_rng(1)
    ramp = np.tile(np.linspace(0, 1, 64), (64, 1))
    noise = rng.random((64, 64))
    smooth_tex = CellFeatures(ramp).compute_texture_features()
    noisy_tex = CellFeatures(noise).compute_texture_features()
    assert noisy_tex["contrast"] > 100 * smooth_tex["contrast"]
    assert smooth_tex["homogeneity"] > noisy_tex["homogeneity"]
    assert noisy_tex["dissimilarity"] > smooth_tex["dissimilarity"]
    assert smooth_tex["entropy"] == smooth_tex["spectral_entropy"]
    # a horizontal ramp is anisotropic (0 vs 90 degrees differ); isotropic noise is not
    assert smooth_tex["texture"] > 0 and np.isfinite(noisy_tex["texture"])


def test_haralick_known_matrix():
    # uniform co-occurrence over 2 levels: ASM 1/4, contrast 1/2, correlation 0, entropy 2 bits
    glcm = np.full((2, 2, 1), 0.25)
    f = _haralick(glcm)[0]
    assert f[0] == pytest.approx(0.25) and f[1] == pytest.approx(0.5)
    assert f[2] == pytest.approx(0.0, abs=1e-9) and f[8] == pytest.approx(2.0)
    assert f[5] == pytest.approx(1.0)  # sum average of i + j


def test_zernike_rotation_invariance():
    rng = np.random.default_rng(2)
    img = _disc(radius=20) * (1 + rng.random((64, 64)))
    a = _zernike_moments(img)
    b = _zernike_moments(np.rot90(img))
    assert len(a) == 25
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)
    # a centred uniform disc has no odd (m = 1) moment
    disc = _zernike_moments(_disc(radius=20))
    assert disc[1] == pytest.approx(0.0, abs=1e-9)  # (n=1, m=1)


def test_morphology_and_symmetry():
    mask = _disc(radius=10).astype(np.int64)
    img = _disc(radius=10) * 5.0 + 0.1
    features = CellFeatures(img, mask)
    m = features.compute_morphology_features()
    assert m["area"] == mask.sum()
    assert m["perimeter_area_ratio"] == pytest.approx(m["perimeter"] / m["area"])
    assert m["eccentricity"] < 0.2  # a disc is round
    assert m["masked_area"] == pytest.approx(mask.sum(), rel=0.1)
    assert m["masked_intensity"] == pytest.approx(5.1, rel=0.05)
    assert m["intensity_localization"] == pytest.approx(5.1)
    s = features.compute_symmetry_descriptor()
    assert s["radial_intensity_gradient"] < 0  # bright centre, dark surround
    with pytest.raises(AssertionError, match="non-empty"):
        CellFeatures(img, np.zeros_like(mask)).compute_morphology_features()
    with pytest.raises(ValueError, match="2-D"):
        CellFeatures(np.zeros((2, 3, 4)))


def test_all_features_frame():
    img = _disc(radius=10) + 0.5
    assert CellFeatures(img).to_df().empty
    df = CellFeatures(img).compute_all_features()
    assert df.shape[0] == 1 and "area" not in df.columns and "zernike_mean" in df.columns
    df = CellFeatures(img, _disc(radius=10).astype(int)).compute_all_features()
    assert {"area", "texture", "kurtosis", "radial_intensity_gradient"} <= set(df.columns)


def _tracks():
    return pd.DataFrame(
        {
            # track 1: straight line at speed 2; track 2: square path (90-degree turns); track 3: one point
            "track_id": [1] * 4 + [2] * 5 + [3],
            "t": [3, 0, 1, 2] + [0, 1, 2, 3, 4] + [0],
            "x": [6.0, 0.0, 2.0, 4.0] + [0.0, 1.0, 1.0, 0.0, 0.0] + [5.0],
            "y": [0.0, 0.0, 0.0, 0.0] + [0.0, 0.0, 1.0, 1.0, 0.0] + [5.0],
        }
    )


def test_dynamic_features_known_tracks():
    dyn = DynamicFeatures(_tracks())
    line = dyn.compute_all_features(1)
    assert line["instantaneous_velocity"].iloc[0] == [0.0, 2.0, 2.0, 2.0]
    assert line["max_velocity"].iloc[0] == 2.0 and line["mean_velocity"].iloc[0] == pytest.approx(1.5)
    assert line["total_distance"].iloc[0] == 6.0 and line["net_displacement"].iloc[0] == 6.0
    assert line["directional_persistence"].iloc[0] == 1.0 and line["max_angular_velocity"].iloc[0] == 0.0
    square = dyn.compute_all_features(2)
    assert square["total_distance"].iloc[0] == 4.0 and square["net_displacement"].iloc[0] == 0.0
    assert square["mean_angular_velocity"].iloc[0] == pytest.approx(np.pi / 2)
    single = dyn.compute_all_features(3)
    assert single["instantaneous_velocity"].iloc[0] == [0.0]
    assert single["total_distance"].iloc[0] == 0.0 and single["mean_angular_velocity"].iloc[0] == 0.0
    with pytest.raises(KeyError, match="99"):
        dyn.compute_all_features(99)


def test_dynamic_features_validation():
    assert DynamicFeatures(_tracks()).to_df().empty
    with pytest.raises(ValueError, match=r"\['y'\]"):
        DynamicFeatures(_tracks().drop(columns="y"))
    with pytest.raises(ValueError, match="'x' must be numeric"):
        DynamicFeatures(_tracks().assign(x="a"))


def _probe_data(seed=0):
    rng = np.random.default_rng(seed)
    n_fov, per_fov = 10, 20
    labels = np.where(
        np.arange(n_fov * per_fov) % 3 == 0, "background", np.where(rng.random(n_fov * per_fov) < 0.5, "a", "b")
    )
    x = rng.normal(size=(len(labels), 5))
    x[labels == "a", 0] += 4
    x[labels == "b", 0] -= 4
    fovs = np.repeat([f"A/1/{i}" for i in range(n_fov)], per_fov)
    features = xr.DataArray(x, dims=("sample", "features"), coords={"fov_name": ("sample", fovs)})
    annotations = pd.Series(pd.Categorical(labels, categories=["background", "a", "b"]))
    return features, annotations


def test_fit_logistic_regression_splits_by_fov(capsys):
    features, annotations = _probe_data()
    clf, ((x_tr, y_tr), (x_te, y_te)) = fit_logistic_regression(
        features, annotations, train_ratio=0.7, random_state=0, scale_features=True
    )
    assert set(np.unique(y_tr)) == {0, 1}  # background dropped, codes shifted
    assert len(x_tr) + len(x_te) == (annotations != "background").sum()
    assert len(x_tr) > len(x_te) > 0
    assert (clf.predict(x_te) == y_te).mean() > 0.95
    assert "Test set" in capsys.readouterr().out
    clf2, ((x_tr2, _), (x_te2, _)) = fit_logistic_regression(
        features, annotations, train_fovs=["A/1/0", "A/1/1"], remove_background_class=False
    )
    assert len(x_tr2) == 40 and len(x_te2) == 160 and len(clf2.classes_) == 3


def test_linear_from_lr_and_assembled_classifier():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 4))
    y = (x[:, 0] > 0).astype(int)
    lr = LogisticRegression().fit(x, y)
    linear = linear_from_binary_logistic_regression(lr)
    assert not linear.training and linear.out_features == 1
    logits = linear(torch.from_numpy(x).float()).detach().numpy().ravel()
    np.testing.assert_allclose(logits, lr.decision_function(x), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="binary"):
        linear_from_binary_logistic_regression(LogisticRegression().fit(x, np.arange(100) % 3))

    class Backbone(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Flatten()
            self.encoder = nn.Linear(2 * 3 * 4 * 4, 4)

    model = AssembledClassifier(Backbone(), linear)
    img = torch.randn(6, 2, 3, 4, 4)
    out = model(img)
    assert out.shape == (6, 1)
    torch.testing.assert_close(out, linear(model.backbone.encoder(model.backbone.stem(img))))
    scaled = AssembledClassifier.scale_features(torch.tensor([[1.0, 2.0], [3.0, 6.0]]))
    torch.testing.assert_close(scaled, torch.tensor([[-1.0, -1.0], [1.0, 1.0]]))
    assert model(img, scale_features=True).shape == (6, 1)
    with pytest.raises(TypeError, match="'stem'"):
        AssembledClassifier(nn.Linear(2, 2), linear)


def test_attribution_requires_lca_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "captum", None)
    monkeypatch.setitem(sys.modules, "captum.attr", None)

    class Backbone(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem, self.encoder = nn.Identity(), nn.Flatten()

    model = AssembledClassifier(Backbone(), nn.Linear(4, 1))
    with pytest.raises(ImportError, match=r'pip install "viscy-utils\[lca\]"'):
        model.attribute_integrated_gradients(torch.zeros(1, 4))
    with pytest.raises(ImportError, match=r"viscy-utils\[lca\]"):
        model.attribute_occlusion(torch.zeros(1, 4), sliding_window_shapes=(1,))


def test_disc_intensity_features_known_values():
    # channel 0: 1 inside radius 2 of the centre, 0 outside; channel 1: a ramp along x
    yy, xx = np.mgrid[:9, :9]
    inner = ((yy - 4) ** 2 + (xx - 4) ** 2 <= 4).astype(float)
    patches = np.stack([np.stack([inner, xx.astype(float)])] * 3)[:, :, None].repeat(2, axis=2)  # (3, 2, 2, 9, 9)
    patches[1] *= 2.0
    table = disc_intensity_features(patches, {"nucleus": 2.0, "cell": 4.0}, ["phase", "gfp"])
    assert table.shape == (3, 2 * 2 * 5)
    assert list(table.columns[:5]) == [f"phase_nucleus_{s}" for s in ("mean", "std", "min", "max", "median")]
    np.testing.assert_allclose(table["phase_nucleus_mean"], [1.0, 2.0, 1.0])
    np.testing.assert_allclose(table["phase_nucleus_std"], 0.0, atol=1e-12)
    n_cell = int(((yy - 4) ** 2 + (xx - 4) ** 2 <= 16).sum())
    np.testing.assert_allclose(table["phase_cell_mean"], np.array([1, 2, 1]) * inner.sum() / n_cell)
    # the ramp is symmetric about the centre: mean = median = centre value, extremes at +-radius
    np.testing.assert_allclose(table["gfp_cell_mean"], [4.0, 8.0, 4.0])
    np.testing.assert_allclose(table["gfp_cell_median"], [4.0, 8.0, 4.0])
    np.testing.assert_allclose(table["gfp_cell_min"], [0.0, 0.0, 0.0])
    np.testing.assert_allclose(table["gfp_cell_max"], [8.0, 16.0, 8.0])
    # 4-D patches (no Z) give the same numbers; default channel names
    flat = disc_intensity_features(patches[:, :, 0], {"cell": 4.0})
    np.testing.assert_allclose(flat["ch1_cell_mean"], table["gfp_cell_mean"])


def test_disc_intensity_features_errors():
    with pytest.raises(ValueError, match="shape"):
        disc_intensity_features(np.zeros((2, 9, 9)), {"cell": 3.0})
    with pytest.raises(ValueError, match="channel names"):
        disc_intensity_features(np.zeros((2, 2, 9, 9)), {"cell": 3.0}, ["a"])
    with pytest.raises(ValueError, match="holds no pixel"):
        disc_intensity_features(np.zeros((2, 1, 8, 8)), {"dot": 0.5})
    with pytest.raises(ValueError, match="holds no pixel"):
        disc_intensity_features(np.zeros((2, 1, 9, 9)), {"dot": -1.0})  # |r| would cover the centre
