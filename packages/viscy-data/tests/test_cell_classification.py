import numpy as np
import pandas as pd
import pytest
import torch

from viscy_data._io import open_plate
from viscy_data._typing import INDEX_COLUMNS
from viscy_data.cell_classification import ClassificationDataModule, ClassificationDataset


def _dm(plate, csv, **kwargs):
    args = dict(
        image_path=plate.store_path,
        annotation_path=csv,
        val_fovs=["B/2/0"],
        channel_name="GFP",
        z_range=(1, 3),
        train_exclude_timepoints=[0],
        train_transforms=None,
        val_transforms=None,
        initial_yx_patch_size=(32, 32),
        batch_size=4,
        num_workers=0,
    )
    args.update(kwargs)
    return ClassificationDataModule(**args)


@pytest.fixture
def annotation_csv(synthetic_plate, tmp_path):
    return synthetic_plate.write_annotation_csv(tmp_path / "annotations.csv")


def test_fit_split_batches(synthetic_plate, annotation_csv):
    dm = _dm(synthetic_plate, annotation_csv, val_fovs=["/B/2/0"])  # leading slash reconciled
    dm.setup("fit")
    train_fovs = set(dm.train_dataset.annotation["fov_name"])
    assert train_fovs == {"A/1/0", "A/2/0", "B/1/0"}
    assert set(dm.val_dataset.annotation["fov_name"]) == {"B/2/0"}
    assert 0 not in set(dm.train_dataset.annotation["t"])
    assert 0 in set(dm.val_dataset.annotation["t"])
    image, label = next(iter(dm.train_dataloader()))
    assert image.shape == (4, 1, 2, 32, 32) and image.dtype == torch.float32
    assert label.shape == (4, 1) and label.dtype == torch.float32
    image, label = next(iter(dm.val_dataloader()))
    assert image.shape[1:] == (1, 2, 32, 32)
    assert set(label.flatten().tolist()) <= {-1.0, 0.0, 1.0}
    # the split is a function of the config alone
    dm2 = _dm(synthetic_plate, annotation_csv, val_fovs=["B/2/0"])
    dm2.setup("validate")
    pd.testing.assert_frame_equal(dm.train_dataset.annotation, dm2.train_dataset.annotation)


def test_items_are_normalised_patches_at_the_cell(synthetic_plate, annotation_csv):
    plate = open_plate(synthetic_plate.store_path)
    annotation = pd.read_csv(annotation_csv)
    ds = ClassificationDataset(plate, annotation, "GFP", (0, 4), None, (16, 16))
    assert len(ds) > 0
    rng = np.random.default_rng(0)
    for i in rng.choice(len(ds), size=5, replace=False):
        row = ds.annotation.iloc[i]
        image, label = ds[int(i)]
        pos = plate[row["fov_name"]]
        stats = pos.zattrs["normalization"]["GFP"]["fov_statistics"]
        y, x = int(np.rint(row["y"])), int(np.rint(row["x"]))
        raw = pos["0"][int(row["t"]), 1, 0:4, y - 8 : y + 8, x - 8 : x + 8]
        expected = (torch.from_numpy(np.asarray(raw, dtype=np.float32)) - stats["mean"]) / stats["std"]
        torch.testing.assert_close(image[0], expected)
        assert label.item() == row["infection_state"]
    # cells near the border are dropped (the synthetic plate has some)
    assert len(ds) < len(annotation)
    assert (ds.annotation["y"] > 8).all() and (ds.annotation["x"] < 128 - 8).all()


def test_label_column_and_transform(synthetic_plate, annotation_csv):
    dm = _dm(synthetic_plate, annotation_csv, label_column="division", train_transforms=[lambda x: x * 0 + 1.0])
    dm.setup("fit")
    image, label = dm.train_dataset[0]
    assert torch.equal(image, torch.ones(1, 2, 32, 32))
    assert label.item() == dm.train_dataset.annotation["division"].iloc[0]


def test_predict_returns_index(synthetic_plate, annotation_csv):
    dm = _dm(synthetic_plate, annotation_csv, batch_size=3)
    dm.setup("predict")
    n_fovs = dm.predict_dataset.annotation["fov_name"].nunique()
    assert n_fovs == 4
    image, label, index = next(iter(dm.predict_dataloader()))
    assert image.shape == (3, 1, 2, 32, 32)
    assert set(INDEX_COLUMNS) <= set(index)
    first = dm.predict_dataset.annotation.iloc[0]
    assert index["fov_name"][0] == first["fov_name"]
    assert index["track_id"][0].item() == first["track_id"] and index["t"][0].item() == first["t"]


def test_predict_without_labels_gives_nan(synthetic_plate, tmp_path):
    csv = tmp_path / "unlabelled.csv"
    synthetic_plate.annotations.drop(columns=["infection_state"]).to_csv(csv, index=False)
    dm = _dm(synthetic_plate, csv)
    dm.setup("predict")
    _, label, _ = dm.predict_dataset[0]
    assert torch.isnan(label).all()


def test_errors(synthetic_plate, annotation_csv, tmp_path):
    plate = open_plate(synthetic_plate.store_path)
    annotation = pd.read_csv(annotation_csv)
    with pytest.raises(ValueError, match="Z/9/9"):
        ClassificationDataset(plate, annotation.assign(fov_name="Z/9/9"), "GFP", (0, 2), None, (16, 16))
    with pytest.raises(ValueError, match="infection_state"):
        ClassificationDataset(plate, annotation.drop(columns="infection_state"), "GFP", (0, 2), None, (16, 16))
    with pytest.raises(ValueError, match="Phase3D"):
        ClassificationDataset(plate, annotation, "DAPI", (0, 2), None, (16, 16))
    with pytest.raises(ValueError, match="z_range"):
        ClassificationDataset(plate, annotation, "GFP", (0, 9), None, (16, 16))
    with pytest.raises(ValueError, match="C/1/0"):
        _dm(synthetic_plate, annotation_csv, val_fovs=["C/1/0"]).setup("fit")
    with pytest.raises(ValueError, match="val_fovs"):
        _dm(synthetic_plate, annotation_csv, val_fovs=None).setup("fit")
    with pytest.raises(NotImplementedError, match="test"):
        _dm(synthetic_plate, annotation_csv).setup("test")
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        _dm(synthetic_plate, tmp_path / "missing.csv").setup("fit")


def test_missing_statistics_is_a_clear_error(tmp_path):
    from viscy_data.synthetic import write_synthetic_plate

    plate = write_synthetic_plate(tmp_path / "bare.zarr", write_norm_meta=False, wells=("A/1", "A/2"), n_timepoints=2)
    with pytest.raises(ValueError, match="fov_statistics"):
        ClassificationDataset(open_plate(plate.store_path), plate.annotations, "GFP", (0, 2), None, (16, 16))


def test_pandas_missing_names_the_extra(monkeypatch):
    import viscy_data.cell_classification as module

    monkeypatch.setattr(module, "pd", None)
    with pytest.raises(ImportError, match=r"pip install 'viscy-data\[triplet\]'"):
        module.ClassificationDataModule("a", "b", ["A/1/0"], "GFP", (0, 1), [], None, None, (8, 8), 1, 0)
