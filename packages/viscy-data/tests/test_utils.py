import numpy as np
import pytest
import torch
from monai.transforms import CenterSpatialCrop

from viscy_data._utils import (
    BatchedCenterSpatialCropd,
    _collate_samples,
    _ensure_channel_list,
    _gather_channels,
    _read_norm_meta,
    _scatter_channels,
    _search_int_in_str,
    _transform_channel_wise,
)


@pytest.mark.parametrize("shape", [(2, 3, 5, 17, 16), (1, 1, 4, 9, 10)])
@pytest.mark.parametrize("roi", [(3, 8, 7), (4, 9, 9), (-1, 5, 6), (10, 20, 20)])
def test_batched_center_crop_matches_monai_per_sample(shape, roi):
    x = torch.randn(shape)
    out = BatchedCenterSpatialCropd(keys=["a"], roi_size=roi)({"a": x, "b": x})
    expected = torch.stack([torch.as_tensor(CenterSpatialCrop(roi)(s)) for s in x])
    assert out["a"].shape == expected.shape
    assert torch.equal(out["a"], expected)
    assert out["b"] is x


def test_batched_center_crop_missing_key():
    crop = BatchedCenterSpatialCropd(keys=["a", "z"], roi_size=2)
    with pytest.raises(KeyError):
        crop({"a": torch.zeros(1, 1, 4, 4)})
    lenient = BatchedCenterSpatialCropd(keys=["a", "z"], roi_size=2, allow_missing_keys=True)
    out = lenient({"a": torch.zeros(1, 1, 4, 4)})
    assert out["a"].shape == (1, 1, 2, 2)


def test_ensure_channel_list():
    assert _ensure_channel_list("GFP") == ["GFP"]
    assert _ensure_channel_list(("a", "b")) == ["a", "b"]
    with pytest.raises(TypeError, match="channel names"):
        _ensure_channel_list(3)


def test_search_int_in_str():
    assert _search_int_in_str(r"(?<=_p)\d{3}", "img_p012_z3_cp_masks.png") == "012"
    with pytest.raises(ValueError, match="nothing_here"):
        _search_int_in_str(r"_p\d{3}", "nothing_here")


def _meta(v):
    return {"GFP": {"fov_statistics": {"mean": torch.tensor(v), "std": torch.tensor(1.0)}}}


def test_collate_samples_multi_patch_keeps_index_structure():
    batch = [
        {
            "index": ("/A/1/0/0", i, 2),
            "source": [torch.full((1, 2, 3, 3), float(i)), torch.full((1, 2, 3, 3), float(i) + 0.5)],
            "norm_meta": _meta(float(i)),
        }
        for i in range(3)
    ]
    out = _collate_samples(batch)
    assert out["source"].shape == (6, 1, 2, 3, 3)
    names, t, z = out["index"]
    assert names == ["/A/1/0/0"] * 6
    assert t.tolist() == [0, 0, 1, 1, 2, 2]
    assert z.tolist() == [2] * 6
    assert out["norm_meta"]["GFP"]["fov_statistics"]["mean"].tolist() == [0, 0, 1, 1, 2, 2]
    assert out["source"][1, 0, 0, 0, 0] == 0.5


def test_collate_samples_without_norm_meta_omits_key():
    batch = [{"source": torch.zeros(1, 2, 2), "norm_meta": None} for _ in range(2)]
    out = _collate_samples(batch)
    assert "norm_meta" not in out
    assert out["source"].shape == (2, 1, 2, 2)


def test_collate_samples_mixed_norm_meta_raises():
    batch = [{"source": torch.zeros(1), "norm_meta": None}, {"source": torch.zeros(1), "norm_meta": _meta(1.0)}]
    with pytest.raises(ValueError, match="1 of 2 samples"):
        _collate_samples(batch)


def test_scatter_gather_roundtrip_and_norm_meta():
    patch = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(2, 3, 4)
    d = _scatter_channels(["a", "b", "c"], patch, [_meta(1.0), _meta(2.0)])
    assert d["b"].shape == (2, 1, 4)
    assert d["norm_meta"]["GFP"]["fov_statistics"]["mean"].tolist() == [1.0, 2.0]
    assert torch.equal(_gather_channels(d), patch)
    assert "norm_meta" not in _scatter_channels(["a", "b", "c"], patch, [None, None])
    with pytest.raises(ValueError, match="3 channels but 2 names"):
        _scatter_channels(["a", "b"], patch, None)


def test_transform_channel_wise_applies_per_channel():
    patch = torch.ones(2, 2, 3)

    def scale_b(d):
        assert set(d) == {"a", "b", "norm_meta"}
        return {"a": d["a"], "b": d["b"] * d["norm_meta"]["GFP"]["fov_statistics"]["mean"].view(-1, 1, 1)}

    out = _transform_channel_wise(scale_b, ["a", "b"], patch, [_meta(2.0), _meta(3.0)])
    assert out[:, 0].eq(1).all()
    assert out[0, 1].eq(2).all() and out[1, 1].eq(3).all()


class _FakePosition:
    def __init__(self, attrs):
        self.zattrs = attrs


def test_read_norm_meta_with_timepoints_and_without():
    attrs = {
        "normalization": {
            "GFP": {
                "fov_statistics": {"mean": 1.5, "std": 2},
                "timepoint_statistics": {"0": {"mean": 3.0}, "1": {"mean": 4.0}},
            }
        }
    }
    meta = _read_norm_meta(_FakePosition(attrs))
    assert meta["GFP"]["fov_statistics"]["mean"].dtype == torch.float32
    assert meta["GFP"]["timepoint_statistics"]["1"]["mean"].item() == 4.0
    assert _read_norm_meta(_FakePosition({})) is None
    assert np.isclose(meta["GFP"]["fov_statistics"]["std"].item(), 2.0)
