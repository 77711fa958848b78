import dataclasses
import logging
import os
import pathlib
import time

import numpy as np
import pandas as pd
import pytest
from _mx_testdata import default_tracks, make_experiment, write_experiments_yaml  # loaded by conftest.py

from dynaclr.experiment import ExperimentRegistry
from dynaclr.index import MultiExperimentIndex, _resolve_roots


def _tracks(rows):
    df = pd.DataFrame(rows, columns=["track_id", "t", "y", "x", "parent_track_id"])
    df["id"] = np.arange(len(df))
    df["parent_id"] = -1
    return df


def _index(tmp_path, tracks, tau=(0.5, 1.0), patch=(32, 32), **kw):
    cfg = make_experiment(tmp_path, "exp", condition_wells={"c": ["A/1"]}, tracks=tracks, n_t=12, **kw)
    return MultiExperimentIndex(ExperimentRegistry([cfg]), slice(0, 1), patch, tau_range_hours=tau)


@pytest.fixture
def two_exp(tmp_path):
    wells = {"uninfected": ["A/1", "A/2"], "infected": ["B/1", "B/2"]}
    a = make_experiment(tmp_path, "exp_a", condition_wells=wells, fovs_per_well=2, start_hpi=1.5)
    b = make_experiment(tmp_path, "exp_b", condition_wells=wells, fovs_per_well=2, code=2, interval_minutes=15)
    return ExperimentRegistry([a, b])


def test_tracks_columns_and_ids(two_exp):
    idx = MultiExperimentIndex(two_exp, slice(0, 2), (32, 32))
    t = idx.tracks
    assert len(t) == 2 * 4 * 2 * 3 * 10
    assert list(t.index) == list(range(len(t)))
    for col in (
        "experiment",
        "condition",
        "well_name",
        "fov_name",
        "global_track_id",
        "hours_post_infection",
        "fluorescence_channel",
        "position",
        "lineage_id",
        "y_clamp",
        "x_clamp",
        "id",
        "parent_id",
    ):
        assert col in t.columns
    assert set(t["experiment"]) == {"exp_a", "exp_b"}
    assert set(t["condition"]) == {"uninfected", "infected"}
    row = t[(t["experiment"] == "exp_a") & (t["fov_name"] == "B/2/1") & (t["track_id"] == 2)].iloc[0]
    assert row["global_track_id"] == "exp_a_B/2/1_2" and row["well_name"] == "B/2" and row["condition"] == "infected"
    assert t["global_track_id"].nunique() == 2 * 8 * 3
    a = t[t["experiment"] == "exp_a"]
    np.testing.assert_allclose(a["hours_post_infection"], 1.5 + a["t"] * 0.5)
    b = t[t["experiment"] == "exp_b"]
    np.testing.assert_allclose(b["hours_post_infection"], b["t"] * 0.25)
    assert set(t["fluorescence_channel"]) == {"GFP"}
    assert len(idx.positions) == 16
    assert idx.tracks["position"].iloc[0] is idx.positions[0]


def test_filters(two_exp):
    idx = MultiExperimentIndex(two_exp, slice(0, 2), (32, 32), include_wells=["A/1", "B/1"])
    assert set(idx.tracks["well_name"]) == {"A/1", "B/1"} and len(idx.tracks) == 240
    idx = MultiExperimentIndex(two_exp, slice(0, 2), (32, 32), exclude_fovs=["A/1/0", "B/2/1"])
    assert len(idx.tracks) == 480 - 4 * 30
    assert "A/1/0" not in set(idx.tracks["fov_name"])


def test_missing_csv_warns(tmp_path, caplog):
    cfg = make_experiment(tmp_path, "e", condition_wells={"c": ["A/1", "A/2"]})
    for f in (pathlib.Path(cfg.tracks_path) / "A/2/0").glob("*.csv"):
        f.unlink()
    with caplog.at_level(logging.WARNING):
        idx = MultiExperimentIndex(ExperimentRegistry([cfg]), slice(0, 1), (32, 32))
    assert "no tracking CSV" in caplog.text
    assert set(idx.tracks["fov_name"]) == {"A/1/0"} and len(idx.positions) == 1


