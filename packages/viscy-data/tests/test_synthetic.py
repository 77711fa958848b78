import numpy as np
import pandas as pd
import pytest
from iohub.ngff import open_ome_zarr

from viscy_data.norm_meta import compute_statistics, read_norm_meta
from viscy_data.synthetic import TRACKS_COLUMNS, write_synthetic_plate


def _read_all(store):
    with open_ome_zarr(store, mode="r") as plate:
        return {name: pos["0"].numpy() for name, pos in plate.positions()}


def test_plate_opens_with_iohub(synthetic_plate):
    with open_ome_zarr(synthetic_plate.store_path, mode="r", layout="hcs") as plate:
        assert plate.channel_names == ["Phase3D", "GFP"]
        names = [name for name, _ in plate.positions()]
        assert tuple(names) == synthetic_plate.fov_names == ("A/1/0", "A/2/0", "B/1/0", "B/2/0")
        for _, pos in plate.positions():
            assert pos["0"].shape == synthetic_plate.shape == (8, 2, 4, 128, 128)
            assert pos["0"].dtype == np.float32


def test_deterministic_from_seed(tmp_path):
    kw = dict(wells=("A/1", "B/1"), n_timepoints=4, yx_size=(48, 64), cells_per_fov=3, z_size=2)
    a = write_synthetic_plate(tmp_path / "a.zarr", seed=3, **kw)
    b = write_synthetic_plate(tmp_path / "b.zarr", seed=3, **kw)
    c = write_synthetic_plate(tmp_path / "c.zarr", seed=4, **kw)
    pd.testing.assert_frame_equal(a.annotations, b.annotations)
    ia, ib, ic = _read_all(a.store_path), _read_all(b.store_path), _read_all(c.store_path)
    for name in ia:
        np.testing.assert_array_equal(ia[name], ib[name])
        assert not np.array_equal(ia[name], ic[name])
    assert not a.annotations[["y", "x"]].equals(c.annotations[["y", "x"]])


def test_tracks_csv_layout_and_types(synthetic_plate):
    for fov in synthetic_plate.fov_names:
        csv = synthetic_plate.store_path / fov / "tracks.csv"
        assert csv == synthetic_plate.tracks_csv(fov)
        tracks = pd.read_csv(csv)
        assert list(tracks.columns) == TRACKS_COLUMNS
        assert tracks["y"].dtype == np.float64 and tracks["track_id"].dtype == np.int64
        expected = synthetic_plate.annotations.query("fov_name == @fov")[TRACKS_COLUMNS].reset_index(drop=True)
        pd.testing.assert_frame_equal(tracks, expected)


def test_lineage_is_valid(plate_v04):
    ann = plate_v04.annotations
    assert (ann["parent_track_id"] >= 0).any(), "the default plate should contain divisions"
    for fov, tracks in ann.groupby("fov_name"):
        assert tracks["id"].is_unique
        id_t = tracks.set_index("id")["t"]
        first = tracks.sort_values("t").groupby("track_id").head(1)
        rest = tracks.drop(first.index)
        # within a track, parent_id is the previous detection of the same track
        prev = tracks.sort_values(["track_id", "t"]).groupby("track_id")["id"].shift(1)
        assert (rest["parent_id"] == prev.loc[rest.index]).all()
        assert (rest["t"] - id_t.loc[rest["parent_id"]].to_numpy() == 1).all()
        roots = first[first["parent_track_id"] < 0]
        assert (roots["parent_id"] == -1).all()
        daughters = first[first["parent_track_id"] >= 0]
        mother_end = tracks.groupby("track_id")["t"].max()
        for mother, sisters in daughters.groupby("parent_track_id"):
            assert len(sisters) == 2, f"{fov}: track {mother} should have 2 daughters"
            assert (sisters["t"] == mother_end[mother] + 1).all()
            mother_last = tracks[(tracks["track_id"] == mother) & (tracks["t"] == mother_end[mother])]["id"].item()
            assert (sisters["parent_id"] == mother_last).all()
        # every track is contiguous in time
        span = tracks.groupby("track_id")["t"].agg(["min", "max", "count"])
        assert (span["max"] - span["min"] + 1 == span["count"]).all()


