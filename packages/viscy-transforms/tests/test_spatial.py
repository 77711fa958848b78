import math

import numpy as np
import pytest
import torch
from monai.transforms import Affine, CenterSpatialCrop, Flip, Zoom

import viscy_transforms as vt
from viscy_transforms._affine import affine_resample


def _rand(*shape, seed=0):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- affine
def _rotation_matrix(angle, shift):
    m = torch.eye(4, dtype=torch.float64)
    m[1, 1], m[1, 2], m[2, 1], m[2, 2] = math.cos(angle), -math.sin(angle), math.sin(angle), math.cos(angle)
    m[:3, 3] = torch.tensor(shift, dtype=torch.float64)
    return m


@pytest.mark.parametrize("mode", ["bilinear"])
def test_affine_resample_equals_monai_affine(mode):
    x = _rand(3, 2, 6, 15, 16)
    matrices = torch.stack(
        [_rotation_matrix(a, s) for a, s in [(0.3, (0.5, 1, -2)), (-1.0, (0, 0, 0)), (2.0, (1, 2, 3))]]
    )
    matrices[2, 0, 0] = 1.2  # anisotropic scale on Z as well
    out = affine_resample(x, matrices, mode=mode)
    for b in range(3):
        ref = Affine(affine=matrices[b], padding_mode="zeros", mode=mode, image_only=True)(x[b])
        torch.testing.assert_close(out[b], ref.as_subclass(torch.Tensor), atol=1e-5, rtol=1e-5)


def test_affine_nearest_only_returns_input_values():
    x = torch.randint(0, 5, (2, 1, 4, 9, 12)).float()
    out = vt.BatchedRandAffined(["a"], prob=1.0, rotate_range=[0.5, 0, 0], mode="nearest")({"a": x})["a"]
    assert set(out.unique().tolist()) <= set(x.unique().tolist()) | {0.0}


def test_affine_rotation_by_pi_about_z_flips_y_and_x():
    x = _rand(2, 1, 4, 9, 12)
    out = vt.BatchedRandAffined(["a"], prob=1.0, rotate_range=[(math.pi, math.pi), 0, 0])({"a": x})["a"]
    torch.testing.assert_close(out, x.flip(3, 4), atol=1e-5, rtol=1e-5)


def test_affine_translate_is_a_fraction_of_the_axis_size():
    x = _rand(1, 1, 4, 16, 8)
    out = vt.BatchedRandAffined(["a"], prob=1.0, translate_range=[0, (0.25, 0.25), 0])({"a": x})["a"]
    torch.testing.assert_close(out[..., 4:, :], x[..., :12, :], atol=1e-5, rtol=1e-5)
    assert out[..., :4, :].abs().max() == 0


def test_affine_scale_is_an_absolute_zoom_factor():
    x = torch.zeros(1, 1, 5, 21, 21)
    x[..., 8:13, 8:13] = 1
    out = vt.BatchedRandAffined(["a"], prob=1.0, scale_range=(2.0, 2.0))({"a": x})["a"]
    assert (out > 0.5).sum() > 3 * (x > 0.5).sum()  # content grows about 4x in the YX plane


@pytest.mark.parametrize(
    "kwargs, expected_attr, expected",
    [
        ({"rotate_range": [0.1, 0.2, 0.3]}, "rotate_range", [[-0.1, 0.1], [-0.2, 0.2], [-0.3, 0.3]]),
        ({"rotate_range": [(0.7, 0.8), 0, 0]}, "rotate_range", [[0.7, 0.8], [0, 0], [0, 0]]),
        (
            {"rotate_range": [(0.7, 0.8), (0.1, 0.2), (-0.3, 0.3)]},
            "rotate_range",
            [[0.7, 0.8], [0.1, 0.2], [-0.3, 0.3]],
        ),
        ({"rotate_range": 0.5}, "rotate_range", [[-0.5, 0.5]] * 3),
        ({"rotate_range": np.array([0.1, 0, 0])}, "rotate_range", [[-0.1, 0.1], [0, 0], [0, 0]]),
        ({"scale_range": (0.8, 1.2)}, "scale_range", [[0.8, 1.2]] * 3),
        ({"scale_range": [0, 0.2, 0.2]}, "scale_range", [[1, 1], [0.8, 1.2], [0.8, 1.2]]),
        ({"scale_range": [(0.9, 1.1), (0.5, 2), 0.1]}, "scale_range", [[0.9, 1.1], [0.5, 2], [0.9, 1.1]]),
        ({"translate_range": [0, 0.1, (0.0, 0.2)]}, "translate_range", [[0, 0], [-0.1, 0.1], [0, 0.2]]),
        ({"shear_range": 0.1}, "shear_range", [[-0.1, 0.1]] * 6),
        ({"shear_range": [0.1, 0, 0, 0, 0, (0.0, 0.2)]}, "shear_range", [[-0.1, 0.1]] + [[0, 0]] * 4 + [[0, 0.2]]),
    ],
)
def test_affine_argument_forms(kwargs, expected_attr, expected):
    t = vt.BatchedRandAffined(["a"], **kwargs)
    np.testing.assert_allclose(getattr(t, expected_attr), expected)