def test_lineage_chain_missing_parent_and_independent(tmp_path):
    rows = [(0, t, 30, 30, -1) for t in range(3)]
    rows += [(1, t, 30, 30, 0) for t in range(3, 6)]  # daughter of 0
    rows += [(2, t, 30, 30, 1) for t in range(6, 9)]  # granddaughter
    rows += [(3, t, 30, 30, 99) for t in range(3)]  # missing parent -> own root
    rows += [(4, t, 30, 30, np.nan) for t in range(3)]
    idx = _index(tmp_path, _tracks(rows))
    lineage = idx.tracks.groupby("track_id")["lineage_id"].first()
    assert lineage[0] == lineage[1] == lineage[2] == "exp_A/1/0_0"
    assert lineage[3] == "exp_A/1/0_3" and lineage[4] == "exp_A/1/0_4"


def test_no_parent_column(tmp_path):
    df = _tracks([(0, t, 30, 30, -1) for t in range(3)]).drop(columns="parent_track_id")
    idx = _index(tmp_path, df)
    assert set(idx.tracks["lineage_id"]) == {"exp_A/1/0_0"}


def test_resolve_roots_chain_and_cycle():
    root, parent = _resolve_roots(np.array([-1, 0, 1, 2, -1, 6, 5, 6]))
    assert list(root[:5]) == [0, 0, 0, 0, 4]
    assert root[5] == 5 and root[6] == 6 and root[7] == 7  # cycle 5<->6 and 7 below it become roots
    assert parent[5] == -1


def test_border_clamping(tmp_path):
    rows = [
        (0, 0, 32, 32, -1),
        (1, 0, 2, 2, -1),
        (2, 0, -1, 30, -1),
        (3, 0, 0, 0, -1),
        (4, 0, 63.5, 10, -1),
        (5, 0, 64, 10, -1),
    ]
    idx = _index(tmp_path, _tracks(rows))
    t = idx.tracks.set_index("track_id")
    assert set(t.index) == {0, 1, 3, 4}
    assert (t.loc[0, "y_clamp"], t.loc[0, "x_clamp"]) == (32, 32)
    assert (t.loc[1, "y_clamp"], t.loc[1, "x_clamp"]) == (16, 16) and (t.loc[1, "y"], t.loc[1, "x"]) == (2, 2)
    assert (t.loc[3, "y_clamp"], t.loc[3, "x_clamp"]) == (16, 16)
    assert t.loc[4, "y_clamp"] == 48


def test_valid_anchors_rule(tmp_path):
    # interval 30 min, tau 0.5-1.0 h -> 1-2 frames
    rows = [(0, t, 30, 30, -1) for t in (0, 1, 2, 4, 7, 8)]
    idx = _index(tmp_path, _tracks(rows))
    assert sorted(idx.valid_anchors["t"]) == [0, 1, 2, 7]
    assert list(idx.valid_anchors.index) == list(range(4))


def test_parent_valid_through_daughter_not_through_sister(tmp_path):
    rows = [(0, t, 30, 30, -1) for t in range(4)]
    rows += [(1, t, 30, 30, 0) for t in range(4, 8)]  # daughter continues
    rows += [(2, t, 30, 30, 0) for t in range(4, 6)]  # sister stops at t=5
    idx = _index(tmp_path, _tracks(rows))
    va = idx.valid_anchors
    assert set(va.loc[va["track_id"] == 0, "t"]) == {0, 1, 2, 3}
    # sister's last frame: only the other daughter (a sister) exists at t+1 -> not an anchor
    assert set(va.loc[va["track_id"] == 2, "t"]) == {4}