def test_positions_in_image_and_border_cells(plate_v04):
    ann = plate_v04.annotations
    _, _, _, h, w = plate_v04.shape
    assert ann["y"].between(0, h - 1).all() and ann["x"].between(0, w - 1).all()
    near_border = (ann["y"] < 8) | (ann["x"] < 8) | (ann["y"] > h - 9) | (ann["x"] > w - 9)
    assert near_border.groupby(ann["fov_name"]).any().all()


def test_labels_match_pixels(plate_v04):
    ann = plate_v04.annotations
    images = _read_all(plate_v04.store_path)
    zc = plate_v04.shape[2] // 2
    y = ann["y"].round().astype(int).to_numpy()
    x = ann["x"].round().astype(int).to_numpy()
    t = ann["t"].to_numpy()
    gfp = np.array([images[f][ti, 1, zc, yi, xi] for f, ti, yi, xi in zip(ann["fov_name"], t, y, x)])
    phase = np.array([images[f][ti, 0, zc, yi, xi] for f, ti, yi, xi in zip(ann["fov_name"], t, y, x)])
    infected = ann["infection_state"].to_numpy() == 1
    assert infected.any() and (~infected).any()
    # infection is per well and starts at the onset
    assert set(ann.loc[infected, "fov_name"].str[:3]) <= {"B/1", "B/2"}
    assert (ann.loc[infected, "t"] >= 4).all()
    assert ((ann["fov_name"].str[:3].isin(["B/1", "B/2"])) & (ann["t"] >= 4)).eq(infected).all()
    # a bright nuclear reporter after infection, dim before (isolated cells: overlaps can add up)
    assert np.median(gfp[infected]) > 2.0 > 0.6 > np.median(gfp[~infected])
    # cells are visible in phase against a ~0 background
    assert np.median(phase) > 0.5
    background = images["A/1/0"][0, 0, zc, :3, -3:]
    assert abs(float(background.mean())) < 0.2
    division = ann["division"].to_numpy() == 1
    assert division.any()
    assert np.median(phase[division]) > np.median(phase[~division])


def test_norm_meta_matches_data(synthetic_plate):
    images = _read_all(synthetic_plate.store_path)
    with open_ome_zarr(synthetic_plate.store_path, mode="r") as plate:
        plate_meta = read_norm_meta(plate.zattrs)
        assert set(plate_meta["GFP"]) == {"dataset_statistics", "timepoint_statistics"}
        stacked = np.stack(list(images.values()))
        expected = compute_statistics(stacked[:, :, 1])
        assert plate_meta["GFP"]["dataset_statistics"]["mean"].item() == pytest.approx(expected["mean"], rel=1e-5)
        for name, pos in plate.positions():
            meta = read_norm_meta(pos.zattrs)
            fov = compute_statistics(images[name][:, 0])
            assert meta["Phase3D"]["fov_statistics"]["std"].item() == pytest.approx(fov["std"], rel=1e-5)
            t3 = compute_statistics(stacked[:, 3, 0])
            stored = meta["Phase3D"]["timepoint_statistics"]["3"]["median"].item()
            assert stored == pytest.approx(t3["median"], rel=1e-5)


def test_options_external_tracks_uint16_no_meta(tmp_path):
    plate = write_synthetic_plate(
        tmp_path / "p.zarr",
        wells=("C/3",),
        infected_wells=(),
        fovs_per_well=2,
        n_timepoints=3,
        z_size=1,
        yx_size=(40, 32),
        channel_names=("Phase3D", "GFP", "RFP"),
        tracks_path=tmp_path / "tracks",
        write_norm_meta=False,
        dtype="uint16",
        version="0.5",
    )
    assert plate.fov_names == ("C/3/0", "C/3/1")
    assert (tmp_path / "tracks" / "C/3/1" / "tracks.csv").is_file()
    assert not (tmp_path / "p.zarr" / "C/3/1" / "tracks.csv").exists()
    with open_ome_zarr(plate.store_path, mode="r") as p:
        assert read_norm_meta(p.zattrs) is None
        for _, pos in p.positions():
            assert pos["0"].dtype == np.uint16 and pos["0"].shape == (3, 3, 1, 40, 32)
            assert read_norm_meta(pos.zattrs) is None
    assert (plate.annotations["infection_state"] == 0).all()
    out = plate.write_annotation_csv(tmp_path / "ann" / "a.csv")
    pd.testing.assert_frame_equal(pd.read_csv(out), plate.annotations)