def test_affine_isotropic_scale_draws_one_factor():
    t = vt.BatchedRandAffined(["a"], prob=1.0, scale_range=(0.5, 2.0))
    t.randomize(torch.zeros(16, 1, 4, 4, 4))
    diag = torch.linalg.inv(t._matrix)[:, :3, :3].diagonal(dim1=1, dim2=2)
    torch.testing.assert_close(diag[:, 0], diag[:, 2])
    assert diag.min() >= 0.5 - 1e-9 and diag.max() <= 2.0 + 1e-9 and diag.std() > 0


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"rotate_range": [0.1, 0.2]}, "rotate_range"),
        ({"rotate_range": (0.1, 0.2)}, "rotate_range"),
        ({"rotate_range": [(0.1, 0.2, 0.3), 0, 0]}, "rotate_range"),
        ({"rotate_range": "pi"}, "rotate_range"),
        ({"shear_range": [0.1, 0.1, 0.1]}, "shear_range"),
        ({"translate_range": [0, 2, 2]}, "translate_range"),
        ({"scale_range": (0.0, 1.2)}, "scale_range"),
        ({"scale_range": [-1.2, 1.2]}, "scale_range"),  # an isotropic pair must have positive factors too
        ({"scale_range": [[0.9, 1.1]] * 4}, "scale_range"),
        ({"mode": "bicubic"}, "mode"),
        ({"prob": 1.5}, "prob"),
    ],
)
def test_affine_rejects_bad_arguments_naming_them(kwargs, name):
    with pytest.raises(ValueError, match=name) as info:
        vt.BatchedRandAffined(["a"], **kwargs)
    if name.endswith("_range") and name != "translate_range":
        assert "radians" in str(info.value) or "factor" in str(info.value)


def test_affine_pair_is_never_reversed():
    t = vt.BatchedRandAffined(["a"], prob=1.0, rotate_range=[(0.7, 0.8), 0, 0])
    t.randomize(torch.zeros(64, 1, 4, 8, 8))
    forward = torch.linalg.inv(t._matrix)
    angle = torch.atan2(forward[:, 2, 1], forward[:, 1, 1])
    assert angle.min() >= 0.7 - 1e-9 and angle.max() <= 0.8 + 1e-9


PLANAR = {"rotate_range": [3.14, 0.0, 0.0], "scale_range": [0, 0.2, 0.2], "shear_range": [0, 0, 0, 0.05, 0, 0.05]}


@pytest.mark.parametrize(
    "kwargs, planar",
    [
        (PLANAR, True),
        ({**PLANAR, "translate_range": [0, 0.1, 0.1]}, True),
        ({}, True),
        ({**PLANAR, "rotate_range": [3.14, 0.1, 0.0]}, False),
        ({**PLANAR, "rotate_range": 0.1}, False),
        ({**PLANAR, "scale_range": (0.9, 1.1)}, False),  # isotropic: zooms Z too
        ({**PLANAR, "scale_range": [(1.0, 1.01), 0.2, 0.2]}, False),
        ({**PLANAR, "translate_range": [0.1, 0, 0]}, False),
        ({**PLANAR, "shear_range": 0.05}, False),
        *[({**PLANAR, "shear_range": [0.05 * (j == i) for j in range(6)]}, False) for i in (0, 1, 2, 4)],
    ],
)
def test_affine_planar_path_is_chosen_from_the_ranges(kwargs, planar):
    assert vt.BatchedRandAffined(["a"], **kwargs)._is_planar() is planar


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
@pytest.mark.parametrize(
    "kwargs", [{**PLANAR, "prob": 1.0}, {**PLANAR, "translate_range": [0, 0.2, (0.0, 0.3)], "prob": 0.5}]
)
def test_affine_planar_path_equals_the_3d_resampling(seed, mode, kwargs):
    torch.manual_seed(seed)
    x = {"a": _rand(8, 2, 5, 17, 14, seed=seed), "b": _rand(8, 1, 5, 17, 14, seed=seed + 10).double()}
    t = vt.BatchedRandAffined(["a", "b"], mode=mode, **kwargs)
    assert t._is_planar()
    out = t(x)
    mask = t._mask
    assert mask.any()  # seeded: every case warps some samples
    for key in "ab":
        ref = x[key].clone()
        ref[mask] = affine_resample(x[key][mask], t._matrix[mask], mode=mode)
        assert out[key].dtype == x[key].dtype and out[key].shape == x[key].shape
        if mode == "bilinear":
            torch.testing.assert_close(out[key], ref, atol=1e-5, rtol=1e-5)
        else:  # a point exactly between two voxels may round either way in float32
            assert (out[key] != ref).float().mean() < 1e-3
        torch.testing.assert_close(out[key][~mask], x[key][~mask], atol=0, rtol=0)


