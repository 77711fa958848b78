import imageio.v3 as iio
import numpy as np
import pytest
import torch
from iohub.ngff import open_ome_zarr
from monai.transforms import RandAffined, RandSpatialCropSamplesd

from viscy_data.hcs import HCSDataModule, MaskTestDataset, SlidingWindowDataset
from viscy_data.synthetic import write_synthetic_plate


class NormalizeSampled:
    """Stand-in with the name of viscy_transforms.NormalizeSampled (viscy-data cannot import it)."""

    def __init__(self, keys, level="fov_statistics"):
        self.keys, self.level = keys, level

    def __call__(self, d):
        d = dict(d)
        for k in self.keys:
            stats = d["norm_meta"][k][self.level]
            d[k] = (d[k] - stats["mean"]) / stats["std"]
        return d


def _dm(plate, **kw):
    args = dict(
        data_path=plate.store_path,
        source_channel="Phase3D",
        target_channel=["GFP"],
        z_window_size=3,
        batch_size=4,
        num_workers=0,
        yx_patch_size=(64, 48),
        seed=0,
    )
    args.update(kw)
    return HCSDataModule(**args)


def test_fit_batches_shapes_keys_dtypes(synthetic_plate):
    dm = _dm(synthetic_plate, normalizations=[NormalizeSampled(["Phase3D", "GFP"])])
    dm.setup("fit")
    assert len(dm.train_dataset.positions) == 3 and len(dm.val_dataset.positions) == 1
    assert len(dm.train_dataset) == 3 * 8 * 2
    batch = next(iter(dm.train_dataloader()))
    assert batch["source"].shape == (4, 1, 3, 64, 48) and batch["source"].dtype == torch.float32
    assert batch["target"].shape == (4, 1, 3, 64, 48)
    assert type(batch["source"]) is torch.Tensor
    names, t, z = batch["index"]
    assert len(names) == 4 and names[0].startswith("/") and names[0].endswith("/0")
    assert t.shape == z.shape == (4,)
    assert batch["norm_meta"]["GFP"]["fov_statistics"]["mean"].shape == (4,)
    assert batch["norm_meta"]["GFP"]["timepoint_statistics"]["mean"].shape == (4,)
    val = next(iter(dm.val_dataloader()))
    assert val["source"].shape == (4, 1, 3, 64, 48)
    assert len(val["index"]) == 3 and len(val["index"][0]) == 4
    # normalised with the FOV statistics: whole-FOV z-scored data have mean ~0
    full = dm.val_dataset
    stacked = torch.stack([full[i]["source"] for i in range(len(full))])
    assert abs(stacked.mean().item()) < 0.5


def test_split_is_deterministic_under_seed(plate_v04):
    def fovs(seed):
        dm = _dm(plate_v04, seed=seed)
        dm.setup("fit")
        return [p.zgroup.name for p in dm.train_dataset.positions], [p.zgroup.name for p in dm.val_dataset.positions]

    a, b, c = fovs(1), fovs(1), fovs(2)
    assert a == b and a != c
    assert set(a[0]).isdisjoint(a[1]) and len(a[0]) + len(a[1]) == 8
    torch.manual_seed(5)
    d1 = _dm(plate_v04, seed=None)
    d1.setup("fit")
    torch.manual_seed(5)
    d2 = _dm(plate_v04, seed=None)
    d2.setup("fit")
    assert [p.zgroup.name for p in d1.val_dataset.positions] == [p.zgroup.name for p in d2.val_dataset.positions]


def test_sliding_windows_match_stored_pixels(synthetic_plate):
    with open_ome_zarr(synthetic_plate.store_path, mode="r") as plate:
        positions = [p for _, p in plate.positions()]
        ds = SlidingWindowDataset(positions, {"source": ["GFP", "Phase3D"]}, z_window_size=2)
        assert len(ds) == 4 * 8 * 3
        for index in (0, 5, 30, len(ds) - 1):
            fov, t, z = divmod(index, 8 * 3)[0], divmod(index % 24, 3)[0], index % 3
            item = ds[index]
            expected = positions[fov]["0"].numpy()[t, [1, 0], z : z + 2]
            np.testing.assert_array_equal(item["source"].numpy(), expected)
            assert item["index"] == (f"/{synthetic_plate.fov_names[fov]}/0", t, z)
            assert "target" not in item
        with pytest.raises(IndexError):
            ds[len(ds)]


