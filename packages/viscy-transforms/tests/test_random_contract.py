"""The contract every random batched dictionary transform honours, checked on all of them."""

import math

import pytest
import torch
from monai.transforms import Compose

import viscy_transforms as vt

KEYS = ["source", "target"]


def _factories():
    return {
        "adjust_contrast": lambda p: vt.BatchedRandAdjustContrastd(KEYS, gamma=(0.5, 2.0), prob=p),
        "scale_intensity": lambda p: vt.BatchedRandScaleIntensityd(KEYS, factors=0.5, prob=p),
        "noise": lambda p: vt.BatchedRandGaussianNoised(KEYS, prob=p, std=0.5),
        "smooth": lambda p: vt.BatchedRandGaussianSmoothd(
            KEYS, sigma_x=(0.5, 2), sigma_y=(0.5, 2), sigma_z=(0.5, 1), prob=p
        ),
        "flip": lambda p: vt.BatchedRandFlipd(KEYS, spatial_axes=[0, 1, 2], prob=p),
        "affine": lambda p: vt.BatchedRandAffined(
            KEYS, prob=p, rotate_range=[math.pi, 0, 0], scale_range=(0.7, 1.3), shear_range=0.1
        ),
        "elastic": lambda p: vt.BatchedRand3DElasticd(KEYS, sigma_range=(1, 2), magnitude_range=(1, 2), prob=p),
        "histogram_shift": lambda p: vt.BatchedRandHistogramShiftd(KEYS, shift_range=(-0.5, 0.5), prob=p),
        "sharpen": lambda p: vt.BatchedRandSharpend(KEYS, alpha_range=(0.2, 0.8), prob=p),
        "pixel_shuffle": lambda p: vt.BatchedRandLocalPixelShufflingd(KEYS, patch_size=2, shuffle_prob=0.5, prob=p),
        "zstack_shift": lambda p: vt.BatchedRandZStackShiftd(KEYS, max_shift=3, prob=p),
        # A crop always "fires"; prob is not one of its arguments.
        "rand_crop": lambda p: vt.BatchedRandSpatialCropd(KEYS, roi_size=(4, 8, 8)),
    }


FACTORIES = _factories()
NAMES = sorted(FACTORIES)
GATED = [n for n in NAMES if n != "rand_crop"]
SHAPE = (6, 2, 8, 16, 16)


def _batch(device, dtype=torch.float32, seed=0, shape=SHAPE):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g).to(device=device, dtype=dtype) + 0.5
    return {"index": "not a tensor", "source": x, "target": x.clone()}


def _run(name, prob, data, seed):
    torch.manual_seed(seed)
    return FACTORIES[name](prob)(data)


@pytest.mark.parametrize("name", NAMES)
def test_shape_dtype_device_and_keys_aligned(name, device):
    data = _batch(device)
    out = _run(name, 1.0, data, 1)
    for key in KEYS:
        assert out[key].device.type == device.type
        assert out[key].dtype == torch.float32
        assert out[key].shape[:2] == SHAPE[:2]
        if name != "rand_crop":
            assert out[key].shape == SHAPE
    # One draw per sample shared by all keys: identical inputs stay identical.
    torch.testing.assert_close(out["source"], out["target"], rtol=0, atol=0)
    assert out["index"] == "not a tensor"