@pytest.mark.parametrize("seed", range(4))
def test_border_margin_keeps_every_cell_inside(tmp_path, seed):
    kw = dict(n_timepoints=12, yx_size=(64, 80), cells_per_fov=8, z_size=1, division_probability=0.3, seed=seed)
    plate = write_synthetic_plate(tmp_path / "p.zarr", border_margin=16, **kw)
    ann = plate.annotations
    assert ann["y"].between(16, 64 - 17).all() and ann["x"].between(16, 80 - 17).all()
    assert (ann["division"] == 1).any()  # daughters born near the limit are reflected inside too
    # cells still roam the interior: they reach close to the limits
    assert ann["y"].min() < 24 and ann["y"].max() > 64 - 25
    # the default still puts cells at the border
    default = write_synthetic_plate(tmp_path / "d.zarr", **kw).annotations
    assert ((default["y"] < 8) | (default["x"] < 8)).any()


def test_noise_sd_sets_the_camera_noise(tmp_path):
    kw = dict(wells=("A/1", "B/1"), n_timepoints=3, yx_size=(48, 48), cells_per_fov=3, z_size=2, seed=5)
    clean = _read_all(write_synthetic_plate(tmp_path / "a.zarr", noise_sd=0.0, **kw).store_path)
    noisy = _read_all(write_synthetic_plate(tmp_path / "b.zarr", noise_sd=0.2, **kw).store_path)
    default = _read_all(write_synthetic_plate(tmp_path / "c.zarr", **kw).store_path)
    for name in clean:
        # the same cells; only the added noise differs
        diff = noisy[name] - clean[name]
        assert abs(diff.std() - 0.2) < 0.01 and abs(diff.mean()) < 0.01
        assert abs((default[name] - clean[name]).std() - 0.05) < 0.0025


def test_transient_puncta_only_add_reporter_and_do_not_persist(tmp_path):
    kw = dict(wells=("A/1",), infected_wells=(), n_timepoints=6, yx_size=(96, 96), cells_per_fov=5, z_size=1)
    kw |= dict(border_margin=16, division_probability=0.0, infection_phenotype="relocalisation", seed=2)
    base = write_synthetic_plate(tmp_path / "a.zarr", **kw)
    spotted = write_synthetic_plate(tmp_path / "b.zarr", transient_puncta=1.5, **kw)
    pd.testing.assert_frame_equal(base.annotations, spotted.annotations)
    diff = _read_all(spotted.store_path)["A/1/0"] - _read_all(base.store_path)["A/1/0"]
    # phase and noise are the same; puncta only add reporter
    np.testing.assert_allclose(diff[:, 0], 0.0, atol=1e-6)
    assert diff[:, 1].min() > -1e-5
    # as bright as an infected nucleus (peak about 1.9 above the cytoplasm)
    assert diff[:, 1].max() > 1.5
    # they are redrawn every frame: a cell's puncta at t and t + 1 barely overlap
    ann = base.annotations.set_index(["track_id", "t"])
    corr = []
    for (track, t), row in ann.iterrows():
        if (track, t + 1) not in ann.index:
            continue
        nxt = ann.loc[(track, t + 1)]
        a = diff[t, 1, 0, int(row.y) - 8 : int(row.y) + 9, int(row.x) - 8 : int(row.x) + 9]
        b = diff[t + 1, 1, 0, int(nxt.y) - 8 : int(nxt.y) + 9, int(nxt.x) - 8 : int(nxt.x) + 9]
        if a.max() > 0.5 and b.max() > 0.5:
            corr.append(np.corrcoef(a.ravel(), b.ravel())[0, 1])
    assert len(corr) >= 5
    assert np.mean(corr) < 0.3


