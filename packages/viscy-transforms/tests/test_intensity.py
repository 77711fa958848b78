import numpy as np
import pytest
import torch
from monai.transforms import AdjustContrast, Compose, GaussianSmooth, ScaleIntensity

import viscy_transforms as vt
from viscy_transforms._gaussian_smooth import filter3d_separable, gaussian_kernel1d


def _rand(*shape, seed=0):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- contrast
@pytest.mark.parametrize("gamma", [0.5, 0.8, 1.0, 1.7, 3.0])
@pytest.mark.parametrize("invert_image", [False, True])
@pytest.mark.parametrize("retain_stats", [False, True])
def test_adjust_contrast_equals_monai_per_sample(gamma, invert_image, retain_stats):
    x = _rand(4, 2, 4, 8, 8) * 3 - 1
    out = vt.BatchedRandAdjustContrast(gamma=gamma, prob=1.0, invert_image=invert_image, retain_stats=retain_stats)(x)
    ref = torch.stack(
        [torch.as_tensor(AdjustContrast(gamma, invert_image=invert_image, retain_stats=retain_stats)(s)) for s in x]
    )
    torch.testing.assert_close(out, ref.as_subclass(torch.Tensor), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("invert_image, retain_stats", [(False, False), (True, False), (False, True), (True, True)])
def test_adjust_contrast_on_selected_samples_equals_the_dense_formula(seed, invert_image, retain_stats):
    torch.manual_seed(seed)
    x = _rand(8, 2, 3, 6, 5, seed=seed) * 4 - 1
    t = vt.BatchedRandAdjustContrast(gamma=(0.5, 2.0), prob=0.5, invert_image=invert_image, retain_stats=retain_stats)
    out = t(x)
    assert 0 < t._mask.sum() < 8  # seeded: a mixed batch
    dims, g = (1, 2, 3, 4), t._gamma.reshape(8, 1, 1, 1, 1)
    v = -x if invert_image else x
    lo, hi = v.amin(dim=dims, keepdim=True), v.amax(dim=dims, keepdim=True)
    ref = ((v - lo) / (hi - lo + 1e-7)) ** g * (hi - lo) + lo
    if retain_stats:
        ref = ref - ref.mean(dim=dims, keepdim=True)
        ref = ref / (ref.std(dim=dims, keepdim=True) + 1e-8) * v.std(dim=dims, keepdim=True)
        ref = ref + v.mean(dim=dims, keepdim=True)
    ref = -ref if invert_image else ref
    ref = torch.where(t._mask.reshape(8, 1, 1, 1, 1), ref, x)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-6)
    assert out.data_ptr() != x.data_ptr()