def test_affine_planar_path_keeps_the_z_slices_apart():
    x = torch.zeros(3, 1, 4, 12, 12)
    x[:, :, 2] = 1.0  # one bright plane: no other plane may receive any of it
    out = vt.BatchedRandAffined(["a"], prob=1.0, **PLANAR)({"a": x})["a"]
    assert out[:, :, [0, 1, 3]].abs().max() == 0 and out[:, :, 2].sum() > 0


def _centre(x, size):
    """Reference centre crop / zero pad placed like MONAI's, written independently of the transform."""
    out = torch.zeros((*x.shape[:2], *size), dtype=x.dtype)
    src, dst = [], []
    for s, o in zip(x.shape[2:], size):
        lo = s // 2 - o // 2 if o <= s else -((o - s) // 2)  # CenterSpatialCrop / SpatialPad
        a, b = max(lo, 0), min(lo + o, s)
        src.append(slice(a, b))
        dst.append(slice(a - lo, b - lo))
    out[(slice(None), slice(None), *dst)] = x[(slice(None), slice(None), *src)]
    return out


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize(
    "kwargs",
    [{**PLANAR, "prob": 0.6}, {"rotate_range": [0.5, 0.3, 0.2], "shear_range": 0.05, "prob": 0.6}],
    ids=["planar", "3d"],
)
@pytest.mark.parametrize("size", [(-1, 11, 8), (5, 12, 9), (3, 20, 16), (5, 17, 14)], ids=str)
def test_affine_spatial_size_is_the_centre_window_of_the_full_output(seed, kwargs, size):
    x = {"a": _rand(8, 2, 5, 17, 14, seed=seed), "b": _rand(8, 1, 5, 17, 14, seed=seed + 5)}
    full_t = vt.BatchedRandAffined(["a", "b"], **kwargs)
    window_t = vt.BatchedRandAffined(["a", "b"], spatial_size=size, **kwargs)
    full_t.set_random_state(seed)
    window_t.set_random_state(seed)
    full, window = full_t(x), window_t(x)
    expected_size = tuple(o if o > 0 else s for o, s in zip(size, (5, 17, 14)))
    assert window_t._mask.any() and not window_t._mask.all()  # seeded: warped and untouched samples both occur
    for key in "ab":
        assert window[key].shape == (8, x[key].shape[1], *expected_size)
        # every output voxel samples the same input point as the full-size output's voxel at that position; where
        # the window is larger than the input, the extra voxels see more of the input (not compared)
        inside = _centre(torch.ones_like(full[key]), expected_size) > 0
        ref = _centre(full[key], expected_size)
        torch.testing.assert_close(window[key][inside], ref[inside], atol=1e-5, rtol=1e-5)
        # untouched samples are exact crops of the input
        untouched = ~window_t._mask
        torch.testing.assert_close(window[key][untouched], _centre(x[key], expected_size)[untouched], atol=0, rtol=0)


def test_affine_spatial_size_without_selection_still_crops():
    x = _rand(4, 1, 3, 10, 10)
    out = vt.BatchedRandAffined(["a"], prob=0.0, rotate_range=[1.0, 0, 0], spatial_size=(-1, 6, 6))({"a": x})["a"]
    torch.testing.assert_close(out, x[:, :, :, 2:8, 2:8], atol=0, rtol=0)


def test_affine_spatial_size_places_the_window_like_monai():
    from monai.transforms import CenterSpatialCrop, SpatialPad

    x = _rand(2, 1, 4, 14, 9)  # even -> odd crop in Y, odd -> even pad in X: where placements can differ by one
    out = vt.BatchedRandAffined(["a"], prob=0.0, rotate_range=[1.0, 0, 0], spatial_size=(-1, 9, 12))({"a": x})["a"]
    expected = torch.stack([SpatialPad((4, 9, 12))(CenterSpatialCrop((4, 9, 9))(sample)) for sample in x])
    torch.testing.assert_close(out, expected.as_tensor(), atol=0, rtol=0)


