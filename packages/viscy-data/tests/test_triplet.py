import numpy as np
import pandas as pd
import pytest
import torch
from iohub.ngff import open_ome_zarr

from viscy_data.triplet import TripletDataModule, TripletDataset


def _dm(plate, **kw):
    args = dict(
        data_path=plate.store_path,
        tracks_path=plate.tracks_path,
        source_channel=["Phase3D", "GFP"],
        z_range=(1, 3),
        initial_yx_patch_size=(32, 32),
        final_yx_patch_size=(24, 24),
        batch_size=4,
        num_workers=0,
        seed=0,
    )
    args.update(kw)
    return TripletDataModule(**args)


@pytest.mark.parametrize("time_interval", ["any", 1])
def test_fit_batch_keys_shapes_float32(synthetic_plate, time_interval):
    dm = _dm(synthetic_plate, time_interval=time_interval)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["anchor"].dtype == torch.float32 and batch["anchor"].shape == (4, 2, 2, 32, 32)
    out = dm.on_after_batch_transfer(batch, 0)
    for key in ("anchor", "positive", "negative"):
        assert out[key].shape == (4, 2, 2, 24, 24) and out[key].dtype == torch.float32
        assert f"{key}_norm_meta" not in out
    if time_interval == "any":
        assert torch.equal(out["anchor"], out["positive"])


def test_patches_match_store_and_uint16_is_float32(tmp_path):
    from viscy_data.synthetic import write_synthetic_plate

    plate = write_synthetic_plate(tmp_path / "p.zarr", dtype="uint16", n_timepoints=3, version="0.5")
    with open_ome_zarr(plate.store_path, mode="r") as p:
        positions = [pos for _, pos in p.positions()]
        tables = [pd.read_csv(plate.tracks_csv(n)) for n in plate.fov_names]
        ds = TripletDataset(positions, tables, ["GFP"], (16, 16), slice(0, 2), fit=False)
        assert ds.tracks["y"].dtype == np.float64
        batch = ds.__getitems__([0, 3])
        assert batch["anchor"].dtype == torch.float32
        row = ds.valid_anchors.iloc[3]
        y, x = int(np.rint(row["y"])), int(np.rint(row["x"]))
        expected = positions[row["_fov"]]["0"].numpy()[row["t"], [1], 0:2, y - 8 : y + 8, x - 8 : x + 8]
        np.testing.assert_array_equal(batch["anchor"][1].numpy(), expected.astype(np.float32))
        assert batch["index"][1]["track_id"] == row["track_id"] and batch["index"][1]["fov_name"] == row["fov_name"]


def test_predict_index_maps_back(synthetic_plate):
    dm = _dm(synthetic_plate)
    dm.setup("predict")
    batch = next(iter(dm.predict_dataloader()))
    assert len(batch["index"]) == 4 and "positive" not in batch
    ann = synthetic_plate.annotations.set_index(["fov_name", "track_id", "t"])
    for item in batch["index"]:
        assert ann.loc[(item["fov_name"], item["track_id"], item["t"]), "id"] == item["id"]


def test_negatives_differ_and_interval_positive(synthetic_plate):
    dm = _dm(synthetic_plate, time_interval=1)
    dm.setup("fit")
    ds = dm.train_dataset
    idx = list(range(min(len(ds), 16)))
    anchors = ds.valid_anchors.iloc[idx]
    rng = np.random.default_rng(0)
    neg = ds._negatives(anchors, rng)
    assert (neg["global_track_id"].to_numpy() != anchors["global_track_id"].to_numpy()).all()
    a = ds.__getitems__(idx)
    b = ds.__getitems__(idx)
    assert torch.equal(a["negative"], b["negative"])


def test_bad_inputs(synthetic_plate, tmp_path):
    with pytest.raises(ValueError, match=r"\['DAPI'\] not found.*available channels"):
        _dm(synthetic_plate, source_channel="DAPI").setup("fit")
    with pytest.raises(ValueError, match="z_range"):
        _dm(synthetic_plate, z_range=(0, 9)).setup("fit")
    with pytest.raises(ValueError, match="larger than FOV"):
        _dm(synthetic_plate, initial_yx_patch_size=(256, 256), final_yx_patch_size=(24, 24)).setup("fit")
    with pytest.raises(FileNotFoundError, match="A/1/0"):
        _dm(synthetic_plate, tracks_path=tmp_path).setup("fit")
    with pytest.raises(ValueError, match=r"\['Z/9'\] are not in the plate"):
        _dm(synthetic_plate, fit_include_wells=["Z/9"]).setup("fit")
    with pytest.raises(NotImplementedError, match="testing"):
        _dm(synthetic_plate).setup("test")
    table = pd.DataFrame({"track_id": [0], "t": [0], "y": [50.0]})
    with open_ome_zarr(synthetic_plate.store_path, mode="r") as p:
        pos = next(iter(p.positions()))[1]
        with pytest.raises(ValueError, match=r"lack required column\(s\) \['x'\]"):
            TripletDataset([pos], [table], ["GFP"], (16, 16), slice(0, 2))


def test_thread_workers(synthetic_plate):
    with pytest.warns(UserWarning, match="more than 1 thread worker"):
        dm = _dm(synthetic_plate, num_workers=2)
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert len(batches) == len(dm.train_dataset) // 4
    assert all(b["anchor"].shape == (4, 2, 2, 32, 32) for b in batches)


def test_arguments_that_do_not_fit_the_plate_name_themselves(synthetic_plate):
    with pytest.raises(ValueError, match=r"batch_size=10000: set batch_size <="):
        _dm(synthetic_plate, batch_size=10_000).setup("fit")
    _dm(synthetic_plate, batch_size=10_000).setup("validate")  # validation keeps incomplete batches
    with pytest.raises(ValueError, match=r"initial_yx_patch_size \(256, 256\) is larger than FOV"):
        _dm(synthetic_plate, initial_yx_patch_size=(256, 256), final_yx_patch_size=(24, 24)).setup("fit")
    with pytest.raises(ValueError, match=r"augmentations\[0\] .* names key\(s\) \['RFP'\]"):
        from monai.transforms import ScaleIntensityd

        _dm(synthetic_plate, augmentations=[ScaleIntensityd(keys=["RFP"])])