def test_texture_contrast_changes_only_the_phase_texture(tmp_path):
    kw = dict(wells=("A/1",), n_timepoints=3, yx_size=(64, 64), cells_per_fov=3, z_size=1, noise_sd=0.0, seed=1)
    plain = _read_all(write_synthetic_plate(tmp_path / "a.zarr", texture_contrast=0.0, **kw).store_path)["A/1/0"]
    striped = _read_all(write_synthetic_plate(tmp_path / "b.zarr", **kw).store_path)["A/1/0"]
    np.testing.assert_array_equal(plain[:, 1], striped[:, 1])
    # the stripes modulate the cell body by up to +-30 %
    assert np.abs(striped[:, 0] - plain[:, 0]).max() > 0.2


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(version="0.3"), "version"),
        (dict(wells=("A1",), infected_wells=()), "A1"),
        (dict(channel_names=()), "channel"),
        (dict(yx_size=(40, 40), border_margin=20), "border_margin"),
        (dict(border_margin=-1), "border_margin"),
        (dict(noise_sd=-0.1), "noise_sd"),
        (dict(transient_puncta=-1.0), "transient_puncta"),
        (dict(texture_contrast=-0.1), "texture_contrast"),
        (dict(onset_spread=-1), "onset_spread"),
        (dict(never_infected_fraction=1.5), "never_infected_fraction"),
        (dict(phenotype_frames=0), "phenotype_frames"),
        (dict(reporter_gain=0.0), "reporter_gain"),
        (dict(blur_sigma=-1.0), "blur_sigma"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        write_synthetic_plate(tmp_path / "p.zarr", **kwargs)


def test_asynchronous_onsets_per_lineage_with_bystanders(tmp_path):
    kw = dict(n_timepoints=12, yx_size=(96, 96), cells_per_fov=12, z_size=1, division_probability=0.15, seed=7)
    kw |= dict(fovs_per_well=2, infection_onset=3)
    sync = write_synthetic_plate(tmp_path / "a.zarr", **kw)
    plate = write_synthetic_plate(tmp_path / "b.zarr", onset_spread=5, never_infected_fraction=0.3, **kw)
    ann = plate.annotations
    # the cells, their tracks and the phase images do not change; only who is infected when
    pd.testing.assert_frame_equal(
        sync.annotations.drop(columns=["infection_state", "infection_onset"]),
        ann.drop(columns=["infection_state", "infection_onset"]),
    )
    for name, image in _read_all(plate.store_path).items():
        np.testing.assert_array_equal(image[:, 0], _read_all(sync.store_path)[name][:, 0])
    infected_well = ann["fov_name"].str[:3].isin(["B/1", "B/2"])
    assert (ann.loc[~infected_well, "infection_onset"] == -1).all()
    onset = ann.loc[infected_well, "infection_onset"]
    assert set(onset.unique()) - {-1} <= set(range(3, 9))
    assert onset[onset >= 0].nunique() >= 4, "onsets should be drawn per lineage"
    assert (onset == -1).any() and (onset >= 0).mean() > 0.4
    expected = (ann["infection_onset"] >= 0) & (ann["t"] >= ann["infection_onset"])
    np.testing.assert_array_equal(ann["infection_state"].to_numpy(), expected.astype(int).to_numpy())
    # onsets are per track and inherited through divisions
    assert (ann.groupby(["fov_name", "track_id"])["infection_onset"].nunique() == 1).all()
    daughters = ann[ann["parent_track_id"] >= 0].groupby(["fov_name", "track_id"]).first()
    mother_onset = ann.groupby(["fov_name", "track_id"])["infection_onset"].first()
    keys = list(zip(daughters.index.get_level_values(0), daughters["parent_track_id"]))
    assert len(keys) > 0
    np.testing.assert_array_equal(daughters["infection_onset"].to_numpy(), mother_onset.loc[keys].to_numpy())
    # the default plate: the whole infected well at the onset
    assert set(sync.annotations.loc[infected_well, "infection_onset"]) == {3}


def test_phenotype_develops_over_frames(tmp_path):
    kw = dict(wells=("B/1",), fovs_per_well=3, n_timepoints=10, yx_size=(64, 64), cells_per_fov=1, z_size=1)
    kw |= dict(noise_sd=0.0, division_probability=0.0, border_margin=20, infection_onset=3, seed=4)
    kw |= dict(infection_phenotype="relocalisation")
    slow = write_synthetic_plate(tmp_path / "a.zarr", phenotype_frames=4, **kw)
    fast = write_synthetic_plate(tmp_path / "b.zarr", **kw)
    centre = {}
    for name, plate in (("slow", slow), ("fast", fast)):
        images = _read_all(plate.store_path)
        ann = plate.annotations
        centre[name] = np.array(
            [
                images[f][t, 1, 0, int(round(y)), int(round(x))]
                for f, t, y, x in zip(ann["fov_name"], ann["t"], ann["y"], ann["x"])
            ]
        ).reshape(3, 10)
    # the reporter fills the nucleus over 4 frames from the onset (frame 3), then stays
    steps = np.diff(centre["slow"][:, 2:8], axis=1)
    # (the centroid moves by a fraction of a pixel, so the sampled centre value wobbles a little)
    assert (steps[:, :4] > 0.3).all() and (np.abs(steps[:, 4:]) < 0.15).all()
    np.testing.assert_allclose(centre["slow"][:, 6:], centre["fast"][:, 6:], atol=1e-5)
    np.testing.assert_allclose(centre["slow"][:, :3], centre["fast"][:, :3], atol=1e-5)
    assert (centre["fast"][:, 3] > centre["slow"][:, 3] + 0.3).all()


@pytest.mark.parametrize("anywhere", [False, True])
def test_puncta_over_the_nucleus_only_when_asked(tmp_path, anywhere):
    kw = dict(wells=("A/1",), infected_wells=(), n_timepoints=8, yx_size=(96, 96), cells_per_fov=6, z_size=1)
    kw |= dict(border_margin=16, division_probability=0.0, infection_phenotype="relocalisation", seed=5)
    base = write_synthetic_plate(tmp_path / "a.zarr", **kw)
    spotted = write_synthetic_plate(tmp_path / "b.zarr", transient_puncta=1.5, puncta_anywhere=anywhere, **kw)
    diff = _read_all(spotted.store_path)["A/1/0"] - _read_all(base.store_path)["A/1/0"]
    ann = base.annotations
    centre = np.array([diff[t, 1, 0, int(round(y)), int(round(x))] for t, y, x in zip(ann["t"], ann["y"], ann["x"])])
    if anywhere:
        assert (centre > 1.0).sum() >= 3
    else:
        assert centre.max() < 0.6


def test_acquisition_gain_background_and_blur(tmp_path):
    kw = dict(wells=("B/1",), n_timepoints=4, yx_size=(64, 64), cells_per_fov=3, z_size=1, noise_sd=0.0)
    kw |= dict(border_margin=16, division_probability=0.0, seed=6, infection_onset=2)
    plain = _read_all(write_synthetic_plate(tmp_path / "a.zarr", **kw).store_path)["B/1/0"]
    gained = _read_all(write_synthetic_plate(tmp_path / "b.zarr", reporter_gain=2.0, background=0.4, **kw).store_path)[
        "B/1/0"
    ]
    blurred = _read_all(write_synthetic_plate(tmp_path / "c.zarr", blur_sigma=1.5, **kw).store_path)["B/1/0"]
    np.testing.assert_array_equal(gained[:, 0], plain[:, 0])
    np.testing.assert_allclose(gained[:, 1] - 0.4, 2.0 * (plain[:, 1] - 0.1), atol=1e-5)
    # blur lowers the peaks and keeps the integrated signal of both channels
    for c in (0, 1):
        assert blurred[:, c].max() < 0.9 * plain[:, c].max()
        np.testing.assert_allclose(blurred[:, c].sum((1, 2, 3)), plain[:, c].sum((1, 2, 3)), rtol=0.02)
