from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch import LightningDataModule
from monai.transforms import CenterSpatialCrop

from viscy_data.device_transforms import DeviceTransformMixin, DeviceTransforms
from viscy_data.norm_meta import collate_norm_meta


def _level(value: float) -> dict:
    return {"mean": torch.tensor(value), "std": torch.tensor(2.0)}


class _Shift:
    """Dictionary transform: ``key - norm_meta[key]['fov_statistics']['mean']`` per sample."""

    def __init__(self, keys):
        self.keys = keys

    def __call__(self, d):
        d = dict(d)
        for k in self.keys:
            mean = d["norm_meta"][k]["fov_statistics"]["mean"]
            d[k] = d[k] - mean.view(-1, 1, 1, 1, 1)
        return d


class _Times:
    def __init__(self, keys, factor):
        self.keys, self.factor = keys, factor

    def __call__(self, d):
        return {**d, **{k: d[k] * self.factor for k in self.keys}}


def test_collate_norm_meta_keeps_what_every_sample_has():
    a = {"GFP": {"fov_statistics": _level(1.0), "timepoint_statistics": _level(5.0)}, "RFP": {"fov_statistics": {}}}
    b = {"GFP": {"fov_statistics": _level(3.0)}}
    out = collate_norm_meta([a, b])
    assert set(out) == {"GFP"} and set(out["GFP"]) == {"fov_statistics"}
    assert out["GFP"]["fov_statistics"]["mean"].tolist() == [1.0, 3.0]
    assert collate_norm_meta([None, None]) is None
    assert collate_norm_meta(out) is out and collate_norm_meta(None) is None
    with pytest.raises(ValueError, match="1 of 2 samples"):
        collate_norm_meta([a, None])


@pytest.mark.parametrize("shape", [(2, 3, 5, 17, 16), (1, 2, 4, 9, 10)])
@pytest.mark.parametrize("final", [(3, 8, 7), (-1, 9, 9), (4, 5, 6)])
def test_crop_matches_monai_with_and_without_transforms(shape, final):
    x = torch.randn(shape)
    keys = [f"ch_{i}" for i in range(shape[1])]
    expected = torch.stack([torch.as_tensor(CenterSpatialCrop(final)(s)) for s in x])
    assert torch.equal(DeviceTransforms(keys, final_size=final)(x), expected)
    assert torch.equal(DeviceTransforms(keys, [_Times(keys, 1.0)], final_size=final)(x), expected)


def test_normalisations_always_augmentations_only_when_asked():
    keys = ["a", "b"]
    x = torch.ones(2, 2, 1, 4, 4)
    meta = [{k: {"fov_statistics": _level(float(i))} for k in keys} for i in range(2)]
    transforms = DeviceTransforms(keys, [_Shift(keys)], [_Times(["b"], 10.0)], final_size=(1, 2, 2))
    plain = transforms(x, meta, augment=False)
    assert plain.shape == (2, 2, 1, 2, 2)
    assert plain[0].unique().tolist() == [1.0] and plain[1].unique().tolist() == [0.0]
    augmented = transforms(x, meta, augment=True)
    assert augmented[0, 0].unique().tolist() == [1.0] and augmented[0, 1].unique().tolist() == [10.0]
    with pytest.raises(ValueError, match="exceeds the patch size"):
        DeviceTransforms(keys, final_size=(1, 8, 8))(x)
    with pytest.raises(ValueError, match="unique"):
        DeviceTransforms(["a", "a"])


class _Module(DeviceTransformMixin, LightningDataModule):
    def __init__(self):
        super().__init__()
        self.device_transforms = DeviceTransforms(["a"], augmentations=[_Times(["a"], 2.0)], final_size=(-1, 2, 2))
        self.last_stage = None

    def augments(self, key, stage):
        return stage == "train" and key != "anchor"

    def after_device_transforms(self, batch, stage):
        self.last_stage = stage
        return batch


