import pickle

import numpy as np
import pytest
import torch

from viscy_data.cell_division_triplet import CellDivisionTripletDataModule, CellDivisionTripletDataset

N_FILES, T, C, YX = 5, 4, 3, 24
CHANNEL_INDEX = {"bf": 0, "h2b": 1, "0": 0, "1": 1, "2": 2}


def _value(file, t, c):
    return 100.0 * file + 10.0 * t + c


@pytest.fixture
def track_dir(tmp_path):
    # voxel value encodes (file, t, channel) so every patch can be traced back
    for f in range(N_FILES):
        data = np.zeros((T, C, YX, YX), dtype=np.uint16)
        for t in range(T):
            for c in range(C):
                data[t, c] = _value(f, t, c)
        np.save(tmp_path / f"track_{f}.npy", data)
    return tmp_path


def _origin(patch):
    """(file, t) of a (C, ...) patch whose first channel index is known from the channel list."""
    v = float(patch[0].flatten()[0])
    return int(v // 100), int(v % 100 // 10)


@pytest.mark.parametrize("output_2d", [False, True])
@pytest.mark.parametrize("channels", [["bf", "h2b"], ["0", "1", "2"]])
def test_fit_batches_several_channels(track_dir, channels, output_2d):
    dm = CellDivisionTripletDataModule(
        track_dir,
        channels,
        final_yx_patch_size=(16, 16),
        batch_size=4,
        num_workers=0,
        output_2d=output_2d,
        time_interval=1,
        seed=0,
    )
    dm.setup("fit")
    assert len(dm.train_dataset.data_paths) == 4 and len(dm.val_dataset.data_paths) == 1
    assert not set(dm.train_dataset.data_paths) & set(dm.val_dataset.data_paths)
    batch = next(iter(dm.train_dataloader()))
    spatial = (16, 16) if output_2d else (1, 16, 16)
    for key in ("anchor", "positive", "negative"):
        assert batch[key].shape == (4, len(channels), *spatial)
        assert batch[key].dtype == torch.float32
    for a, p, n in zip(batch["anchor"], batch["positive"], batch["negative"]):
        fa, ta = _origin(a)
        fp, tp = _origin(p)
        fn, tn = _origin(n)
        assert fp == fa and tp == ta + 1
        assert fn != fa and tn == tp  # other track, at the positive's time
        # channels stay in order, none swapped with Z
        expected = [_value(fa, ta, CHANNEL_INDEX[c]) for c in channels]
        assert [float(a[c].flatten()[0]) for c in range(len(channels))] == expected
    val = next(iter(dm.val_dataloader()))
    assert val["anchor"].shape[1:] == (len(channels), *spatial)


def test_split_is_deterministic_under_seed(track_dir):
    def split(seed):
        dm = CellDivisionTripletDataModule(track_dir, ["bf"], batch_size=2, num_workers=0, seed=seed)
        dm.setup("fit")
        return [p.name for p in dm.val_dataset.data_paths]

    assert split(3) == split(3)
    assert len({tuple(split(s)) for s in range(10)}) > 1


def test_anchor_counts_respect_interval(track_dir):
    files = sorted(track_dir.glob("*.npy"))
    assert len(CellDivisionTripletDataset(files, ["bf"])) == N_FILES * T
    assert len(CellDivisionTripletDataset(files, ["bf"], time_interval=2)) == N_FILES * (T - 2)
    assert len(CellDivisionTripletDataset(files, ["bf"], time_interval=2, fit=False)) == N_FILES * T


def test_any_interval_positive_is_anchor_time(track_dir):
    ds = CellDivisionTripletDataset(sorted(track_dir.glob("*.npy")), ["h2b"], return_negative=False)
    for i in range(len(ds)):
        sample = ds[i]
        assert torch.equal(sample["anchor"], sample["positive"]) and "negative" not in sample


def test_single_file_negative_is_another_time(track_dir):
    ds = CellDivisionTripletDataset([track_dir / "track_2.npy"], ["bf"])
    torch.manual_seed(0)
    for i in range(len(ds)):
        sample = ds[i]
        assert _origin(sample["negative"])[1] != _origin(sample["anchor"])[1]


def test_predict_index(track_dir):
    dm = CellDivisionTripletDataModule(track_dir, ["bf", "h2b"], batch_size=3, num_workers=0)
    dm.setup("predict")
    batch = next(iter(dm.predict_dataloader()))
    assert batch["anchor"].shape == (3, 2, 1, YX, YX)
    assert list(batch["index"]["fov_name"]) == ["track_0"] * 3
    assert batch["index"]["id"].tolist() == [0, 1, 2]


def test_pickles_without_arrays(track_dir):
    ds = CellDivisionTripletDataset(sorted(track_dir.glob("*.npy")), ["bf"])
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._tracks is None
    torch.testing.assert_close(clone[5]["anchor"], ds[5]["anchor"])


def test_errors(track_dir, tmp_path):
    with pytest.raises(ValueError, match="No .npy files"):
        CellDivisionTripletDataModule(tmp_path / "empty", ["bf"])
    files = sorted(track_dir.glob("*.npy"))
    with pytest.raises(ValueError, match="gfp"):
        CellDivisionTripletDataset(files, ["gfp"])
    with pytest.raises(ValueError, match="channels"):
        CellDivisionTripletDataset(files, ["7"])
    dm = CellDivisionTripletDataModule(track_dir, ["bf"], num_workers=0)
    with pytest.raises(NotImplementedError, match="test"):
        dm.setup("test")
