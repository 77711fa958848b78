import numpy as np
import pytest
import torch
from iohub.ngff import open_ome_zarr

from viscy_data.segmentation import SegmentationDataModule, SegmentationDataset

FOVS = (("A", "1", "0"), ("A", "1", "1"), ("B", "2", "0"))


def _label_plate(path, fovs=FOVS, t_count=3, offset=0, channel="labels", version="0.4", dtype=np.uint16):
    """Labels: value = 100 * fov ordinal + 10 * t + z + offset."""
    with open_ome_zarr(path, layout="hcs", mode="w-", channel_names=["other", channel], version=version) as plate:
        for ordinal, (row, col, fov) in enumerate(fovs):
            data = np.zeros((t_count, 2, 4, 6, 5), dtype=dtype)
            for t in range(t_count):
                for z in range(4):
                    data[t, 1, z] = 100 * ordinal + 10 * t + z + offset
            plate.create_position(row, col, fov).create_image("0", data)
    return path


@pytest.fixture
def plates(tmp_path):
    pred = _label_plate(tmp_path / "pred.zarr", offset=1, channel="pred", version="0.5")
    target = _label_plate(tmp_path / "target.zarr")
    return pred, target


def test_dataset_items_pair_fov_and_time(plates):
    pred, target = (open_ome_zarr(p, layout="hcs", mode="r") for p in plates)
    dataset = SegmentationDataset(pred, target, "pred", "labels", pred_z_slice=2, target_z_slice=1)
    assert len(dataset) == len(FOVS) * 3
    for index in range(len(dataset)):
        item = dataset[index]
        fov, t = divmod(index, 3)
        assert item["position_idx"] == fov and item["time_idx"] == t
        assert item["pred"].dtype == torch.int16 and item["target"].dtype == torch.int16
        assert item["pred"].shape == (6, 5) and item["target"].shape == (6, 5)
        assert (item["pred"] == 100 * fov + 10 * t + 2 + 1).all()
        assert (item["target"] == 100 * fov + 10 * t + 1).all()


def test_datamodule_test_stage_batches(plates):
    dm = SegmentationDataModule(*plates, "pred", "labels", 0, 0, batch_size=4, num_workers=0)
    dm.setup("test")
    batches = list(dm.test_dataloader())
    assert [b["pred"].shape[0] for b in batches] == [4, 4, 1]
    first = batches[0]
    assert first["target"].shape == (4, 6, 5) and first["target"].dtype == torch.int16
    assert first["position_idx"].tolist() == [0, 0, 0, 1]
    assert first["time_idx"].tolist() == [0, 1, 2, 0]


def test_datamodule_with_workers(plates):
    dm = SegmentationDataModule(*plates, "pred", "labels", 0, 0, batch_size=9, num_workers=2)
    dm.setup("test")
    (batch,) = list(dm.test_dataloader())
    assert batch["time_idx"].tolist() == [0, 1, 2] * 3
    assert (batch["pred"][:, 0, 0] - batch["target"][:, 0, 0] == 1).all()


@pytest.mark.parametrize("stage", ["fit", "validate", "predict"])
def test_other_stages_rejected(plates, stage):
    dm = SegmentationDataModule(*plates, "pred", "labels", 0, 0, batch_size=1, num_workers=0)
    with pytest.raises(NotImplementedError, match="Only test stage is supported!"):
        dm.setup(stage)


def test_time_mismatch(tmp_path):
    pred = open_ome_zarr(_label_plate(tmp_path / "p.zarr", t_count=2, channel="pred"), mode="r")
    target = open_ome_zarr(_label_plate(tmp_path / "t.zarr", t_count=3), mode="r")
    with pytest.raises(ValueError, match="Shape mismatch.*A/1/0"):
        SegmentationDataset(pred, target, "pred", "labels", 0, 0)


def test_missing_prediction_fov(tmp_path):
    pred = open_ome_zarr(_label_plate(tmp_path / "p.zarr", fovs=FOVS[:2], channel="pred"), mode="r")
    target = open_ome_zarr(_label_plate(tmp_path / "t.zarr"), mode="r")
    with pytest.raises(KeyError, match="B/2/0"):
        SegmentationDataset(pred, target, "pred", "labels", 0, 0)


def test_unknown_channel_lists_available(plates):
    pred, target = (open_ome_zarr(p, layout="hcs", mode="r") for p in plates)
    with pytest.raises(ValueError, match=r"'nuclei'.*\['other', 'labels'\]"):
        SegmentationDataset(pred, target, "pred", "nuclei", 0, 0)


def test_labels_outside_int16_are_refused(tmp_path):
    pred = open_ome_zarr(_label_plate(tmp_path / "p.zarr", channel="pred", offset=40000), mode="r")
    target = open_ome_zarr(_label_plate(tmp_path / "t.zarr"), mode="r")
    dataset = SegmentationDataset(pred, target, "pred", "labels", 0, 0)
    with pytest.raises(ValueError, match="prediction FOV 'A/1/0' t=0.*int16"):
        dataset[0]