@pytest.mark.parametrize("name", GATED)
def test_prob_zero_is_identity(name):
    data = _batch("cpu")
    out = _run(name, 0.0, data, 2)
    for key in KEYS:
        torch.testing.assert_close(out[key], data[key], rtol=0, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_prob_one_changes_every_sample(name):
    data = _batch("cpu")
    out = _run(name, 1.0, data, 3)
    x, y = data["source"], out["source"]
    if y.shape != x.shape:  # crops: each sample must differ from the origin crop of the first window
        y = y.flatten(1)
        assert not torch.equal(y, x[:, :, :4, :8, :8].flatten(1))
        return
    changed = (y - x).flatten(1).abs().amax(dim=1) > 1e-6
    assert changed.all(), f"{name}: unchanged samples {(~changed).nonzero().flatten().tolist()}"


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_output_different_seed_different_output(name):
    data = _batch("cpu")
    a = _run(name, 0.5 if name in GATED else 1.0, data, 10)["source"]
    b = _run(name, 0.5 if name in GATED else 1.0, data, 10)["source"]
    c = _run(name, 0.5 if name in GATED else 1.0, data, 11)["source"]
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("name", NAMES)
def test_identical_samples_get_independent_parameters(name):
    one = _batch("cpu", shape=(1, *SHAPE[1:]))["source"]
    x = one.expand(SHAPE).clone()
    prob = 0.5 if name == "flip" else 1.0  # at prob 1 every sample flips along every axis by design
    out = _run(name, prob, {"source": x, "target": x.clone()}, 4)["source"]
    flat = out.flatten(1)
    distinct = {tuple(torch.round(row * 1e4).tolist()) for row in flat}
    # most draws differ, not just one: a transform that varies one sample and copies the rest fails.
    # Discrete draws may collide (crop origins, z shifts), so "most" is 4 of 6; flips at prob 0.5 have
    # 8 outcomes per sample (3 axes), and 3 distinct of 6 is what most draws differing means there.
    minimum = 3 if name == "flip" else 4
    assert len(distinct) >= minimum, f"{name}: {len(distinct)} distinct outputs of {SHAPE[0]} identical samples"


@pytest.mark.parametrize("name", GATED)
def test_per_sample_gating_frequency(name):
    # 64 identical samples at prob 0.5: the fraction changed is per sample, not all-or-nothing (nor prob**2).
    one = _batch("cpu", shape=(1, 1, 4, 8, 8))["source"]
    x = one.expand(64, 1, 4, 8, 8).clone()
    fractions = []
    for seed in range(5):
        out = _run(name, 0.5, {"source": x, "target": x.clone()}, seed)["source"]
        fractions.append(((out - x).flatten(1).abs().amax(dim=1) > 1e-6).float().mean().item())
    mean = sum(fractions) / len(fractions)
    expected = 1 - 0.5**3 if name == "flip" else 0.5  # flips: an independent coin per (sample, axis)
    assert abs(mean - expected) < 0.12, f"{name}: mean fraction changed {mean:.2f} at prob 0.5"


@pytest.mark.parametrize("name", NAMES)
def test_set_random_state_makes_compose_reproducible(name):
    data = _batch("cpu")
    outs = []
    for global_seed in (0, 123):  # the global torch seed must not matter after set_random_state
        torch.manual_seed(global_seed)
        pipeline = Compose([FACTORIES[name](0.5 if name in GATED else 1.0)]).set_random_state(seed=7)
        outs.append(pipeline(dict(data))["source"])
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_missing_keys(name):
    data = _batch("cpu")
    del data["target"]
    with pytest.raises(KeyError):
        FACTORIES[name](1.0)(data)


@pytest.mark.parametrize("name", GATED)
def test_negative_prob_rejected(name):
    with pytest.raises(ValueError, match="prob"):
        FACTORIES[name](-0.1)


@pytest.mark.parametrize("name", NAMES)
def test_first_dict_entry_is_not_used_for_parameters(name):
    # Upstream drew parameters from the first dict value; a non-tensor first entry must not matter.
    data = {"norm_meta": None, **_batch("cpu")}
    out = _run(name, 1.0, data, 5)
    assert out["norm_meta"] is None
    torch.testing.assert_close(out["source"], out["target"], rtol=0, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_mismatched_batch_size_names_key(name):
    data = _batch("cpu")
    data["target"] = data["target"][:3]
    with pytest.raises(ValueError, match="target"):
        _run(name, 1.0, data, 6)
