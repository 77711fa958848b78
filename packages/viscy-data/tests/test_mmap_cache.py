import importlib.util
from pathlib import Path

import pytest
import torch

from viscy_data import mmap_cache
from viscy_data.mmap_cache import MmappedDataModule

_spec = importlib.util.spec_from_file_location("_plates", Path(__file__).with_name("_plates.py"))
plates = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(plates)

CHANNELS = ["Phase", "GFP"]
FOV_NAMES = ["/".join(f) for f in plates.DEFAULT_FOVS]


def _subtract_fov_mean(sample):
    """Preprocessing that needs norm_meta: x - fov mean (the FOV ordinal in the test plate)."""
    out = {}
    for name in CHANNELS:
        out[name] = sample[name] - sample["norm_meta"][name]["fov_statistics"]["mean"]
    return out


def _module(path, tmp_path, **kwargs):
    defaults = dict(
        channels=CHANNELS,
        batch_size=2,
        num_workers=0,
        split_ratio=0.5,
        preprocess_transforms=[_subtract_fov_mean],
        train_cpu_transforms=[],
        val_cpu_transforms=[],
        train_gpu_transforms=[],
        val_gpu_transforms=[],
        pin_memory=False,
        scratch_dir=tmp_path / "scratch",
    )
    defaults.update(kwargs)
    return MmappedDataModule(path, **defaults)


@pytest.fixture(params=["0.4", "0.5"])
def plate_path(tmp_path, request):
    return plates.make_plate(tmp_path / "plate.zarr", version=request.param)


def _check_values(dataset, index, sample):
    fov, t = divmod(index, 2)
    for c, name in enumerate(CHANNELS):
        expected = plates.voxel_value(FOV_NAMES.index(dataset._fov_names[fov]), t, c)
        expected -= FOV_NAMES.index(dataset._fov_names[fov])
        assert (sample[name] == expected).all()


def test_fit_batches_and_cache(plate_path, tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "job42")
    dm = _module(plate_path, tmp_path)
    dm.setup("fit")
    assert dm.cache_dir == tmp_path / "scratch" / "job42" / "0" / "plate.zarr"
    assert (dm.cache_dir / "train.mmap").is_file() and (dm.cache_dir / "val.mmap").is_file()
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == set(CHANNELS)  # no norm_meta after preprocessing
    assert batch["Phase"].shape == (2, 1, 3, 8, 16) and batch["Phase"].dtype == torch.float32
    ds = dm.val_dataset
    for index in range(len(ds)):
        _check_values(ds, index, ds[index][0])
    assert len(ds.cache_map) == len(ds)
    monkeypatch.setattr(ds, "_preprocess", lambda fov, t: pytest.fail("preprocessed twice"))
    sample = ds[1][0]
    _check_values(ds, 1, sample)
    sample["GFP"] += 100  # transforms may write in place: the cache file is not touched
    _check_values(ds, 1, ds[1][0])


def test_workers_fill_the_shared_cache(tmp_path):
    path = plates.make_plate(tmp_path / "plate.zarr", shape=(3, 2, 4, 4))
    dm = _module(path, tmp_path, num_workers=2, batch_size=3, prefetch_factor=2)
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert sum(len(b["Phase"]) for b in batches) == 6
    # flags set by the workers are visible here, and the rows hold the preprocessed volumes
    ds = dm.train_dataset
    assert len(ds.cache_map) == 6
    for index in range(6):
        fov, t = divmod(index, 3)
        ordinal = FOV_NAMES.index(ds._fov_names[fov])
        assert (ds.buffer[index][0] == plates.voxel_value(ordinal, t, 0) - ordinal).all()


def test_validation_uses_its_own_buffer(plate_path, tmp_path):
    dm = _module(plate_path, tmp_path)
    dm.setup("fit")
    list(dm.train_dataloader())
    assert dm.train_dataset.buffer.filename != dm.val_dataset.buffer.filename
    assert dm.train_dataset.cache_map is not dm.val_dataset.cache_map
    assert len(dm.val_dataset.cache_map) == 0
    for index in range(len(dm.val_dataset)):
        _check_values(dm.val_dataset, index, dm.val_dataset[index][0])


def test_exclude_fovs_and_include_wells(plate_path, tmp_path):
    dm = _module(plate_path, tmp_path, include_wells=["A/1", "A/2"], exclude_fovs=["A/1/0"])
    dm.setup("validate")
    assert sorted(dm.train_dataset._fov_names + dm.val_dataset._fov_names) == ["A/1/1", "A/2/0"]


def test_preprocess_must_keep_shape(plate_path, tmp_path):
    def first_slice(sample):
        return {k: v[:, :1] for k, v in sample.items() if k != "norm_meta"}

    dm = _module(plate_path, tmp_path, preprocess_transforms=[first_slice])
    dm.setup("fit")
    with pytest.raises(ValueError, match="preprocess_transforms changed channel 'Phase'"):
        dm.train_dataset[0]


def test_fovs_of_different_shapes_are_refused(tmp_path):
    path = plates.make_plate(tmp_path / "plate.zarr", fovs=plates.DEFAULT_FOVS[:2])
    from iohub.ngff import open_ome_zarr

    with open_ome_zarr(path, mode="r+") as plate:
        plate.create_position("C", "1", "0").create_zeros("0", (2, 2, 3, 8, 8), dtype="float32")
    positions = [p for _, p in open_ome_zarr(path, mode="r").positions()]
    buffer = mmap_cache.MemoryMappedTensor.empty((6, 2, 3, 8, 16), dtype=torch.float32, filename=tmp_path / "b.mmap")
    with pytest.raises(ValueError, match=r"FOV 'C/1/0' has \(Z, Y, X\) \(3, 8, 8\)"):
        mmap_cache.MmappedDataset(positions, CHANNELS, {}, buffer)
    with pytest.raises(ValueError, match="cannot hold"):
        mmap_cache.MmappedDataset(positions[:2], CHANNELS, {}, buffer[:3])


@pytest.mark.parametrize("stage", ["test", "predict"])
def test_unsupported_stages(plate_path, tmp_path, stage):
    with pytest.raises(NotImplementedError, match="Only fit and validate"):
        _module(plate_path, tmp_path).setup(stage)


def test_prefetch_factor_dropped_without_workers(plate_path, tmp_path):
    dm = _module(plate_path, tmp_path, prefetch_factor=4)
    assert dm.prefetch_factor is None
    assert isinstance(dm.preprocessing_transforms, mmap_cache.Compose)


def test_missing_extra_is_named(plate_path, tmp_path, monkeypatch):
    monkeypatch.setattr(mmap_cache, "MemoryMappedTensor", None)
    with pytest.raises(ImportError, match=r"pip install 'viscy-data\[mmap\]'"):
        _module(plate_path, tmp_path)
    with pytest.raises(ImportError, match="MmappedDataset.*viscy-data\\[mmap\\]"):
        mmap_cache.MmappedDataset([], CHANNELS, {}, None)
