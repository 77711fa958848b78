import inspect

import monai.transforms as mt
import numpy as np
import pytest
import torch
from monai.transforms import MultiSampleTrait

import viscy_transforms as vt

# Constructor parameter names (and defaults where the spec gives them): users' YAML configs depend on them.
SIGNATURES = {
    "BatchedRandAdjustContrast": "gamma=(0.5, 4.5), prob=0.1, invert_image=False, retain_stats=False",
    "BatchedRandAdjustContrastd": "keys, gamma=(0.5, 4.5), prob=0.1, invert_image=False, retain_stats=False, "
    "allow_missing_keys=False",
    "BatchedRandScaleIntensity": "factors=0.1, prob=0.1, channel_wise=False",
    "BatchedRandScaleIntensityd": "keys, factors=0.1, prob=0.1, channel_wise=False, allow_missing_keys=False",
    "RandGaussianNoiseTensor": "prob=0.1, mean=0.0, std=0.1, dtype=float32, sample_std=True",
    "RandGaussianNoiseTensord": "keys, prob=0.1, mean=0.0, std=0.1, dtype=float32, allow_missing_keys=False, "
    "sample_std=True",
    "BatchedRandGaussianNoise": "prob=0.1, mean=0.0, std=0.1, dtype=float32, sample_std=True",
    "BatchedRandGaussianNoised": "keys, prob=0.1, mean=0.0, std=0.1, dtype=float32, allow_missing_keys=False, "
    "sample_std=True",
    "BatchedRandGaussianSmooth": "sigma_x=(1.0, 3.0), sigma_y=(1.0, 3.0), sigma_z=(1.0, 3.0), truncated=4.0, "
    "prob=0.5, border_type=constant",
    "BatchedRandGaussianSmoothd": "keys, sigma_x=(1.0, 3.0), sigma_y=(1.0, 3.0), sigma_z=(1.0, 3.0), truncated=4.0, "
    "prob=0.5, border_type=constant, allow_missing_keys=False",
    "BatchedRandHistogramShiftd": "keys, shift_range=(-0.1, 0.1), prob=0.1, allow_missing_keys=False",
    "BatchedRandSharpend": "keys, alpha_range=(0.1, 0.5), prob=0.1, allow_missing_keys=False",
    "BatchedRandLocalPixelShufflingd": "keys, patch_size=3, shuffle_prob=0.1, prob=0.1, allow_missing_keys=False",
    "RandInvertIntensityd": "keys, prob=0.1, allow_missing_keys=False",
    "BatchedScaleIntensityRangePercentiles": "lower, upper, b_min, b_max, clip=False, relative=False, "
    "channel_wise=False, dtype=float32",
    "BatchedScaleIntensityRangePercentilesd": "keys, lower, upper, b_min, b_max, clip=False, relative=False, "
    "channel_wise=False, dtype=float32, allow_missing_keys=False",
    "BatchedRandAffined": "keys, prob=0.1, rotate_range=None, shear_range=None, translate_range=None, "
    "scale_range=None, mode=bilinear, allow_missing_keys=False, spatial_size=None",  # spatial_size: ours, last
    "BatchedRand3DElasticd": "keys, sigma_range, magnitude_range, spatial_size=None, prob=0.1, mode=bilinear, "
    "padding_mode=reflection, allow_missing_keys=False",
    "BatchedRandFlip": "spatial_axes, prob=0.5",
    "BatchedRandFlipd": "keys, spatial_axes=(0, 1, 2), prob=0.5, allow_missing_keys=False",
    "BatchedRandZStackShiftd": "keys, max_shift=3, prob=0.1, mode=constant, cval=0.0, allow_missing_keys=False",
    "BatchedZoom": "scale_factor, mode, align_corners=None, recompute_scale_factor=None, antialias=False",
    "BatchedZoomd": "keys, scale_factor, mode, align_corners=None, recompute_scale_factor=None, antialias=False, "
    "allow_missing_keys=False",
    "BatchedRandSpatialCrop": "roi_size, max_roi_size=None, random_center=True, random_size=False",
    "BatchedRandSpatialCropd": "keys, roi_size, max_roi_size=None, random_center=True, random_size=False, "
    "allow_missing_keys=False",
    "BatchedCenterSpatialCrop": "roi_size",
    "BatchedCenterSpatialCropd": "keys, roi_size, allow_missing_keys=False",
    "NormalizeSampled": "keys, level, subtrahend=mean, divisor=std, remove_meta=False",
    "StackChannelsd": "channel_map",
    "TiledSpatialCropSamplesd": "keys, roi_size, num_samples",
    "Decollate": "detach=True, pad_batch=True, fill_value=None",
    "Decollated": "keys, detach=True, pad_batch=True, fill_value=None, **kwargs",
    "ToDeviced": "keys, **kwargs",
    "RandWeightedCropd": "keys, w_key, spatial_size, num_samples=1, **kwargs",
    "RandAffined": "keys, prob, rotate_range, shear_range, scale_range, **kwargs",
    "RandAdjustContrastd": "keys, prob, gamma, **kwargs",
    "RandScaleIntensityd": "keys, factors, prob, **kwargs",
    "RandGaussianNoised": "keys, prob, mean, std, **kwargs",
    "RandGaussianSmoothd": "keys, prob, sigma_x, sigma_y, sigma_z, **kwargs",
    "ScaleIntensityRangePercentilesd": "keys, lower, upper, b_min, b_max, clip=False, relative=False, "
    "channel_wise=False, dtype=None, allow_missing_keys=False",
    "RandSpatialCropd": "keys, roi_size, random_center=True, **kwargs",
    "CenterSpatialCropd": "keys, roi_size, **kwargs",
    "RandFlipd": "keys, prob, spatial_axis, **kwargs",
    "NormalizeIntensityd": "keys, **kwargs",
}