@pytest.mark.parametrize("bad", [8, (8, 8), "160"])
def test_affine_spatial_size_must_give_three_axes(bad):
    with pytest.raises(ValueError, match="spatial_size"):
        vt.BatchedRandAffined(["a"], spatial_size=bad)


# ---------------------------------------------------------------- elastic
def test_elastic_zero_magnitude_is_identity_and_spatial_size():
    x = _rand(2, 1, 6, 10, 10)
    out = vt.BatchedRand3DElasticd(["a"], (1, 2), (0, 0), prob=1.0)({"a": x})["a"]
    torch.testing.assert_close(out, x, atol=1e-5, rtol=1e-5)
    out = vt.BatchedRand3DElasticd(["a"], (1, 2), (0, 0), spatial_size=(4, -1, 6), prob=0.0)({"a": x})["a"]
    assert out.shape == (2, 1, 4, 10, 6)
    torch.testing.assert_close(out, x[:, :, 1:5, :, 2:8], atol=1e-5, rtol=1e-5)


def test_elastic_magnitude_is_rms_displacement_in_voxels():
    t = vt.BatchedRand3DElasticd(["a"], (2, 2), (1.5, 1.5), prob=1.0)
    t.randomize(torch.zeros(4, 1, 8, 16, 16))
    identity = vt.BatchedRand3DElasticd(["a"], (2, 2), (0, 0), prob=1.0)
    identity.randomize(torch.zeros(4, 1, 8, 16, 16))
    scale = torch.tensor([16 / 2, 16 / 2, 8 / 2])  # grid x, y, z back to voxels
    rms = ((t._grid - identity._grid) * scale).square().sum(-1).mean().sqrt()
    assert rms.item() == pytest.approx(1.5 * math.sqrt(3), rel=1e-3)


def test_elastic_rejects_bad_arguments():
    for kwargs, name in [
        ({"padding_mode": "wrap"}, "padding_mode"),
        ({"mode": "cubic"}, "mode"),
        ({"sigma_range": (-1, 1)}, "sigma_range"),
    ]:
        args = {"keys": ["a"], "sigma_range": (1, 2), "magnitude_range": (1, 2), **kwargs}
        with pytest.raises(ValueError, match=name):
            vt.BatchedRand3DElasticd(**args)


# ---------------------------------------------------------------- flip
@pytest.mark.parametrize("axes", [[0, 1, 2], [1, 2], [0], 2])
def test_flip_prob_one_equals_monai_flip(axes):
    x = _rand(3, 2, 4, 5, 6)
    out = vt.BatchedRandFlip(axes, prob=1.0)(x)
    ref = torch.stack([Flip(spatial_axis=axes)(s).as_subclass(torch.Tensor) for s in x])
    torch.testing.assert_close(out, ref, rtol=0, atol=0)


def test_flip_4d_and_bad_axes():
    x = _rand(2, 1, 5, 6)
    torch.testing.assert_close(vt.BatchedRandFlip([0, 1], prob=1.0)(x), x.flip(2, 3))
    with pytest.raises(ValueError, match="spatial_axes"):
        vt.BatchedRandFlip([3])
    with pytest.raises(ValueError, match="spatial_axes"):
        vt.BatchedRandFlip(2, prob=1.0)(x)


# ---------------------------------------------------------------- z shift
def test_zstack_shift_moves_content_and_fills_cval():
    x = _rand(32, 2, 8, 4, 4) + 1
    t = vt.BatchedRandZStackShiftd(["a"], max_shift=3, prob=1.0, cval=-5.0)
    out = t({"a": x})["a"]
    for b, k in enumerate(t._shift.tolist()):
        assert 1 <= abs(k) <= 3
        if k > 0:
            torch.testing.assert_close(out[b, :, k:], x[b, :, :-k])
            assert (out[b, :, :k] == -5).all()
        else:
            torch.testing.assert_close(out[b, :, :k], x[b, :, -k:])
            assert (out[b, :, k:] == -5).all()
    assert {k > 0 for k in t._shift.tolist()} == {True, False}


def test_zstack_shift_rejects_unknown_mode():
    with pytest.raises(ValueError, match="mode"):
        vt.BatchedRandZStackShiftd(["a"], mode="reflect")
    with pytest.raises(ValueError, match="max_shift"):
        vt.BatchedRandZStackShiftd(["a"], max_shift=-1)