def test_adjust_contrast_retain_stats_keeps_mean_and_std():
    x = _rand(8, 1, 4, 8, 8)
    out = vt.BatchedRandAdjustContrast(gamma=(0.5, 3.0), prob=1.0, retain_stats=True)(x)
    torch.testing.assert_close(out.mean(dim=(1, 2, 3, 4)), x.mean(dim=(1, 2, 3, 4)), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.std(dim=(1, 2, 3, 4)), x.std(dim=(1, 2, 3, 4)), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(out, x)


def test_adjust_contrast_randomize_false_repeats_and_4d():
    t = vt.BatchedRandAdjustContrast(prob=0.5)
    x = _rand(16, 1, 8, 8)
    a = t(x)
    torch.testing.assert_close(t(x, randomize=False), a)


@pytest.mark.parametrize("gamma", [0, -1, (0, 2), (-1, 2), (1, 2, 3), "a", None])
def test_adjust_contrast_rejects_bad_gamma(gamma):
    with pytest.raises(ValueError, match="gamma"):
        vt.BatchedRandAdjustContrast(gamma=gamma)


def test_adjust_contrast_accepts_list_and_reversed_pair():
    assert vt.BatchedRandAdjustContrast(gamma=[2.0, 0.5]).gamma_range == (0.5, 2.0)


# ---------------------------------------------------------------- scale intensity
@pytest.mark.parametrize("factor", [-0.5, -0.1, 0.0, 0.2, 1.0])
def test_scale_intensity_equals_monai(factor):
    x = _rand(3, 2, 4, 8, 8)
    out = vt.BatchedRandScaleIntensity(factors=(factor, factor), prob=1.0)(x)
    ref = torch.stack([torch.as_tensor(ScaleIntensity(minv=None, maxv=None, factor=factor)(s)) for s in x])
    torch.testing.assert_close(out, ref.as_subclass(torch.Tensor))


def test_scale_intensity_ratio_within_range_and_channel_wise():
    x = _rand(32, 3, 2, 4, 4) + 0.1
    torch.manual_seed(0)
    out = vt.BatchedRandScaleIntensity(factors=(-0.3, 0.5), prob=1.0, channel_wise=True)(x)
    ratio = out / x
    per_channel = ratio.flatten(2)
    torch.testing.assert_close(per_channel.amin(dim=2), per_channel.amax(dim=2))  # one factor per channel
    assert (ratio >= 0.7 - 1e-6).all() and (ratio <= 1.5 + 1e-6).all()
    assert (per_channel[:, 0, 0] != per_channel[:, 1, 0]).any()


# ---------------------------------------------------------------- noise
@pytest.mark.parametrize("mean", [0.0, 3.0])
@pytest.mark.parametrize("std", [2.0, 4.0])
@pytest.mark.parametrize("sample_std", [False, True])
def test_batched_noise_statistics(mean, std, sample_std):
    torch.manual_seed(0)
    x = torch.zeros(8, 1, 8, 32, 32)
    out = vt.BatchedRandGaussianNoise(prob=1.0, mean=mean, std=std, sample_std=sample_std)(x)
    assert abs(out.mean().item() - mean) < 0.5
    per_sample_std = out.flatten(1).std(dim=1)
    if sample_std:
        assert (per_sample_std <= std * 1.05).all()
        assert abs(per_sample_std.mean().item() - std / 2) < 0.6 * std / 2 + 0.6
    else:
        torch.testing.assert_close(per_sample_std, torch.full_like(per_sample_std, std), rtol=0.05, atol=0)


def test_batched_noise_fields_independent_across_samples():
    torch.manual_seed(1)
    x = torch.zeros(2, 1, 8, 32, 32)
    out = vt.BatchedRandGaussianNoise(prob=1.0, std=1.0, sample_std=False)(x).flatten(1)
    corr = torch.corrcoef(out)[0, 1].abs().item()
    assert corr < 0.1


def test_batched_noise_keeps_float_dtype_and_casts_integers():
    t = vt.BatchedRandGaussianNoise(prob=1.0)
    assert t(torch.zeros(2, 1, 4, 4, dtype=torch.float64)).dtype == torch.float64
    assert t(torch.zeros(2, 1, 4, 4, dtype=torch.int16)).dtype == torch.float32


def test_batched_noise_randomize_false_repeats():
    t = vt.BatchedRandGaussianNoise(prob=0.5)
    x = torch.zeros(8, 1, 4, 4)
    torch.testing.assert_close(t(x), t(x, randomize=False))


def test_rand_gaussian_noise_tensor_per_call_and_reproducible():
    x = torch.zeros(4, 1, 8, 8, dtype=torch.float64)
    t = vt.RandGaussianNoiseTensor(prob=1.0, std=1.0, sample_std=False).set_random_state(3)
    a = t(x)
    assert a.dtype == torch.float32
    assert a.std().item() == pytest.approx(1.0, rel=0.2)
    torch.testing.assert_close(t(x, randomize=False), a)
    again = vt.RandGaussianNoiseTensor(prob=1.0, std=1.0, sample_std=False).set_random_state(3)(x)
    torch.testing.assert_close(again, a)
    assert not torch.equal(t(x), a)  # a new call draws new noise
    assert torch.equal(vt.RandGaussianNoiseTensor(prob=0.0)(x), x.float())


def test_rand_gaussian_noise_tensord_same_noise_on_every_key():
    d = {"a": torch.zeros(1, 4, 8, 8), "b": torch.ones(1, 4, 8, 8)}
    out = vt.RandGaussianNoiseTensord(["a", "b"], prob=1.0, std=1.0)(d)
    torch.testing.assert_close(out["a"], out["b"] - 1)
    assert out["a"].abs().sum() > 0


# ---------------------------------------------------------------- smoothing
@pytest.mark.parametrize("sigma", [0.5, 1.0, 1.5, 2.5])
def test_smooth_equals_monai_gaussian_smooth(sigma):
    x = _rand(2, 1, 12, 20, 20)
    out = vt.BatchedRandGaussianSmooth(sigma_x=sigma, sigma_y=sigma, sigma_z=sigma, prob=1.0)(x)
    ref = torch.stack([torch.as_tensor(GaussianSmooth(sigma)(s)) for s in x]).as_subclass(torch.Tensor)
    torch.testing.assert_close(out, ref, rtol=1e-2, atol=1e-5)


def test_smooth_anisotropic_equals_monai_with_axis_names():
    x = _rand(2, 2, 10, 16, 16)
    out = vt.BatchedRandGaussianSmooth(sigma_x=2.0, sigma_y=1.0, sigma_z=0.5, prob=1.0)(x)
    ref = torch.stack([torch.as_tensor(GaussianSmooth((0.5, 1.0, 2.0))(s)) for s in x]).as_subclass(torch.Tensor)
    torch.testing.assert_close(out, ref, rtol=1e-2, atol=1e-5)


@pytest.mark.parametrize("axis_name, dim", [("sigma_x", 4), ("sigma_y", 3), ("sigma_z", 2)])
@pytest.mark.parametrize("batched", [True, False])
def test_sigma_names_mean_their_axes(axis_name, dim, batched):
    impulse = torch.zeros(1, 1, 9, 9, 9)
    impulse[0, 0, 4, 4, 4] = 1
    sigmas = {"sigma_x": (0.0, 0.0), "sigma_y": (0.0, 0.0), "sigma_z": (0.0, 0.0), axis_name: (1.5, 1.5)}
    if batched:
        out = vt.BatchedRandGaussianSmoothd(["img"], prob=1.0, **sigmas)({"img": impulse})["img"]
    else:
        out = vt.RandGaussianSmoothd(["img"], prob=1.0, **sigmas)({"img": impulse[0]})["img"][None]
        out = out.as_subclass(torch.Tensor)
    spread = (out[0, 0] > 1e-4).nonzero()
    for d in (2, 3, 4):
        extent = spread[:, d - 2].unique().numel()
        assert (extent > 1) == (d == dim), f"{axis_name} spread along dim {d}: {extent}"


def test_stronger_sigma_lowers_std():
    x = _rand(1, 1, 16, 32, 32)
    stds = [
        vt.BatchedRandGaussianSmooth(sigma_x=s, sigma_y=s, sigma_z=s, prob=1.0, border_type="reflect")(x).std().item()
        for s in (0.0, 0.5, 1.0, 2.0)
    ]
    assert stds[0] == pytest.approx(x.std().item())
    assert stds == sorted(stds, reverse=True) and len(set(stds)) == 4


def _filter3d_reference(x, kernels, border_type):
    """Sample by sample: pad the 5-D volume, then one 3-D convolution per axis (the general path)."""
    out = []
    for b in range(x.shape[0]):
        v = x[b : b + 1].transpose(0, 1)  # (C, 1, Z, Y, X): channels as a batch
        for dim, k in zip((2, 3, 4), kernels, strict=True):
            if k is None:
                continue
            shape, pad = [1, 1, 1, 1, 1], [0] * 6
            shape[dim] = k.shape[-1]
            pad[2 * (4 - dim)] = pad[2 * (4 - dim) + 1] = k.shape[-1] // 2
            v = torch.nn.functional.conv3d(torch.nn.functional.pad(v, pad, mode=border_type), k[b].reshape(shape))
        out.append(v.transpose(0, 1)[0])
    return torch.stack(out)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("border_type", ["constant", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("axes", [(True, True, True), (False, True, True), (True, False, False), (False, False, True)])
def test_filter3d_separable_equals_per_sample_3d_convolutions(seed, border_type, axes):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(3, 2, 7, 11, 13, generator=gen, dtype=torch.float64)
    kernels = [
        gaussian_kernel1d(torch.rand(3, generator=gen, dtype=torch.float64) * 2, tail) if use else None
        for use, tail in zip(axes, (2, 3, 1), strict=True)
    ]
    out = filter3d_separable(x, *kernels, border_type=border_type)
    assert out.shape == x.shape and out.dtype == x.dtype
    torch.testing.assert_close(out, _filter3d_reference(x, kernels, border_type), atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("size", [5, 9, 13])
def test_filter3d_separable_equals_full_3d_kernel(size):
    x = _rand(2, 3, 10, 12, 14)
    k = gaussian_kernel1d(torch.tensor([1.0, 2.0]), size // 2)
    out = filter3d_separable(x, k, k, k, border_type="constant")
    for b in range(2):
        full = k[b][:, None, None] * k[b][None, :, None] * k[b][None, None, :]
        ref = torch.nn.functional.conv3d(x[b : b + 1].transpose(0, 1), full[None, None], padding=size // 2)
        torch.testing.assert_close(out[b], ref.transpose(0, 1)[0], atol=1e-5, rtol=1e-5)


def test_smooth_rejects_bad_arguments():
    with pytest.raises(ValueError, match="sigma_x"):
        vt.BatchedRandGaussianSmooth(sigma_x=(1, 2, 3))
    with pytest.raises(ValueError, match="sigma_y"):
        vt.BatchedRandGaussianSmooth(sigma_y=-1.0)
    with pytest.raises(ValueError, match="border_type"):
        vt.BatchedRandGaussianSmooth(border_type="mirror")


# ---------------------------------------------------------------- histogram shift, sharpen, shuffle, invert
def test_histogram_shift_is_a_constant_offset_per_sample():
    x = _rand(16, 2, 4, 8, 8)
    out = vt.BatchedRandHistogramShiftd(["a"], shift_range=(-0.3, 0.2), prob=1.0)({"a": x})["a"]
    diff = (out - x).flatten(1)
    torch.testing.assert_close(diff.amin(dim=1), diff.amax(dim=1), atol=1e-6, rtol=0)
    assert (diff >= -0.3 - 1e-6).all() and (diff <= 0.2 + 1e-6).all()


@pytest.mark.parametrize("channels", [1, 2, 3])
def test_sharpen_multichannel_matches_formula(channels):
    x = _rand(2, channels, 5, 6, 7)
    out = vt.BatchedRandSharpend(["a"], alpha_range=(0.3, 0.3), prob=1.0)({"a": x})["a"]
    kernel = torch.zeros(3, 3, 3)
    kernel[1, 1, 1] = 7
    for z, y, xx in ((0, 1, 1), (2, 1, 1), (1, 0, 1), (1, 2, 1), (1, 1, 0), (1, 1, 2)):
        kernel[z, y, xx] = -1
    for c in range(channels):
        sharp = torch.nn.functional.conv3d(x[:, c : c + 1], kernel[None, None], padding=1)
        torch.testing.assert_close(out[:, c : c + 1], 0.7 * x[:, c : c + 1] + 0.3 * sharp)
    # then a 1-channel call still works (upstream cached a kernel per channel count)
    vt.BatchedRandSharpend(["a"], prob=1.0)({"a": x[:, :1]})


def test_pixel_shuffle_permutes_voxels_within_each_sample():
    x = _rand(4, 2, 6, 12, 12)
    out = vt.BatchedRandLocalPixelShufflingd(["a"], patch_size=3, shuffle_prob=0.5, prob=1.0)({"a": x})["a"]
    for b in range(4):
        for c in range(2):
            torch.testing.assert_close(out[b, c].flatten().sort().values, x[b, c].flatten().sort().values)
    moved = (out != x).float().mean().item()
    assert 0.2 < moved < 0.6  # about shuffle_prob of the volume, minus voxels mapped onto themselves
    # channels move together
    torch.testing.assert_close((out[:, 0] != x[:, 0]), (out[:, 1] != x[:, 1]))


def test_invert_intensity_and_missing_keys():
    d = {"a": torch.ones(2, 3), "b": torch.full((2, 3), 2.0)}
    out = vt.RandInvertIntensityd(["a", "b"], prob=1.0)(d)
    assert torch.equal(out["a"], -d["a"]) and torch.equal(out["b"], -d["b"])
    assert torch.equal(vt.RandInvertIntensityd(["a"], prob=0.0)(d)["a"], d["a"])
    with pytest.raises(KeyError):
        vt.RandInvertIntensityd(["a", "c"], prob=1.0)(d)
    assert torch.equal(vt.RandInvertIntensityd(["a", "c"], prob=1.0, allow_missing_keys=True)(d)["a"], -d["a"])


def test_invert_intensity_reproducible_in_compose():
    d = {"a": torch.ones(3)}
    runs = [
        [Compose([vt.RandInvertIntensityd(["a"], prob=0.5)]).set_random_state(1)(d)["a"][0].item() for _ in range(1)]
        for _ in range(2)
    ]
    assert runs[0] == runs[1]


def test_numpy_gamma_array_is_accepted():
    assert vt.BatchedRandAdjustContrast(gamma=np.array([0.5, 1.5])).gamma_range == (0.5, 1.5)