def _render(cls):
    parts = []
    for p in inspect.signature(cls.__init__).parameters.values():
        if p.name == "self":
            continue
        if p.kind is p.VAR_KEYWORD:
            parts.append(f"**{p.name}")
        elif p.default is p.empty:
            parts.append(p.name)
        else:
            default = p.default
            if default is np.float32:
                default = "float32"
            elif isinstance(default, list):
                default = tuple(default)
            parts.append(f"{p.name}={default}")
    return ", ".join(parts)


def test_exports_exactly_the_44_names():
    assert len(vt.__all__) == 44 == len(set(vt.__all__))
    assert set(vt.__all__) == set(SIGNATURES)
    for name in vt.__all__:
        assert getattr(vt, name).__module__.startswith("viscy_transforms._")
    assert isinstance(vt.__version__, str)


@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_constructor_signature(name):
    assert _render(getattr(vt, name)) == SIGNATURES[name]


def test_private_modules_importable():
    import importlib

    for module in (
        "_adjust_contrast _affine _crop _decollate _elastic _flip _gaussian_smooth _histogram_shift "
        "_invert_intensity _monai_wrappers _noise _normalize _percentile_scale _pixel_shuffle _scale_intensity "
        "_sharpen _stack_channels _tiled_crop _typing _zoom _zstack_shift"
    ).split():
        importlib.import_module(f"viscy_transforms.{module}")
    from viscy_transforms._gaussian_smooth import __all__ as smooth_all

    assert "filter3d_separable" in smooth_all