def test_tau_zero_never_drawn_inside_a_range(tmp_path):
    # a range that includes 0 never makes an anchor its own positive (isolated frames have no anchor)
    rows = [(0, 0, 30, 30, -1), (1, 3, 30, 30, -1), (2, 5, 30, 30, -1), (2, 6, 30, 30, -1)]
    idx = _index(tmp_path, _tracks(rows), tau=(0.0, 1.0))
    assert idx.tau_frames["exp"] == (0, 2)
    assert list(idx.valid_anchors["track_id"]) == [2]
    pos = idx.sample_positives(np.repeat(idx.anchor_track_rows, 50), np.random.default_rng(0), tau_decay_rate=0.0)
    assert (idx.tracks["t"].to_numpy()[pos] == 6).all()


def test_same_frame_positives_keep_anchors_and_draws_of_the_tau_range(tmp_path):
    # the SimCLR-style ablation: every anchor is its own positive; anchors and random draws are DynaCLR's
    rows = [(0, 0, 30, 30, -1), (1, 3, 30, 30, -1), (1, 4, 30, 30, -1), (2, 5, 30, 30, 1), (3, 5, 30, 30, 1)]
    temporal = _index(tmp_path / "a", _tracks(rows), tau=(0.5, 1.0))
    cfg = make_experiment(tmp_path / "b", "exp", condition_wells={"c": ["A/1"]}, tracks=_tracks(rows), n_t=12)
    ablation = MultiExperimentIndex(
        ExperimentRegistry([cfg]), slice(0, 1), (32, 32), tau_range_hours=(0.5, 1.0), same_frame_positives=True
    )
    pd.testing.assert_frame_equal(
        ablation.valid_anchors.drop(columns="position"), temporal.valid_anchors.drop(columns="position")
    )
    assert len(ablation.valid_anchors) < len(ablation.tracks)  # isolated frames and track ends stay out
    anchors = np.repeat(ablation.anchor_track_rows, 20)
    rng_a, rng_t = np.random.default_rng(1), np.random.default_rng(1)
    np.testing.assert_array_equal(ablation.sample_positives(anchors, rng_a), anchors)
    assert not np.array_equal(temporal.sample_positives(anchors, rng_t), anchors)
    assert rng_a.random() == rng_t.random()  # the same draws were made


def test_zero_tau_range_is_not_the_ablation(tmp_path):
    # tau = 0 is never drawn: a (0, 0) range leaves no anchor; the ablation is same_frame_positives
    rows = [(0, 0, 30, 30, -1), (0, 1, 30, 30, -1), (1, 3, 30, 30, -1)]
    idx = _index(tmp_path, _tracks(rows), tau=(0.0, 0.0))
    assert idx.tau_frames["exp"] == (0, 0)
    assert len(idx.valid_anchors) == 0


def test_per_experiment_tau_frames(tmp_path):
    rows = _tracks([(0, t, 30, 30, -1) for t in (0, 4)])
    a = make_experiment(tmp_path, "a", condition_wells={"c": ["A/1"]}, tracks=rows, interval_minutes=30)
    b = make_experiment(tmp_path, "b", condition_wells={"c": ["A/1"]}, tracks=rows, interval_minutes=15)
    idx = MultiExperimentIndex(ExperimentRegistry([a, b]), slice(0, 1), (32, 32), tau_range_hours=(0.5, 1.0))
    assert idx.tau_frames == {"a": (1, 2), "b": (2, 4)}
    assert list(idx.valid_anchors["experiment"]) == ["b"]


def test_empty(tmp_path):
    idx = _index(tmp_path, _tracks([]))
    assert len(idx.tracks) == 0 and len(idx.valid_anchors) == 0
    assert "0 total observations" in idx.summary()


def test_groups_and_summary(two_exp):
    idx = MultiExperimentIndex(two_exp, slice(0, 2), (32, 32))
    groups = idx.experiment_groups
    assert set(groups) == {"exp_a", "exp_b"}
    assert np.all(idx.tracks.loc[groups["exp_b"], "experiment"] == "exp_b")
    assert sum(len(v) for v in idx.condition_groups.values()) == len(idx.tracks)
    text = idx.summary()
    assert text.splitlines()[0] == (
        f"MultiExperimentIndex: 2 experiments, 480 total observations, {len(idx.valid_anchors)} valid anchors"
    )
    assert "  exp_a: 240 observations" in text and "infected(120)" in text