def test_multi_sample_augmentation(synthetic_plate):
    aug = RandSpatialCropSamplesd(keys=["Phase3D", "GFP"], roi_size=(3, 64, 48), num_samples=2, random_size=False)
    dm = _dm(synthetic_plate, augmentations=[aug], batch_size=6)
    dm.setup("fit")
    assert dm.train_patches_per_stack == 2
    batch = next(iter(dm.train_dataloader()))
    assert batch["source"].shape == (6, 1, 3, 64, 48)
    assert len(batch["index"][0]) == 6 and batch["norm_meta"]["Phase3D"]["fov_statistics"]["std"].shape == (6,)
    with pytest.raises(ValueError, match="divisible"):
        _dm(synthetic_plate, augmentations=[aug], batch_size=5).setup("fit")


def test_rand_affine_enlarges_training_z_window(plate_v04):
    dm = _dm(plate_v04, z_window_size=3, augmentations=[RandAffined(keys=["Phase3D"], prob=0, scale_range=(0.5, 0, 0))])
    dm.setup("fit")
    assert dm.train_z_scale_range == (-0.5, 0.5)
    assert dm.train_dataset.z_window_size == 4 and dm.val_dataset.z_window_size == 3
    assert next(iter(dm.train_dataloader()))["source"].shape[2] == 3
    with pytest.raises(ValueError, match="Only one RandAffined"):
        _dm(plate_v04, augmentations=[RandAffined(keys=["GFP"], prob=0)] * 2).setup("fit")
    with pytest.raises(ValueError, match="Invalid scaling range"):
        _dm(plate_v04, augmentations=[RandAffined(keys=["GFP"], prob=0, scale_range=((0.1, 0.2), 0, 0))]).setup("fit")


def test_target_2d(synthetic_plate):
    dm = _dm(synthetic_plate, target_2d=True)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    out = dm.on_before_batch_transfer(batch, 0)
    assert out["target"].shape == (4, 1, 1, 64, 48) and out["source"].shape == (4, 1, 3, 64, 48)
    bare = torch.zeros(2, 1, 3, 8, 8)
    assert dm.on_before_batch_transfer(bare, 0) is bare


def test_predict_all_fovs_and_single_fov(synthetic_plate):
    dm = _dm(synthetic_plate, z_window_size=4)
    dm.setup("predict")
    assert len(dm.predict_dataset) == 4 * 8
    batch = next(iter(dm.predict_dataloader()))
    assert batch["source"].shape == (4, 1, 4, 128, 128) and "target" not in batch
    single = _dm(synthetic_plate, data_path=synthetic_plate.store_path / "B/2/0", z_window_size=4)
    single.setup("predict")
    assert len(single.predict_dataset) == 8
    assert single.predict_dataset[0]["index"][0] == "/B/2/0/0"


def test_predict_single_fov_without_parent_plate(tmp_path):
    with open_ome_zarr(tmp_path / "fov.zarr", layout="fov", mode="w", channel_names=["Phase3D"]) as pos:
        pos.create_image("0", np.zeros((1, 1, 2, 8, 8), np.float32))
    dm = HCSDataModule(tmp_path / "fov.zarr", "Phase3D", "Phase3D", z_window_size=1)
    with pytest.raises(FileNotFoundError, match="Parent HCS store not found"):
        dm.setup("predict")


