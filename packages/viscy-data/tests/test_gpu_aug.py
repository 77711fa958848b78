import importlib.util
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
from iohub.ngff import open_ome_zarr
from monai.transforms import Compose, RandSpatialCropSamplesd

from viscy_data.distributed import ShardedDistributedSampler
from viscy_data.gpu_aug import CachedOmeZarrDataModule, CachedOmeZarrDataset

# tests/ is not a package under --import-mode=importlib: load the sibling helper module by path
_spec = importlib.util.spec_from_file_location("_plates", Path(__file__).with_name("_plates.py"))
plates = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(plates)

CHANNELS = ["Phase", "GFP"]
FOV_NAMES = ["/".join(f) for f in plates.DEFAULT_FOVS]


def _fov_of(volume: torch.Tensor) -> int:
    """FOV ordinal encoded in a (1, Z, Y, X) channel-0 volume."""
    return int(volume.flatten()[0].item() // 1000)


def _module(path, **kwargs):
    defaults = dict(
        channels=CHANNELS,
        batch_size=2,
        num_workers=0,
        split_ratio=0.5,
        train_cpu_transforms=[],
        val_cpu_transforms=[],
        train_gpu_transforms=[],
        val_gpu_transforms=[],
        pin_memory=False,
    )
    defaults.update(kwargs)
    return CachedOmeZarrDataModule(path, **defaults)


@pytest.fixture(params=["0.4", "0.5"])
def plate_path(tmp_path, request):
    return plates.make_plate(tmp_path / "plate.zarr", version=request.param)


@pytest.fixture
def positions(plate_path):
    return [p for _, p in open_ome_zarr(plate_path, layout="hcs", mode="r").positions()]


def test_dataset_items_enumerate_fov_then_time(positions):
    dataset = CachedOmeZarrDataset(positions, CHANNELS, cache_map={})
    assert len(dataset) == 4 * 2
    for index in range(len(dataset)):
        (sample,) = dataset[index]
        fov, t = divmod(index, 2)
        assert set(sample) == {"Phase", "GFP", "norm_meta"}
        assert sample["Phase"].shape == (1, 3, 8, 16) and sample["Phase"].dtype == torch.float32
        assert (sample["Phase"] == plates.voxel_value(fov, t, 0)).all()
        assert (sample["GFP"] == plates.voxel_value(fov, t, 1)).all()
        meta = sample["norm_meta"]["GFP"]
        assert meta["fov_statistics"]["mean"].item() == fov
        # timepoint level already selected for this item
        assert meta["timepoint_statistics"]["mean"].item() == 10 * t + 1
    with pytest.raises(IndexError):
        dataset[len(dataset)]


def test_dataset_caches_and_protects_cache(positions, monkeypatch):
    cache = {}
    dataset = CachedOmeZarrDataset(positions, ["GFP"], cache_map=cache, transform=_add_in_place)
    first = dataset[3][0]["GFP"]
    assert len(cache) == 1
    monkeypatch.setattr(dataset, "_read_volume", lambda fov, t: pytest.fail("read the store despite the cache"))
    again = dataset[3][0]["GFP"]
    # the transform added 1 in place both times: the cached volume itself was not modified
    assert torch.equal(first, again)
    assert (again == plates.voxel_value(1, 1, 1) + 1).all()


def _add_in_place(sample):
    sample["GFP"] += 1
    return sample


def test_skip_cache_reads_every_time(positions):
    cache = {}
    dataset = CachedOmeZarrDataset(positions, "Phase", cache_map=cache, skip_cache=True)
    dataset[0]
    assert cache == {}


def test_shared_cache_keys_never_collide(tmp_path):
    """Two plates with identical FOV names sharing one cache still get their own volumes."""
    a = plates.make_plate(tmp_path / "a.zarr", offset=0)
    b = plates.make_plate(tmp_path / "b.zarr", offset=500)
    cache = {}
    ds_a, ds_b = (
        CachedOmeZarrDataset([p for _, p in open_ome_zarr(x, mode="r").positions()], "Phase", cache_map=cache)
        for x in (a, b)
    )
    assert ds_a[0][0]["Phase"].flatten()[0] == 0
    assert ds_b[0][0]["Phase"].flatten()[0] == 500
    assert len(cache) == 2


def test_without_norm_meta_no_key(tmp_path):
    path = plates.make_plate(tmp_path / "p.zarr", norm=False)
    dataset = CachedOmeZarrDataset([p for _, p in open_ome_zarr(path, mode="r").positions()], CHANNELS, {})
    assert set(dataset[0][0]) == set(CHANNELS)


def test_partial_norm_meta_is_an_error(tmp_path):
    path = plates.make_plate(tmp_path / "p.zarr")
    with open_ome_zarr(path, mode="r+") as plate:
        del plate["B/1/0"].zattrs["normalization"]
    positions = [p for _, p in open_ome_zarr(path, mode="r").positions()]
    with pytest.raises(ValueError, match="B/1/0"):
        CachedOmeZarrDataset(positions, CHANNELS, {})
    assert len(CachedOmeZarrDataset(positions, CHANNELS, {}, load_normalization_metadata=False)) == 8


def test_unknown_channel_lists_available(positions):
    with pytest.raises(ValueError, match=r"'DAPI'.*\['Phase', 'GFP'\]"):
        CachedOmeZarrDataset(positions, ["DAPI"], {})


def test_list_transform_is_returned_as_is(positions):
    crop = RandSpatialCropSamplesd(keys=CHANNELS, roi_size=(2, 4, 4), num_samples=3, random_size=False)
    items = CachedOmeZarrDataset(positions, CHANNELS, {}, transform=crop)[3]  # FOV 1, t 1
    assert len(items) == 3 and all(item["Phase"].shape == (1, 2, 4, 4) for item in items)
    for item in items:  # every crop of this item holds its own FOV, timepoint and channel
        assert (item["Phase"] == plates.voxel_value(1, 1, 0)).all()
        assert (item["GFP"] == plates.voxel_value(1, 1, 1)).all()


def test_datamodule_fit_batches(plate_path):
    torch.manual_seed(0)
    dm = _module(plate_path)
    dm.setup("fit")
    train = next(iter(dm.train_dataloader()))
    val = next(iter(dm.val_dataloader()))
    for batch, dataset in ((train, dm.train_dataset), (val, dm.val_dataset)):
        assert set(batch) == {"Phase", "GFP", "norm_meta"}
        assert batch["Phase"].shape == (2, 1, 3, 8, 16) and batch["GFP"].dtype == torch.float32
        fovs = {FOV_NAMES.index(name) for name in dataset._fov_names}
        for i in range(2):  # each sample: one FOV and timepoint of its split, channels and statistics aligned
            phase = batch["Phase"][i]
            fov, t = _fov_of(phase), int(phase.flatten()[0].item() % 1000 // 10)
            assert fov in fovs
            assert (phase == plates.voxel_value(fov, t, 0)).all()
            assert (batch["GFP"][i] == plates.voxel_value(fov, t, 1)).all()
            assert batch["norm_meta"]["Phase"]["fov_statistics"]["mean"][i].item() == fov
            assert batch["norm_meta"]["GFP"]["timepoint_statistics"]["mean"][i].item() == 10 * t + 1
        torch.testing.assert_close(batch["norm_meta"]["Phase"]["fov_statistics"]["std"], torch.tensor([2.0, 2.0]))
    assert isinstance(dm.train_gpu_transforms, Compose) and isinstance(dm.val_cpu_transforms, Compose)


def test_datamodule_multi_sample_cpu_transform(plate_path):
    crop = RandSpatialCropSamplesd(keys=CHANNELS, roi_size=(2, 4, 4), num_samples=2, random_size=False)
    dm = _module(plate_path, train_cpu_transforms=[crop])
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["GFP"].shape == (4, 1, 2, 4, 4)
    # two crops per item, kept together and aligned across channels
    phase, gfp = batch["Phase"].flatten(1), batch["GFP"].flatten(1)
    torch.testing.assert_close(gfp, phase + 1, rtol=0, atol=0)
    torch.testing.assert_close(phase[0], phase[1], rtol=0, atol=0)
    torch.testing.assert_close(phase[2], phase[3], rtol=0, atol=0)
    assert (phase == phase[:, :1]).all()


def test_split_is_deterministic_and_disjoint(plate_path):
    def split():
        torch.manual_seed(123)
        dm = _module(plate_path)
        dm.setup("fit")
        return dm.train_dataset._fov_names, dm.val_dataset._fov_names

    (train, val), (train2, val2) = split(), split()
    assert (train, val) == (train2, val2)
    assert set(train).isdisjoint(val) and sorted(train + val) == sorted(FOV_NAMES)
    assert len(train) == 2


def test_exclude_fovs_and_include_wells(plate_path):
    dm = _module(plate_path, exclude_fovs=["A/1/1"])
    dm.setup("fit")
    used = dm.train_dataset._fov_names + dm.val_dataset._fov_names
    assert sorted(used) == ["A/1/0", "A/2/0", "B/1/0"]
    dm = _module(plate_path, include_wells=["A/1", "B/1"], exclude_fovs=["A/1/0"])
    dm.setup("validate")
    assert sorted(dm.train_dataset._fov_names + dm.val_dataset._fov_names) == ["A/1/1", "B/1/0"]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_validation_never_reads_training_volumes(tmp_path, num_workers):
    path = plates.make_plate(tmp_path / "plate.zarr", shape=(3, 2, 4, 4))
    dm = _module(path, num_workers=num_workers, batch_size=3)
    dm.setup("fit")
    try:
        train_fovs = {FOV_NAMES.index(n) for n in dm.train_dataset._fov_names}
        val_fovs = {FOV_NAMES.index(n) for n in dm.val_dataset._fov_names}
        for _ in range(2):  # second epoch is served from the caches
            seen_train = {_fov_of(v) for batch in dm.train_dataloader() for v in batch["Phase"]}
            seen_val = [_fov_of(v) for batch in dm.val_dataloader() for v in batch["Phase"]]
            assert seen_train == train_fovs
            assert set(seen_val) == val_fovs and len(seen_val) == 6
        assert dm.train_dataset.cache_map is not dm.val_dataset.cache_map
        assert len(dm.train_dataset.cache_map) == len(dm.val_dataset.cache_map) == 6
        assert set(dm.train_dataset.cache_map.keys()).isdisjoint(dm.val_dataset.cache_map.keys())
    finally:
        dm.teardown("fit")
    assert dm._caches._manager is None


@pytest.mark.parametrize("stage", ["test", "predict"])
def test_unsupported_stages(plate_path, stage):
    with pytest.raises(NotImplementedError, match="Only fit and validate"):
        _module(plate_path).setup(stage)


def test_loader_before_setup_is_explained(plate_path):
    with pytest.raises(RuntimeError, match="setup"):
        _module(plate_path).train_dataloader()


def test_bad_split_ratio(plate_path):
    with pytest.raises(ValueError, match="split_ratio"):
        _module(plate_path, split_ratio=1.0).setup("fit")


def test_sharded_sampler_under_ddp(plate_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        dm = _module(plate_path)
        dm.setup("fit")
        loader = dm.train_dataloader()
        assert isinstance(loader.sampler, ShardedDistributedSampler)
        assert sorted(loader.sampler) == list(range(len(dm.train_dataset)))
        assert not dm.val_dataloader().sampler.shuffle
    finally:
        dist.destroy_process_group()


def test_uint16_store_gives_float32(tmp_path):
    path = plates.make_plate(tmp_path / "p.zarr", dtype=np.uint16)
    positions = [p for _, p in open_ome_zarr(path, mode="r").positions()]
    (sample,) = CachedOmeZarrDataset(positions, CHANNELS, {})[5]
    assert sample["GFP"].dtype == torch.float32 and (sample["GFP"] == plates.voxel_value(2, 1, 1)).all()