def _is_own_or_descendant(parents, anchor_track, other_track):
    node = other_track
    while node is not None:
        if node == anchor_track:
            return True
        node = parents.get(node)
    return False


@pytest.mark.parametrize("seed", range(3))
def test_positives_are_own_track_or_descendants(tmp_path, seed):
    rng = np.random.default_rng(seed)
    rows, parents, next_id = [], {}, 0
    # random division trees: each track lives 2-5 frames then may divide into two daughters
    frontier = [(None, 0)]
    while frontier and next_id < 40:
        parent, start = frontier.pop(0)
        tid, next_id = next_id, next_id + 1
        parents[tid] = parent
        end = min(start + int(rng.integers(2, 6)), 12)
        rows += [(tid, t, 30, 30, -1 if parent is None else parent) for t in range(start, end)]
        if end < 12 and rng.random() < 0.8:
            frontier += [(tid, end), (tid, end)]
        if not frontier and next_id < 40:
            frontier.append((None, 0))
    idx = _index(tmp_path, _tracks(rows), tau=(0.5, 1.5))
    anchors = idx.anchor_track_rows
    assert len(anchors) > 0
    pos = idx.sample_positives(np.repeat(anchors, 5), np.random.default_rng(seed), tau_decay_rate=1.0)
    t = idx.tracks
    a_track = t["track_id"].to_numpy()[np.repeat(anchors, 5)]
    p_track = t["track_id"].to_numpy()[pos]
    dt = t["t"].to_numpy()[pos] - t["t"].to_numpy()[np.repeat(anchors, 5)]
    assert np.all((dt >= 1) & (dt <= 3))
    assert not np.any(pos == np.repeat(anchors, 5))
    assert all(_is_own_or_descendant(parents, a, p) for a, p in zip(a_track, p_track))
    # after a division both daughters are reached
    div = [tid for tid in parents if sum(1 for v in parents.values() if v == tid) == 2]
    if div:
        last = t[t["track_id"] == div[0]]["t"].max()
        arow = t.index[(t["track_id"] == div[0]) & (t["t"] == last)][0]
        got = idx.sample_positives(np.full(200, arow), np.random.default_rng(0))
        assert {parents[x] for x in t["track_id"].to_numpy()[got]} == {div[0]}
        assert len(set(t["track_id"].to_numpy()[got])) == 2


def test_positive_sampling_reproducible_and_tau_distribution(two_exp):
    idx = MultiExperimentIndex(two_exp, slice(0, 2), (32, 32), tau_range_hours=(0.5, 2.0))
    rows = idx.anchor_track_rows
    p1 = idx.sample_positives(rows, np.random.default_rng(5))
    p2 = idx.sample_positives(rows, np.random.default_rng(5))
    np.testing.assert_array_equal(p1, p2)
    assert not np.array_equal(p1, idx.sample_positives(rows, np.random.default_rng(6)))
    same_track = idx.tracks["global_track_id"].to_numpy()[p1] == idx.tracks["global_track_id"].to_numpy()[rows]
    assert same_track.all()


def _no_build(monkeypatch):
    """Make any rebuild fail, so a construction that succeeds must have read the cache."""

    def fail(self):
        raise AssertionError("index rebuilt instead of read from the cache")

    monkeypatch.setattr(MultiExperimentIndex, "_build", fail)


def _typed_tracks(fov_name):
    """Tracks with extra CSV columns of every dtype a cache must keep: float, int, bool, string (with a gap)."""
    df = default_tracks(n_t=8, n_tracks=3, seed=len(fov_name), division=True)
    df["area"] = np.linspace(1.0, 2.0, len(df))
    df["label"] = np.where(np.arange(len(df)) % 3 == 0, "round", "flat")
    df.loc[df.index[1], "label"] = None
    df["mitotic"] = np.arange(len(df)) % 2 == 0
    df["score"] = np.arange(len(df), dtype=np.int64) * 7
    return df