def test_wrappers_are_monai_subclasses_and_behave_like_monai():
    affine = vt.RandAffined(["a"], prob=1.0, rotate_range=0.1, shear_range=None, scale_range=[0, 0.2, 0.2])
    assert isinstance(affine, mt.RandAffined)
    assert affine.rand_affine.rand_affine_grid.scale_range == (0, 0.2, 0.2)  # read by viscy-data
    crop = vt.RandWeightedCropd(["img"], w_key="w", spatial_size=(2, 4, 4), num_samples=3)
    assert isinstance(crop, MultiSampleTrait) and crop.cropper.num_samples == 3
    assert vt.ScaleIntensityRangePercentilesd(["a"], 1, 99, 0, 1).scaler.dtype is None
    out = vt.ToDeviced(["a"], device="cpu")({"a": torch.zeros(1)})
    assert out["a"].device.type == "cpu"
    sample = {"a": torch.rand(1, 4, 8, 8)}
    a = vt.RandAdjustContrastd(["a"], prob=1.0, gamma=(0.5, 2.0)).set_random_state(0)(sample)["a"]
    b = mt.RandAdjustContrastd(["a"], prob=1.0, gamma=(0.5, 2.0)).set_random_state(0)(sample)["a"]
    torch.testing.assert_close(a, b)


def test_transforms_compose_with_monai():
    x = torch.rand(2, 1, 4, 8, 8)
    pipeline = mt.Compose(
        [
            vt.BatchedRandFlipd(["a"], spatial_axes=[2], prob=1.0),  # always flips X
            vt.BatchedRandAffined(["a"], prob=0.0, rotate_range=[3.14, 0, 0]),  # never fires
            vt.BatchedRandGaussianNoised(["a"], prob=0.0),
            mt.Lambdad(["a"], lambda v: v * 2),
        ]
    ).set_random_state(seed=0)
    out = pipeline({"a": x.clone(), "b": "passes through"})
    assert out["b"] == "passes through"
    torch.testing.assert_close(out["a"], torch.flip(x, dims=[-1]) * 2, rtol=0, atol=0)
    # at prob 0.5 each sample is either untouched or flipped, and the pipeline is reproducible
    halves = mt.Compose([vt.BatchedRandFlipd(["a"], spatial_axes=[2], prob=0.5)])
    first = halves.set_random_state(seed=1)({"a": x.clone()})["a"]
    for i in range(2):
        assert torch.equal(first[i], x[i]) or torch.equal(first[i], torch.flip(x[i], dims=[-1]))
    torch.testing.assert_close(halves.set_random_state(seed=1)({"a": x.clone()})["a"], first, rtol=0, atol=0)


# spec §2: dictionary transforms are MONAI MapTransforms; the random ones are also Randomizable (set_random_state)
_DICT_TRANSFORMS = [n for n in vt.__all__ if n.endswith("d")]
_RANDOM_DICT = {n for n in _DICT_TRANSFORMS if "Rand" in n}


@pytest.mark.parametrize("name", _DICT_TRANSFORMS)
def test_dict_transforms_are_map_transforms(name):
    cls = getattr(vt, name)
    assert issubclass(cls, mt.MapTransform)
    assert issubclass(cls, mt.Randomizable) == (name in _RANDOM_DICT)


def test_stack_channels_keys_are_the_input_channels():
    stack = vt.StackChannelsd({"source": "Phase", "target": ["Nuclei", "Membrane"]})
    assert tuple(stack.keys) == ("Phase", "Nuclei", "Membrane")
    sample = {k: torch.full((1, 2, 3, 3), float(i)) for i, k in enumerate(["Phase", "Nuclei", "Membrane"])}
    out = stack(sample)
    assert set(out) == {"source", "target"}
    assert out["target"].shape == (2, 2, 3, 3) and out["target"][1].eq(2).all()


def test_typing_required_keys():
    from viscy_transforms import _typing

    assert _typing.ChannelMap.__required_keys__ == {"source"}
    assert _typing.Sample.__required_keys__ == frozenset()
    assert _typing.HCSStackIndex._fields == ("image", "time", "z")
    assert set(_typing.LevelNormStats.__annotations__) == {"mean", "std", "median", "iqr"}
    assert set(_typing.ChannelNormStats.__annotations__) == {"dataset_statistics", "fov_statistics"}