def test_test_stage_with_masks(tmp_path):
    plate = write_synthetic_plate(tmp_path / "p.zarr", wells=("A/1", "B/1"), n_timepoints=2, z_size=3, yx_size=(32, 32))
    mask_dir = tmp_path / "masks"
    mask_dir.mkdir()
    mask = np.arange(32 * 32, dtype=np.uint16).reshape(32, 32) % 7
    iio.imwrite(mask_dir / "img_p001_z1_cp_masks.png", mask)
    dm = _dm(plate, z_window_size=1, ground_truth_masks=mask_dir, yx_patch_size=(32, 32))
    dm.setup("test")
    assert isinstance(dm.test_dataset, MaskTestDataset)
    batches = list(dm.test_dataloader())
    assert len(batches) == 2 * 2 * 3
    with_labels = [b for b in batches if "labels" in b]
    # the mask of FOV ordinal 1 (B/1/0), z=1, t=0 only
    assert len(with_labels) == 1
    names, t, z = with_labels[0]["index"]
    assert names == ["/B/1/0/0"] and t.item() == 0 and z.item() == 1
    assert with_labels[0]["labels"].dtype == torch.int16
    np.testing.assert_array_equal(with_labels[0]["labels"][0].numpy(), mask)


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_caching_copies_store(tmp_path, monkeypatch, version):
    monkeypatch.setenv("SLURM_JOB_ID", f"test_{version}_{tmp_path.name}")
    monkeypatch.setattr("tempfile.gettempdir", lambda: str(tmp_path / "scratch"))
    plate = write_synthetic_plate(tmp_path / "p.zarr", n_timepoints=2, version=version, yx_size=(64, 64))
    dm = _dm(plate, caching=True, yx_patch_size=(32, 32))
    with pytest.raises(FileNotFoundError, match="prepare_data"):
        dm.setup("fit")
    dm.prepare_data()
    assert dm.cache_path.is_relative_to(tmp_path / "scratch") and dm.cache_path.name == "p.zarr"
    dm.setup("fit")
    assert str(dm.train_dataset.positions[0].zgroup.store.root).startswith(str(tmp_path / "scratch"))
    assert next(iter(dm.train_dataloader()))["source"].shape == (4, 1, 3, 32, 32)


def test_store_without_norm_meta(tmp_path):
    plate = write_synthetic_plate(tmp_path / "p.zarr", n_timepoints=2, write_norm_meta=False, yx_size=(64, 64))
    dm = _dm(plate, yx_patch_size=(32, 32))
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert "norm_meta" not in batch and batch["source"].shape == (4, 1, 3, 32, 32)
    assert "norm_meta" not in next(iter(dm.val_dataloader()))
    with pytest.raises(ValueError, match="no 'normalization' attributes"):
        _dm(plate, normalizations=[NormalizeSampled(["GFP"])]).setup("fit")


def test_uint16_store_gives_float32(tmp_path):
    plate = write_synthetic_plate(tmp_path / "p.zarr", n_timepoints=2, dtype="uint16", yx_size=(64, 64))
    dm = _dm(plate, yx_patch_size=(32, 32))
    dm.setup("fit")
    assert next(iter(dm.train_dataloader()))["source"].dtype == torch.float32


def test_bad_inputs(synthetic_plate, tmp_path):
    with pytest.raises(ValueError, match=r"\['DAPI'\] not found.*available channels: \['Phase3D', 'GFP'\]"):
        _dm(synthetic_plate, target_channel="DAPI").setup("fit")
    with pytest.raises(IndexError, match="fewer than z_window_size=9"):
        _dm(synthetic_plate, z_window_size=9).setup("fit")
    with pytest.raises(NotImplementedError, match="bogus stage"):
        _dm(synthetic_plate).setup("bogus")
    with pytest.raises(FileNotFoundError, match="nowhere.zarr"):
        _dm(synthetic_plate, data_path=tmp_path / "nowhere.zarr").setup("fit")
    with open_ome_zarr(tmp_path / "fov.zarr", layout="fov", mode="w", channel_names=["Phase3D"]) as pos:
        pos.create_image("0", np.zeros((1, 1, 2, 8, 8), np.float32))
    with pytest.raises(ValueError, match="not an HCS OME-Zarr plate"):
        _dm(synthetic_plate, data_path=tmp_path / "fov.zarr").setup("fit")


def test_patch_larger_than_the_images_names_yx_patch_size(synthetic_plate):
    with pytest.raises(ValueError, match=r"yx_patch_size \(256, 48\) is larger than FOV '.*' \(128, 128\)"):
        _dm(synthetic_plate, yx_patch_size=(256, 48)).setup("fit")