def test_cache_round_trip_exact(tmp_path, monkeypatch):
    wells = {"uninfected": ["A/1"], "infected": ["B/1"]}
    a = make_experiment(tmp_path, "exp_a", condition_wells=wells, fovs_per_well=2, tracks=_typed_tracks)
    b = make_experiment(tmp_path, "exp_b", condition_wells=wells, fovs_per_well=2, code=2, tracks=_typed_tracks)
    registry = ExperimentRegistry([a, b])
    cache = tmp_path / "cache"
    built = MultiExperimentIndex(registry, slice(0, 2), (32, 32), cache_dir=cache)
    files = list(cache.iterdir())
    assert len(files) == 1 and files[0].suffix == ".parquet"
    umask = os.umask(0)
    os.umask(umask)
    assert files[0].stat().st_mode & 0o777 == 0o666 & ~umask  # as any new file: readable by a shared team
    assert {"area", "label", "mitotic", "score", "parent_track_id"} <= set(built.tracks.columns)
    with monkeypatch.context() as m:
        _no_build(m)
        loaded = MultiExperimentIndex(registry, slice(0, 2), (32, 32), cache_dir=cache)
    # the whole table, dtypes and category order included
    for attr in ("tracks", "valid_anchors"):
        pd.testing.assert_frame_equal(
            getattr(built, attr).drop(columns="position"),
            getattr(loaded, attr).drop(columns="position"),
            check_exact=True,
            check_categorical=True,
        )
    assert list(loaded.tracks.columns) == list(built.tracks.columns)
    assert loaded.tracks.attrs == {} and isinstance(loaded.tracks.index, pd.RangeIndex)
    assert [p.zgroup.name for p in loaded.tracks["position"]] == [p.zgroup.name for p in built.tracks["position"]]
    for name in ("_fov_code", "_track_code", "_parent", "_sub_ptr", "_sub_idx", "_anchor_rows"):
        np.testing.assert_array_equal(getattr(built, name), getattr(loaded, name), err_msg=name)
    assert loaded.fov_keys == built.fov_keys and loaded._fov_shapes == built._fov_shapes
    rows = built.anchor_track_rows
    np.testing.assert_array_equal(
        built.sample_positives(rows, np.random.default_rng(0)), loaded.sample_positives(rows, np.random.default_rng(0))
    )
    assert built.summary() == loaded.summary()


def test_empty_index_not_cached(tmp_path):
    cfg = make_experiment(tmp_path, "exp", condition_wells={"c": ["A/1"]}, tracks=default_tracks().iloc[:0])
    idx = MultiExperimentIndex(ExperimentRegistry([cfg]), slice(0, 1), (32, 32), cache_dir=tmp_path / "cache")
    assert len(idx.tracks) == 0 and len(idx.valid_anchors) == 0
    assert not (tmp_path / "cache").exists() or list((tmp_path / "cache").iterdir()) == []