# ---------------------------------------------------------------- zoom
def test_zoom_area_halves_and_keeps_mean_and_equals_monai():
    x = _rand(2, 1, 8, 16, 16)
    out = vt.BatchedZoom(0.5, "area")(x)
    assert out.shape == (2, 1, 4, 8, 8)
    torch.testing.assert_close(out.mean(), x.mean(), rtol=1e-3, atol=0)
    ref = torch.stack([Zoom(0.5, mode="area", keep_size=False)(s).as_subclass(torch.Tensor) for s in x])
    torch.testing.assert_close(out, ref)


def test_zoom_nearest_round_trip_and_dict():
    x = _rand(2, 1, 4, 6, 6)
    up = vt.BatchedZoomd(["a"], scale_factor=(2, 2, 2), mode="nearest")({"a": x, "b": 1})
    assert up["a"].shape == (2, 1, 8, 12, 12) and up["b"] == 1
    torch.testing.assert_close(vt.BatchedZoom(0.5, "nearest")(up["a"]), x, rtol=0, atol=0)
    with pytest.raises(KeyError):
        vt.BatchedZoomd(["c"], 2, "nearest")({"a": x})
    assert "c" not in vt.BatchedZoomd(["c"], 2, "nearest", allow_missing_keys=True)({"a": x})
    with pytest.raises(ValueError, match="mode"):
        vt.BatchedZoom(2, "cubic")


# ---------------------------------------------------------------- crops
CENTRE_CASES = [
    ((8, 16, 16), (4, 8, 8)),
    ((8, 16, 16), (8, 16, 16)),
    ((8, 16, 16), (10, 20, 20)),
    ((7, 15, 13), (4, 6, 5)),
    ((7, 15, 13), (3, 7, 9)),
    ((8, 16, 16), (-1, 8, 0)),
    ((8, 16, 16), 5),
    ((16, 16), (8, 5)),
    ((15, 13), (4, 20)),
    ((16, 16), -1),
]


@pytest.mark.parametrize("spatial, roi", CENTRE_CASES)
def test_center_crop_equals_monai(spatial, roi):
    x = _rand(2, 2, *spatial)
    out = vt.BatchedCenterSpatialCrop(roi)(x)
    ref = torch.stack([CenterSpatialCrop(roi)(s).as_subclass(torch.Tensor) for s in x])
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    d = vt.BatchedCenterSpatialCropd(["a", "b"], roi)({"a": x, "b": x + 1, "c": 3})
    torch.testing.assert_close(d["b"], out + 1)
    assert d["c"] == 3


def test_random_crop_windows_come_from_each_sample():
    x = torch.arange(4 * 1 * 6 * 10 * 12, dtype=torch.float32).reshape(4, 1, 6, 10, 12)
    t = vt.BatchedRandSpatialCrop((3, 5, 7))
    out = t(x)
    assert out.shape == (4, 1, 3, 5, 7) and out.is_contiguous()
    for b in range(4):
        z, y, xx = t._starts[b].tolist()
        torch.testing.assert_close(out[b], x[b, :, z : z + 3, y : y + 5, xx : xx + 7])
    torch.testing.assert_close(t(x, randomize=False), out)


def test_random_crop_2d_roi_clipped_and_centre_option():
    x = _rand(3, 1, 10, 12)
    assert vt.BatchedRandSpatialCrop((4, 40))(x).shape == (3, 1, 4, 12)
    out = vt.BatchedRandSpatialCrop((4, 6), random_center=False)(x)
    torch.testing.assert_close(out, x[:, :, 3:7, 3:9])


def test_random_crop_errors():
    with pytest.raises(ValueError, match="random size"):
        vt.BatchedRandSpatialCrop(4, random_size=True)
    with pytest.raises(IndexError):
        vt.BatchedRandSpatialCrop(4)(torch.zeros(2, 1, 8, 8, 8), randomize=False)
    with pytest.raises(ValueError):
        vt.BatchedRandSpatialCrop(4)(torch.zeros(2, 8, 8))


def test_random_crop_dict_same_window_for_image_and_mask():
    x = _rand(4, 1, 6, 12, 12)
    mask = (x > 0.5).to(torch.int64)
    out = vt.BatchedRandSpatialCropd(["img", "mask"], (3, 6, 6))({"img": x, "mask": mask})
    assert out["mask"].dtype == torch.int64
    torch.testing.assert_close(out["mask"], (out["img"] > 0.5).to(torch.int64))
    out = vt.BatchedRandSpatialCropd(["img", "seg"], (3, 6, 6), allow_missing_keys=True)({"img": x})
    assert out["img"].shape == (4, 1, 3, 6, 6)
