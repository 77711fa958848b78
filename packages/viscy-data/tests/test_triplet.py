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
    with pytest.raises(ValueError, match=r"source_channel \['DAPI'\] not in the image's channels"):
        _dm(synthetic_plate, source_channel="DAPI").setup("fit")
    with pytest.raises(ValueError, match="z_range"):
        _dm(synthetic_plate, z_range=(0, 9)).setup("fit")
    with pytest.raises(ValueError, match="initial_yx_patch_size .* is larger than the"):
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
    with pytest.raises(ValueError, match=r"batch_size=10000 needs .*the training FOVs have .*set batch_size <="):
        _dm(synthetic_plate, batch_size=10_000).setup("fit")
    _dm(synthetic_plate, batch_size=10_000).setup("validate")  # validation keeps incomplete batches
    with pytest.raises(ValueError, match=r"initial_yx_patch_size \[256, 256\] is larger than the .* image"):
        _dm(synthetic_plate, initial_yx_patch_size=(256, 256), final_yx_patch_size=(24, 24)).setup("fit")
    with pytest.raises(ValueError, match=r"augmentations\[0\] .* names key\(s\) \['RFP'\]"):
        from monai.transforms import ScaleIntensityd

        _dm(synthetic_plate, augmentations=[ScaleIntensityd(keys=["RFP"])])


def test_tracks_have_the_spec_derived_columns(synthetic_plate):
    with open_ome_zarr(synthetic_plate.store_path, mode="r") as plate:
        positions = [pos for _, pos in plate.positions()]
        tables = [pd.read_csv(synthetic_plate.tracks_csv(n)) for n in synthetic_plate.fov_names]
        ds = TripletDataset(positions, tables, ["GFP"], (16, 16), slice(0, 2))
        assert {"position", "fov_name", "global_track_id"} <= set(ds.tracks.columns)
        for _, row in ds.tracks.iloc[[0, -1]].iterrows():
            assert row["position"] is positions[synthetic_plate.fov_names.index(row["fov_name"])]
            assert row["fov_name"] == row["position"].zgroup.name.strip("/")
            assert row["global_track_id"] == f"{row['fov_name']}_{row['track_id']}"


def test_bad_arguments_are_reported_all_at_once_naming_each():
    from viscy_data.checks import DataCheckError

    with pytest.raises(DataCheckError) as err:
        TripletDataModule(
            data_path="unused.zarr",
            tracks_path="unused",
            source_channel=["GFP"],
            z_range=(3, 1),
            initial_yx_patch_size=(32, 32),
            final_yx_patch_size=(48, 16),
            batch_size=-4,
            num_workers=-1,
        )
    assert len(err.value.messages) == 4
    text = str(err.value)
    for expected in (
        "batch_size must be an integer >= 1, got -4",
        "num_workers must be an integer >= 0, got -1",
        "z_range must be [start, stop] with integers 0 <= start < stop, got [3, 1]",
        "final_yx_patch_size [48, 16] is larger than initial_yx_patch_size [32, 32]",
    ):
        assert expected in text
    with pytest.raises(DataCheckError, match=r"initial_yx_patch_size must be \[height, width\] with positive"):
        TripletDataModule("unused.zarr", "unused", "GFP", (0, 1), initial_yx_patch_size=(0, 32))


def test_preflight_check_reports_every_fov_problem_before_setup(synthetic_plate):
    from viscy_data.checks import DataCheckError

    _dm(synthetic_plate).preflight_check("fit")  # a good configuration passes
    dm = _dm(synthetic_plate, source_channel=["Phase3D", "DAPI"], z_range=(0, 9), initial_yx_patch_size=(256, 256))
    with pytest.raises(DataCheckError) as err:
        dm.preflight_check("fit")
    text = str(err.value)
    assert len(err.value.messages) == 3 and str(synthetic_plate.store_path) in text
    assert "source_channel ['DAPI'] not in the image's channels" in text
    assert "z_range [0, 9] does not fit the image's" in text
    assert "initial_yx_patch_size [256, 256] is larger than the" in text
    assert "FOVs A/1/0" in text  # FOVs with the same problem are named together
    dm.preflight_check("test")  # other stages are not checked


def _val_fovs(dm):
    return sorted(dm.val_dataset.tracks["fov_name"].unique())


def test_split_without_seed_follows_the_global_seed_not_the_rng_state(synthetic_plate):
    """Under DDP rank 0 draws more random numbers before setup than the others: the split must not move."""
    splits = []
    for draws_before_setup in (0, 1000):
        torch.manual_seed(7)
        torch.rand(draws_before_setup)
        dm = _dm(synthetic_plate, seed=None, split_ratio=0.5)
        dm.setup("fit")
        splits.append(_val_fovs(dm))
    assert splits[0] == splits[1]
    seen = set()
    for global_seed in range(8):  # the global seed still decides the split
        torch.manual_seed(global_seed)
        dm = _dm(synthetic_plate, seed=None, split_ratio=0.5)
        dm.setup("fit")
        seen.add(tuple(_val_fovs(dm)))
    assert len(seen) > 1


def test_a_split_with_one_track_fails_at_setup_naming_the_fovs(synthetic_plate, tmp_path):
    # one cell per FOV, in the image centre: 3 of the 4 FOVs train, the one validation FOV holds a single track
    for fov in synthetic_plate.fov_names:
        folder = tmp_path / "tracks" / fov
        folder.mkdir(parents=True)
        pd.DataFrame(
            {"track_id": 0, "t": range(8), "y": 64.0, "x": 64.0, "id": range(8), "parent_track_id": -1, "parent_id": -1}
        ).to_csv(folder / "tracks.csv", index=False)
    dm = _dm(synthetic_plate, tracks_path=tmp_path / "tracks", split_ratio=0.75, batch_size=2)
    with pytest.raises(ValueError, match=r"validation FOVs \['[AB]/[12]/0'\] hold 1 usable track\(s\); negatives need"):
        dm.setup("fit")