def test_cache_invalidated_by_tracks_and_parameters(two_exp, tmp_path):
    cache = tmp_path / "cache"
    built = MultiExperimentIndex(two_exp, slice(0, 2), (32, 32), cache_dir=cache)
    exp = two_exp.experiments[0]
    csv = next(pathlib.Path(exp.tracks_path).glob("A/1/0/*.csv"))
    df = pd.read_csv(csv).iloc[:-3]
    time.sleep(0.01)
    df.to_csv(csv, index=False)
    os.utime(csv)
    rebuilt = MultiExperimentIndex(two_exp, slice(0, 2), (32, 32), cache_dir=cache)
    assert len(rebuilt.tracks) == len(built.tracks) - 3
    # same size, new content: the modification time still changes the key
    df = pd.read_csv(csv)
    df["x"] = df["x"].iloc[::-1].to_numpy()
    df.to_csv(csv, index=False)
    os.utime(csv, ns=(csv.stat().st_atime_ns, csv.stat().st_mtime_ns + 10**9))
    again = MultiExperimentIndex(two_exp, slice(0, 2), (32, 32), cache_dir=cache)
    rows = again.tracks["fov_name"].to_numpy() == "A/1/0"
    rows &= again.tracks["experiment"].to_numpy() == exp.name
    np.testing.assert_array_equal(np.sort(again.tracks.loc[rows, "x"].to_numpy()), np.sort(df["x"].to_numpy()))
    MultiExperimentIndex(two_exp, slice(0, 2), (32, 32), tau_range_hours=(0.5, 1.0), cache_dir=cache)
    assert len(list(cache.glob("*.parquet"))) == 4


def test_cache_invalidated_by_experiments_file(tmp_path, monkeypatch):
    wells = {"uninfected": ["A/1"], "infected": ["B/1"]}
    cfg = make_experiment(tmp_path, "exp_a", condition_wells=wells, start_hpi=1.0)
    yaml_path = write_experiments_yaml(tmp_path / "experiments.yml", [cfg])
    cache = tmp_path / "cache"
    MultiExperimentIndex(ExperimentRegistry.from_yaml(yaml_path), slice(0, 1), (32, 32), cache_dir=cache)
    with monkeypatch.context() as m:  # unchanged file: read from the cache
        _no_build(m)
        MultiExperimentIndex(ExperimentRegistry.from_yaml(yaml_path), slice(0, 1), (32, 32), cache_dir=cache)
    # a new start time and swapped conditions in the experiments file must show in the reloaded table
    changed = dataclasses.replace(cfg, start_hpi=5.0, condition_wells={"uninfected": ["B/1"], "infected": ["A/1"]})
    write_experiments_yaml(yaml_path, [changed])
    idx = MultiExperimentIndex(ExperimentRegistry.from_yaml(yaml_path), slice(0, 1), (32, 32), cache_dir=cache)
    t0 = idx.tracks["t"].to_numpy() == 0
    np.testing.assert_allclose(idx.tracks.loc[t0, "hours_post_infection"].to_numpy(), 5.0)
    cond = dict(zip(idx.tracks["well_name"].astype(str), idx.tracks["condition"].astype(str)))
    assert cond == {"A/1": "infected", "B/1": "uninfected"}
    assert len(list(cache.glob("*.parquet"))) == 2


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),  # truncated
        lambda p: p.write_bytes(b"not a parquet file"),
        lambda p: p.write_bytes(b""),
        lambda p: pd.DataFrame({"a": [1, 2]}).to_parquet(p),  # valid parquet, not an index cache
    ],
    ids=["truncated", "garbage", "empty", "foreign"],
)
def test_corrupt_cache_rebuilt_with_warning(two_exp, tmp_path, caplog, damage):
    cache = tmp_path / "cache"
    built = MultiExperimentIndex(two_exp, slice(0, 2), (32, 32), cache_dir=cache)
    (path,) = cache.glob("*.parquet")
    damage(path)
    with caplog.at_level(logging.WARNING, logger="dynaclr.index"):
        rebuilt = MultiExperimentIndex(two_exp, slice(0, 2), (32, 32), cache_dir=cache)
    assert any("unreadable index cache" in r.getMessage() and path.name in r.getMessage() for r in caplog.records)
    pd.testing.assert_frame_equal(built.tracks.drop(columns="position"), rebuilt.tracks.drop(columns="position"))
    assert rebuilt.positions and all(p is not None for p in rebuilt.positions)
    # the rebuild rewrote a good cache
    loaded = MultiExperimentIndex(two_exp, slice(0, 2), (32, 32), cache_dir=cache)
    pd.testing.assert_frame_equal(built.tracks.drop(columns="position"), loaded.tracks.drop(columns="position"))
    assert list(cache.iterdir()) == [path]


