import dataclasses

import numpy as np
import pytest
import torch
from _mx_testdata import default_tracks, make_experiment  # loaded by conftest.py

from dynaclr.dataset import MultiExperimentTripletDataset
from dynaclr.experiment import ExperimentRegistry
from dynaclr.index import MultiExperimentIndex

WELLS = {"uninfected": ["A/1"], "infected": ["B/1"]}


def _dataset(registry, fit=True, tau=(0.5, 1.0), patch=(32, 32), **kw):
    index = MultiExperimentIndex(registry, slice(1, 3), patch, tau_range_hours=tau)
    return MultiExperimentTripletDataset(index, fit=fit, tau_range_hours=tau if fit else None, **kw)


@pytest.fixture
def same_fov_names(tmp_path):
    # two experiments with identical FOV names and different channel orders / pixel codes
    a = make_experiment(tmp_path, "exp_a", ["Phase3D", "GFP", "Mito"], ["Phase3D", "GFP"], WELLS, code=1)
    b = make_experiment(tmp_path, "exp_b", ["RFP", "Phase3D"], ["Phase3D", "RFP"], WELLS, code=2, timepoint_stats=True)
    return ExperimentRegistry([a, b])


def test_batch_shapes_and_values_per_experiment(same_fov_names):
    ds = _dataset(same_fov_names)
    va = ds.index.valid_anchors
    assert len(ds) == len(va)
    a_rows = np.flatnonzero(va["experiment"] == "exp_a")[:3].tolist()
    b_rows = np.flatnonzero(va["experiment"] == "exp_b")[:3].tolist()
    batch = ds.__getitems__(a_rows + b_rows)
    assert batch["anchor"].shape == batch["positive"].shape == (6, 2, 2, 32, 32)
    assert batch["anchor"].dtype == torch.float32
    t = va["t"].to_numpy()
    # exp_a: source Phase3D (zarr 0), GFP (zarr 1); exp_b: Phase3D (zarr 1), RFP (zarr 0)
    for k, row in enumerate(a_rows):
        assert torch.all(batch["anchor"][k, 0] == 1000 + t[row])
        assert torch.all(batch["anchor"][k, 1] == 1100 + t[row])
    for k, row in enumerate(b_rows, start=3):
        assert torch.all(batch["anchor"][k, 0] == 2100 + t[row])
        assert torch.all(batch["anchor"][k, 1] == 2000 + t[row])
    # positives come from the same experiment, later in time
    pos_t = batch["positive"][:, 0, 0, 0, 0] % 100
    pos_code = batch["positive"][:, 0, 0, 0, 0] // 1000
    assert torch.all(pos_code == torch.tensor([1, 1, 1, 2, 2, 2.0]))
    dt = pos_t - torch.tensor(t[a_rows + b_rows], dtype=torch.float32)
    assert torch.all((dt >= 1) & (dt <= 2))


