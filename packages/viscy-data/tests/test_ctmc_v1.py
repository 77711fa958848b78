import importlib.util
from pathlib import Path

import pytest
import torch
from torch.utils.data import Subset

from viscy_data.ctmc_v1 import CTMCv1DataModule

_spec = importlib.util.spec_from_file_location("_plates", Path(__file__).with_name("_plates.py"))
plates = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(plates)

FOVS = plates.DEFAULT_FOVS[:3]


@pytest.fixture
def stores(tmp_path):
    """Train and val plates with the same FOV names (as in CTMC), told apart by a value offset."""
    kw = dict(fovs=FOVS, channel_names=("DIC",), shape=(4, 1, 8, 8), norm=False)
    train = plates.make_plate(tmp_path / "train.zarr", **kw)
    val = plates.make_plate(tmp_path / "val.zarr", offset=500, version="0.5", **kw)
    return train, val


def _module(stores, **kwargs):
    defaults = dict(
        train_cpu_transforms=[],
        val_cpu_transforms=[],
        train_gpu_transforms=[],
        val_gpu_transforms=[],
        batch_size=4,
        num_workers=0,
        val_subsample_ratio=5,
        pin_memory=False,
    )
    defaults.update(kwargs)
    return CTMCv1DataModule(*stores, **defaults)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_fit_loaders_and_cache_isolation(stores, num_workers):
    dm = _module(stores, num_workers=num_workers)
    dm.setup("fit")
    try:
        assert len(dm.train_dataset) == 12
        assert isinstance(dm.val_dataset, Subset) and list(dm.val_dataset.indices) == [0, 5, 10]
        for _ in range(2):
            train = list(dm.train_dataloader())
            val = list(dm.val_dataloader())
            assert train[0]["DIC"].shape == (4, 1, 1, 8, 8) and train[0]["DIC"].dtype == torch.float32
            assert set(train[0]) == {"DIC"}
            train_values = torch.cat([b["DIC"].flatten(1)[:, 0] for b in train])
            val_values = torch.cat([b["DIC"].flatten(1)[:, 0] for b in val])
            # the val plate (offset 500) is never served from the train cache, though FOV names match
            assert (train_values % 1000 < 500).all() and (val_values % 1000 >= 500).all()
            expected = [plates.voxel_value(i // 4, i % 4, 0, 500) for i in (0, 5, 10)]
            assert val_values.tolist() == expected
    finally:
        dm.teardown("fit")


@pytest.mark.parametrize("stage", ["validate", "test", "predict"])
def test_only_fit(stores, stage):
    with pytest.raises(NotImplementedError, match="Only fit stage is supported"):
        _module(stores).setup(stage)


def test_unknown_channel(stores):
    with pytest.raises(ValueError, match=r"'Phase'.*\['DIC'\]"):
        _module(stores, channel_name="Phase").setup("fit")
