import importlib.util
import logging
import os
import pathlib
import sys
import time

import numpy as np
import pandas as pd
import pytest

from dynaclr.experiment import ExperimentRegistry
from dynaclr.index import MultiExperimentIndex, _resolve_roots


def _load_testdata():
    """Import the shared ``_mx_testdata`` helpers from this directory, once per session."""
    if "_mx_testdata" not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            "_mx_testdata", pathlib.Path(__file__).with_name("_mx_testdata.py")
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules["_mx_testdata"] = module
        spec.loader.exec_module(module)
    return sys.modules["_mx_testdata"]


_mx = _load_testdata()
default_tracks = _mx.default_tracks
make_experiment = _mx.make_experiment


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


def test_tau_zero_never_counts(tmp_path):
    rows = [(0, 0, 30, 30, -1), (1, 3, 30, 30, -1)]
    idx = _index(tmp_path, _tracks(rows), tau=(0.0, 0.0))
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


def test_cache_round_trip_and_invalidation(two_exp, tmp_path):
    cache = tmp_path / "cache"
    built = MultiExperimentIndex(two_exp, slice(0, 2), (32, 32), cache_dir=cache)
    files = list(cache.glob("*.npz"))
    assert len(files) == 1
    loaded = MultiExperimentIndex(two_exp, slice(0, 2), (32, 32), cache_dir=cache)
    pd.testing.assert_frame_equal(
        built.tracks.drop(columns="position"), loaded.tracks.drop(columns="position"), check_categorical=False
    )
    pd.testing.assert_frame_equal(
        built.valid_anchors.drop(columns="position"), loaded.valid_anchors.drop(columns="position")
    )
    assert [p.zgroup.name for p in loaded.tracks["position"].iloc[[0, -1]]] == [
        p.zgroup.name for p in built.tracks["position"].iloc[[0, -1]]
    ]
    rows = built.anchor_track_rows
    np.testing.assert_array_equal(
        built.sample_positives(rows, np.random.default_rng(0)), loaded.sample_positives(rows, np.random.default_rng(0))
    )
    # a changed tracking file or parameters -> a different cache entry
    exp = two_exp.experiments[0]
    csv = next(pathlib.Path(exp.tracks_path).glob("A/1/0/*.csv"))
    df = pd.read_csv(csv).iloc[:-3]
    time.sleep(0.01)
    df.to_csv(csv, index=False)
    os.utime(csv)
    rebuilt = MultiExperimentIndex(two_exp, slice(0, 2), (32, 32), cache_dir=cache)
    assert len(rebuilt.tracks) == len(built.tracks) - 3
    MultiExperimentIndex(two_exp, slice(0, 2), (32, 32), tau_range_hours=(0.5, 1.0), cache_dir=cache)
    assert len(list(cache.glob("*.npz"))) == 3


def test_default_tracks_anchor_count(tmp_path):
    idx = _index(tmp_path, default_tracks(n_t=12, n_tracks=2), tau=(0.5, 1.0))
    # each full track of 12 frames has anchors at t = 0..10
    assert len(idx.valid_anchors) == 2 * 11