@pytest.mark.parametrize(
    ("flags", "stage"),
    [
        (None, "train"),
        ({"training": True}, "train"),
        ({"training": True, "sanity_checking": True}, "validate"),
        ({"validating": True}, "validate"),
        ({"predicting": True}, "predict"),
        ({"testing": True}, "test"),
    ],
)
def test_mixin_transforms_every_image_key_by_stage(flags, stage):
    dm = _Module()
    dm.trainer = None if flags is None else SimpleNamespace(**flags)
    batch = {
        "anchor": torch.ones(3, 1, 2, 4, 4),
        "anchor_norm_meta": [None] * 3,
        "positive": torch.ones(3, 1, 2, 4, 4),
        "index": ["kept"],
    }
    out = dm.on_after_batch_transfer(batch, 0)
    assert set(out) == {"anchor", "positive", "index"} and dm.last_stage == stage
    assert out["anchor"].shape == out["positive"].shape == (3, 1, 2, 2, 2)
    assert out["anchor"].unique().tolist() == [1.0]
    assert out["positive"].unique().tolist() == ([2.0] if stage == "train" else [1.0])
    bare = torch.ones(1, 1, 2, 4, 4)
    assert dm.on_after_batch_transfer(bare, 0) is bare


def test_mixin_needs_device_transforms():
    dm = _Module()
    dm.device_transforms = None
    with pytest.raises(RuntimeError, match="setup"):
        dm.on_after_batch_transfer({"anchor": torch.ones(1, 1, 1, 2, 2)}, 0)


def test_transform_keys_checked_against_channels():
    from monai.transforms import ScaleIntensityd

    DeviceTransforms(["ch_0"], [ScaleIntensityd(keys=["ch_0", "ch_1"], allow_missing_keys=True)])
    with pytest.raises(ValueError, match=r"augmentations\[1\] \(ScaleIntensityd\) names key\(s\) \['ch_1'\]"):
        DeviceTransforms(["ch_0"], [], [ScaleIntensityd(keys="ch_0"), ScaleIntensityd(keys=["ch_0", "ch_1"])])


def test_norm_meta_collated_before_transfer_gives_the_same_batch():
    """Per-sample statistics travel to the device as a few (B,) tensors, with the same result."""
    from lightning.pytorch.utilities import move_data_to_device

    class _Normalising(_Module):
        def __init__(self):
            super().__init__()
            self.device_transforms = DeviceTransforms(["a"], [_Shift(["a"])], final_size=(-1, 2, 2))

    def batch():
        meta = [{"a": {"fov_statistics": _level(float(i))}} for i in range(3)]
        ones = torch.ones(3, 1, 2, 4, 4)
        return {"anchor": ones, "anchor_norm_meta": meta, "positive": ones.clone(), "positive_norm_meta": meta[::-1]}

    dm = _Normalising()
    direct = dm.on_after_batch_transfer(batch(), 0)
    before = dm.on_before_batch_transfer(batch(), 0)
    collated = before["anchor_norm_meta"]
    assert set(collated) == {"a"} and collated["a"]["fov_statistics"]["mean"].tolist() == [0.0, 1.0, 2.0]
    assert before["positive_norm_meta"]["a"]["fov_statistics"]["mean"].tolist() == [2.0, 1.0, 0.0]
    moved = dm.on_after_batch_transfer(move_data_to_device(before, "cpu"), 0)
    assert torch.equal(moved["anchor"], direct["anchor"]) and torch.equal(moved["positive"], direct["positive"])
    assert [moved["anchor"][i].unique().item() for i in range(3)] == [1.0, 0.0, -1.0]
    assert "anchor_norm_meta" not in moved and "positive_norm_meta" not in moved
    # a batch of samples without statistics collates to None, as on_after_batch_transfer would
    assert (
        dm.on_before_batch_transfer({"anchor": torch.ones(2, 1, 1, 2, 2), "anchor_norm_meta": [None] * 2}, 0)[
            "anchor_norm_meta"
        ]
        is None
    )
    bare = torch.ones(1, 1, 2, 4, 4)
    assert dm.on_before_batch_transfer(bare, 0) is bare