def test_cache_renamed_to_another_key_rebuilt(two_exp, tmp_path, caplog):
    cache = tmp_path / "cache"
    MultiExperimentIndex(two_exp, slice(0, 2), (32, 32), cache_dir=cache)
    (path,) = cache.glob("*.parquet")
    idx = MultiExperimentIndex(two_exp, slice(0, 2), (32, 32), include_wells=["A/1"])
    path.rename(idx._cache_file(cache))
    with caplog.at_level(logging.WARNING, logger="dynaclr.index"):
        idx = MultiExperimentIndex(two_exp, slice(0, 2), (32, 32), include_wells=["A/1"], cache_dir=cache)
    assert any("not a version-2 index cache" in r.getMessage() for r in caplog.records)
    assert set(idx.tracks["well_name"].astype(str)) == {"A/1"}


def test_cache_of_a_vanished_fov_rebuilt(two_exp, tmp_path, monkeypatch, caplog):
    cache = tmp_path / "cache"
    built = MultiExperimentIndex(two_exp, slice(0, 2), (32, 32), cache_dir=cache)
    real = MultiExperimentIndex._open_positions

    def without_a2(self, exp):  # the plate lost FOV A/2/0 while its tracking CSV stayed
        return [(fov, pos) for fov, pos in real(self, exp) if fov != "A/2/0"]

    monkeypatch.setattr(MultiExperimentIndex, "_open_positions", without_a2)
    with caplog.at_level(logging.WARNING, logger="dynaclr.index"):
        idx = MultiExperimentIndex(two_exp, slice(0, 2), (32, 32), cache_dir=cache)
    assert any("no longer in the plates" in r.getMessage() for r in caplog.records)
    assert "A/2/0" in set(built.tracks["fov_name"].astype(str))
    assert "A/2/0" not in set(idx.tracks["fov_name"].astype(str))
    assert len(idx.positions) == len(idx.fov_keys) == len(built.fov_keys) - 2


def test_cache_write_is_atomic(two_exp, tmp_path, monkeypatch, caplog):
    cache = tmp_path / "cache"
    real = pd.DataFrame.to_parquet

    def half_written(self, path, *args, **kwargs):
        pathlib.Path(path).write_bytes(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", half_written)
    with caplog.at_level(logging.WARNING, logger="dynaclr.index"):
        idx = MultiExperimentIndex(two_exp, slice(0, 2), (32, 32), cache_dir=cache)
    assert len(idx.valid_anchors) > 0  # the index itself is fine
    assert any("disk full" in r.getMessage() for r in caplog.records)
    assert list(cache.iterdir()) == []  # neither the cache nor its temporary sibling
    monkeypatch.setattr(pd.DataFrame, "to_parquet", real)
    MultiExperimentIndex(two_exp, slice(0, 2), (32, 32), cache_dir=cache)
    assert [p.suffix for p in cache.iterdir()] == [".parquet"]


def test_cache_reserved_column_not_written(tmp_path, caplog):
    tracks = default_tracks()
    tracks["__dynaclr_fov_code"] = 1
    cfg = make_experiment(tmp_path, "exp", condition_wells={"c": ["A/1"]}, tracks=tracks)
    with caplog.at_level(logging.WARNING, logger="dynaclr.index"):
        idx = MultiExperimentIndex(ExperimentRegistry([cfg]), slice(0, 1), (32, 32), cache_dir=tmp_path / "cache")
    assert "__dynaclr_fov_code" in idx.tracks.columns
    assert any("reserved column" in r.getMessage() for r in caplog.records)
    assert not (tmp_path / "cache").exists() or list((tmp_path / "cache").iterdir()) == []


def test_default_tracks_anchor_count(tmp_path):
    idx = _index(tmp_path, default_tracks(n_t=12, n_tracks=2), tau=(0.5, 1.0))
    # each full track of 12 frames has anchors at t = 0..10
    assert len(idx.valid_anchors) == 2 * 11