def test_stores_keyed_by_experiment_and_fov(same_fov_names):
    ds = _dataset(same_fov_names)
    va = ds.index.valid_anchors
    # read exp_a first so a FOV-name-only cache would serve its pixels to exp_b
    ds.__getitems__(np.flatnonzero(va["experiment"] == "exp_a")[:4].tolist())
    rows = np.flatnonzero((va["experiment"] == "exp_b") & (va["fov_name"] == "A/1/0"))[:4].tolist()
    batch = ds.__getitems__(rows)
    assert torch.all(batch["anchor"] // 1000 == 2)


def test_norm_meta_rekeyed_and_timepoint_resolved(same_fov_names):
    ds = _dataset(same_fov_names)
    va = ds.index.valid_anchors
    a = int(np.flatnonzero(va["experiment"] == "exp_a")[0])
    b = int(np.flatnonzero(va["experiment"] == "exp_b")[0])
    batch = ds.__getitems__([a, b])
    meta_a, meta_b = batch["anchor_norm_meta"]
    assert set(meta_a) == set(meta_b) == {"ch_0", "ch_1"}
    assert meta_a["ch_1"]["fov_statistics"]["mean"] == 1100  # GFP, zarr channel 1
    assert meta_b["ch_0"]["fov_statistics"]["mean"] == 2100  # Phase3D, zarr channel 1
    assert meta_b["ch_1"]["fov_statistics"]["mean"] == 2000  # RFP, zarr channel 0
    t_b = int(va["t"].iloc[b])
    assert meta_b["ch_0"]["timepoint_statistics"]["mean"] == 2100 + t_b
    assert meta_b["ch_0"]["timepoint_statistics"]["std"].dtype == torch.float32
    assert len(batch["positive_norm_meta"]) == 2


def test_positives_reproducible_per_seed_and_epoch(same_fov_names):
    ds = _dataset(same_fov_names, tau=(0.5, 2.0))
    idx = list(range(0, len(ds), 3))
    p1 = ds.__getitems__(idx)["positive"]
    p2 = ds.__getitems__(idx)["positive"]
    assert torch.equal(p1, p2)
    ds.set_epoch(1)
    assert not torch.equal(p1, ds.__getitems__(idx)["positive"])
    other = _dataset(same_fov_names, tau=(0.5, 2.0), seed=1)
    assert not torch.equal(p1, other.__getitems__(idx)["positive"])
    ds.set_epoch(0)
    ds.rank = 1
    assert not torch.equal(p1, ds.__getitems__(idx)["positive"])


def test_positive_follows_division_to_daughters(tmp_path):
    tracks = default_tracks(n_t=10, n_tracks=1, division=True)
    tracks.loc[tracks["track_id"] == 1, "y"] = 20.0  # daughters at distinct places
    tracks.loc[tracks["track_id"] == 2, "y"] = 44.0
    cfg = make_experiment(tmp_path, "div", condition_wells={"c": ["A/1"]}, tracks=tracks, n_t=10)
    ds = _dataset(ExperimentRegistry([cfg]), tau=(0.5, 0.5))
    va = ds.index.valid_anchors
    last = int(np.flatnonzero((va["track_id"] == 0) & (va["t"] == 4))[0])
    rows = []
    for seed in range(30):
        ds.seed = seed
        rows.append(ds.index.sample_positives(ds.index.anchor_track_rows[[last]], np.random.default_rng(seed))[0])
    assert set(ds.index.tracks["track_id"].to_numpy()[rows]) == {1, 2}


def test_predict_mode_all_observations(same_fov_names):
    ds = _dataset(same_fov_names, fit=False)
    assert len(ds) == len(ds.index.tracks) > len(ds.index.valid_anchors)
    batch = ds.__getitems__([0, len(ds) - 1])
    assert set(batch) == {"anchor", "anchor_norm_meta", "index"}
    assert batch["anchor"].shape == (2, 2, 2, 32, 32)
    rec = batch["index"][1]
    row = ds.index.tracks.iloc[-1]
    assert rec["fov_name"] == row["fov_name"] and rec["id"] == row["id"] and rec["y"] == row["y"]
    assert {"track_id", "t", "parent_track_id", "parent_id", "x"} <= set(rec)


def test_zero_filled_channel_and_patch_edges(tmp_path):
    tracks = default_tracks(n_t=6, n_tracks=1)
    tracks[["y", "x"]] = 1.0  # at the corner: the patch is clamped inside the image
    a = make_experiment(tmp_path, "a", ["Phase3D", "GFP"], ["Phase3D", "GFP"], {"c": ["A/1"]}, tracks=tracks, n_t=6)
    b = make_experiment(tmp_path, "b", ["Phase3D"], ["Phase3D", "GFP"], {"c": ["A/1"]}, tracks=tracks, n_t=6, code=2)
    reg = ExperimentRegistry([a, b], zero_fill_missing_channels=True)
    ds = _dataset(reg, patch=(33, 64))  # odd height, as wide as the 64-pixel image
    va = ds.index.valid_anchors
    row = int(np.flatnonzero(va["experiment"] == "b")[0])
    batch = ds.__getitems__([row])
    assert batch["anchor"].shape == (1, 2, 2, 33, 64)
    assert torch.all(batch["anchor"][0, 1] == 0)
    assert torch.all(batch["anchor"][0, 0] // 1000 == 2)  # clamped inside the image: no padding
    assert batch["anchor_norm_meta"][0]["ch_1"]["fov_statistics"]["std"] == 1
    # a patch wider than the image cannot be centred on a cell: refused, naming the plate and FOV
    with pytest.raises(ValueError, match=r"Experiment 'a', FOV A/1/0 of .*a\.zarr: yx_patch_size \[33, 80\]"):
        _dataset(reg, patch=(33, 80))


def test_tau_range_must_match_index(same_fov_names):
    index = MultiExperimentIndex(same_fov_names, slice(0, 1), (32, 32), tau_range_hours=(0.5, 1.0))
    with pytest.raises(ValueError, match="tau_range_hours"):
        MultiExperimentTripletDataset(index, tau_range_hours=(0.5, 2.0))


def test_out_of_range_index(same_fov_names):
    ds = _dataset(same_fov_names)
    with pytest.raises(IndexError, match="out of range"):
        ds.__getitems__([len(ds)])


def test_ome_zarr_05_store(tmp_path):
    cfg = make_experiment(tmp_path, "v5", condition_wells={"c": ["A/1"]}, version="0.5", code=4)
    ds = _dataset(ExperimentRegistry([cfg]))
    assert torch.all(ds.__getitems__([0, 1])["anchor"] // 1000 == 4)


def test_rechunked_plate_reads_the_same_patches_and_metadata(tmp_path):
    """A plate rechunked into small sharded chunks gives the dataset bit-identical batches."""
    from iohub.ngff import open_ome_zarr

    from viscy_data.rechunk import rechunk

    channels = ["Phase3D", "GFP", "Mito"]
    config = make_experiment(tmp_path, "exp", channels, ["Phase3D", "Mito"], WELLS, timepoint_stats=True)
    rng = np.random.default_rng(0)
    with open_ome_zarr(config.data_path, layout="hcs", mode="r+") as plate:
        for _, position in plate.positions():  # pixels that differ everywhere, so misplaced reads show
            position["0"][:] = rng.standard_normal(position["0"].shape).astype(np.float32)
    sharded = tmp_path / "exp_sharded.zarr"
    rechunk(config.data_path, sharded, chunks=(1, 1, 2, 16, 16), channels=["Phase3D", "Mito"], progress=False)
    moved = dataclasses.replace(config, data_path=str(sharded), channel_names=["Phase3D", "Mito"])
    original, copy = _dataset(ExperimentRegistry([config])), _dataset(ExperimentRegistry([moved]))
    indices = list(range(len(original)))
    a, b = original.__getitems__(indices), copy.__getitems__(indices)
    for key in ("anchor", "positive"):
        assert torch.equal(a[key], b[key])
    assert a["anchor_norm_meta"] == b["anchor_norm_meta"]


def _chunk_reads() -> int:
    import tensorstore as ts

    (metric,) = ts.experimental_collect_matching_metrics("/tensorstore/cache/chunk_cache/reads") or [None]
    return 0 if metric is None else int(metric["values"][0]["value"])


def test_sharded_plate_reads_decode_only_the_inner_chunks_a_patch_overlaps(tmp_path):
    from viscy_data.rechunk import rechunk

    tracks = default_tracks(n_t=4, n_tracks=1)
    tracks["y"], tracks["x"] = 30.0, 21.0  # patch rows 14-45, columns 5-36: 3 x 3 chunks of 16
    config = make_experiment(tmp_path, "exp", condition_wells={"c": ["A/1"]}, tracks=tracks, n_t=4, size=64)
    sharded = tmp_path / "exp_sharded.zarr"
    rechunk(config.data_path, sharded, chunks=(1, 1, -1, 16, 16), progress=False)
    moved = dataclasses.replace(config, data_path=str(sharded))
    ds = _dataset(ExperimentRegistry([moved]), fit=False)  # anchors only: 4 patches x 2 channels
    ds.__getitems__([0])  # open the store (reads its metadata)
    before = _chunk_reads()
    batch = ds.__getitems__(list(range(4)))
    assert _chunk_reads() - before == 4 * 2 * 3 * 3  # of the shard's 4 x 4 inner chunks per (t, c)
    original = _dataset(ExperimentRegistry([config]), fit=False).__getitems__(list(range(4)))
    assert torch.equal(batch["anchor"], original["anchor"])
