import numpy as np
import pytest
import torch

from viscy_data.norm_meta import STATISTICS, compute_statistics, merge_norm_meta, read_norm_meta, select_timepoint


def test_compute_statistics_matches_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=(4, 5, 6))
    x[0, 0, 0] = np.nan
    stats = compute_statistics(x)
    assert tuple(stats) == STATISTICS
    assert stats["mean"] == pytest.approx(np.nanmean(x))
    assert stats["std"] == pytest.approx(np.nanstd(x))
    p = np.nanpercentile(x, [1, 5, 25, 50, 75, 95, 99])
    assert stats["median"] == pytest.approx(p[3])
    assert stats["iqr"] == pytest.approx(p[4] - p[2])
    assert stats["p99_p1"] == pytest.approx(p[6] - p[0])
    assert all(isinstance(v, float) for v in stats.values())


def test_compute_statistics_rejects_empty():
    with pytest.raises(ValueError, match="empty"):
        compute_statistics(np.array([]))


def test_read_norm_meta_converts_nested_levels():
    attrs = {
        "normalization": {
            "GFP": {
                "fov_statistics": {"mean": 1, "std": 2.0},
                "timepoint_statistics": {"0": {"mean": 3.0}, "1": {"mean": 4.0}},
            }
        }
    }
    meta = read_norm_meta(attrs)
    assert meta["GFP"]["fov_statistics"]["std"].dtype == torch.float32
    assert meta["GFP"]["fov_statistics"]["std"].ndim == 0
    assert float(meta["GFP"]["timepoint_statistics"]["1"]["mean"]) == 4.0
    assert read_norm_meta({}) is None
    flat = select_timepoint(meta, 1)
    assert float(flat["GFP"]["timepoint_statistics"]["mean"]) == 4.0
    assert "timepoint_statistics" not in select_timepoint(meta, 7)["GFP"]


def test_read_norm_meta_names_bad_leaf():
    with pytest.raises(TypeError, match="normalization/GFP/fov_statistics/mean"):
        read_norm_meta({"normalization": {"GFP": {"fov_statistics": {"mean": "x"}}}})


def test_merge_keeps_siblings_and_replaces_levels():
    existing = {"A": {"fov_statistics": {"mean": 1.0}}, "B": {"timepoint_statistics": {"0": {}, "9": {}}}}
    merged = merge_norm_meta(existing, {"B": {"timepoint_statistics": {"0": {"mean": 2.0}}}})
    assert merged["A"] == existing["A"]
    assert set(merged["B"]["timepoint_statistics"]) == {"0"}
    with pytest.raises(ValueError, match="bogus"):
        merge_norm_meta(None, {"A": {"bogus": {}}})


@pytest.mark.parametrize("seed", range(5))
def test_collate_norm_meta_equals_stacking_every_sample(seed):
    """Shared per-FOV dicts are collated once and spread: the result is what stacking each sample gives."""
    import torch

    from viscy_data.norm_meta import collate_norm_meta

    rng = np.random.default_rng(seed)

    def fov_meta(with_extra: bool) -> dict:
        level = {k: torch.tensor(float(v)) for k, v in zip(("mean", "std"), rng.normal(size=2))}
        meta = {"ch_0": {"fov_statistics": level, "dataset_statistics": dict(level)}}
        if with_extra:
            meta["ch_0"]["extra_level"] = {"mean": torch.tensor(1.0)}
        return meta

    fovs = [fov_meta(bool(rng.integers(2))) for _ in range(int(rng.integers(1, 5)))]
    picks = rng.integers(len(fovs), size=int(rng.integers(1, 12))).tolist()
    samples = [fovs[i] for i in picks]
    if rng.integers(2):  # an equal dict that is another object is collated as its own
        samples.append({c: {lv: dict(st) for lv, st in levels.items()} for c, levels in fovs[0].items()})
    out = collate_norm_meta(samples)
    common = [lv for lv in samples[0]["ch_0"] if all(lv in s["ch_0"] for s in samples)]
    assert sorted(out["ch_0"]) == sorted(common)
    for level in common:
        for stat in out["ch_0"][level]:
            expected = torch.stack([s["ch_0"][level][stat] for s in samples])
            assert torch.equal(out["ch_0"][level][stat], expected)
    numbers = collate_norm_meta([{"a": {"l": {"mean": 1.5}}}, {"a": {"l": {"mean": 2}}}])
    assert numbers["a"]["l"]["mean"].dtype == torch.float32 and numbers["a"]["l"]["mean"].tolist() == [1.5, 2.0]
    # statistics of different dtypes keep their own (no promotion across statistics)
    mixed = {"a": {"x": torch.tensor(1.0), "y": torch.tensor(2.0, dtype=torch.float64)}}
    out = collate_norm_meta(
        [mixed, mixed, {"a": {"x": torch.tensor(3.0), "y": torch.tensor(4.0, dtype=torch.float64)}}]
    )
    assert out["a"]["x"].dtype == torch.float32 and out["a"]["x"].tolist() == [1.0, 1.0, 3.0]
    assert out["a"]["y"].dtype == torch.float64 and out["a"]["y"].tolist() == [2.0, 2.0, 4.0]
