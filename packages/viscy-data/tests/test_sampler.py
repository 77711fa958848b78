import logging

import numpy as np
import pandas as pd
import pytest

from viscy_data.sampler import FlexibleBatchSampler


def _anchors(sizes=None, seed=0, infected_fraction=0.5):
    sizes = sizes or {"exp_a": 600, "exp_b": 400}
    rng = np.random.default_rng(seed)
    frames = []
    for exp, n in sizes.items():
        frames.append(
            pd.DataFrame(
                {
                    "experiment": exp,
                    "condition": np.where(rng.random(n) < infected_fraction, "infected", "uninfected"),
                    "hours_post_infection": rng.integers(0, 48, n) * 0.5,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def _all(sampler):
    return [b for b in sampler]


def test_protocol_lengths_and_types():
    df = _anchors()
    s = FlexibleBatchSampler(df, batch_size=64)
    batches = _all(s)
    assert len(batches) == len(s) == 1000 // 64
    assert all(isinstance(b, list) and len(b) == 64 and all(type(i) is int for i in b) for b in batches)
    assert all(0 <= i < 1000 for b in batches for i in b)
    assert all(len(set(b)) == 64 for b in batches)  # no replacement within a batch


def test_experiment_aware_purity_and_coverage():
    df = _anchors()
    batches = _all(FlexibleBatchSampler(df, batch_size=32, condition_balanced=False))
    exps = [set(df.loc[b, "experiment"]) for b in batches]
    assert all(len(e) == 1 for e in exps)
    assert {next(iter(e)) for e in exps} == {"exp_a", "exp_b"}
    mixed = _all(FlexibleBatchSampler(df, batch_size=32, experiment_aware=False, condition_balanced=False))
    assert any(len(set(df.loc[b, "experiment"])) == 2 for b in mixed)


def test_experiment_weights():
    df = _anchors()
    batches = _all(FlexibleBatchSampler(df, batch_size=16, experiment_weights={"exp_b": 1.0}))
    assert all(set(df.loc[b, "experiment"]) == {"exp_b"} for b in batches)
    with pytest.raises(ValueError, match="no weight"):
        FlexibleBatchSampler(df, batch_size=16, experiment_weights={"nope": 1.0})


@pytest.mark.parametrize("seed", range(3))
def test_condition_balance_two_and_three(seed):
    df = _anchors(infected_fraction=0.1, seed=seed)
    batches = _all(FlexibleBatchSampler(df, batch_size=40, seed=seed))
    frac = np.mean([np.mean(df.loc[b, "condition"] == "infected") for b in batches])
    assert frac == pytest.approx(0.5, abs=0.03)
    df["condition"] = np.random.default_rng(seed).choice(["a", "b", "c"], len(df), p=[0.7, 0.2, 0.1])
    s = FlexibleBatchSampler(df, batch_size=30, condition_ratio={"a": 0.5, "b": 0.3, "c": 0.2})
    counts = np.mean([df.loc[b, "condition"].value_counts().reindex(["a", "b", "c"]).to_numpy() for b in s], axis=0)
    np.testing.assert_allclose(counts, [15, 9, 6], atol=0.01)


def test_leak():
    df = _anchors()
    for b in FlexibleBatchSampler(df, batch_size=10, leaky=0.0):
        assert df.loc[b, "experiment"].nunique() == 1
    leaked = 0
    for b in FlexibleBatchSampler(df, batch_size=10, leaky=0.2, condition_balanced=False):
        main = df.loc[b[:8], "experiment"]
        assert main.nunique() == 1 and len(b) == 10
        assert (df.loc[b[8:], "experiment"] != main.iloc[0]).all()
        leaked += 2
    assert leaked > 0
    for b in FlexibleBatchSampler(df, batch_size=10, leaky=0.2, experiment_aware=False):
        assert len(b) == 10


def test_leak_with_one_experiment_and_tiny_others():
    df = _anchors({"only": 200})
    batches = _all(FlexibleBatchSampler(df, batch_size=20, leaky=0.5))
    assert all(len(b) == 20 for b in batches)
    df = _anchors({"big": 300, "tiny": 3})
    batches = _all(FlexibleBatchSampler(df, batch_size=20, leaky=0.5, experiment_weights={"big": 1}))
    assert all(len(b) == 20 for b in batches)
    assert all(set(df.loc[b[10:], "experiment"]) == {"tiny"} for b in batches)


def test_small_group_warns_and_uses_replacement(caplog):
    df = _anchors({"big": 500, "small": 5})
    with caplog.at_level(logging.WARNING, logger="viscy_data.sampler"):
        s = FlexibleBatchSampler(df, batch_size=32, experiment_weights={"small": 1})
    assert "fewer than batch_size" in caplog.text and "replacement" in caplog.text and "small" in caplog.text
    batches = _all(s)
    assert all(len(b) == 32 and set(df.loc[b, "experiment"]) == {"small"} for b in batches)


def test_determinism_and_epochs():
    df = _anchors()
    a, b = FlexibleBatchSampler(df, 32, seed=3), FlexibleBatchSampler(df, 32, seed=3)
    assert _all(a) == _all(b)
    first = _all(a)
    a.set_epoch(1)
    assert _all(a) != first
    a.set_epoch(0)
    assert _all(a) == first
    assert _all(FlexibleBatchSampler(df, 32, seed=4)) != first


@pytest.mark.parametrize("n,bs,world", [(800, 32, 2), (25 * 16, 16, 2), (1000, 64, 3), (100, 64, 4)])
def test_ddp_ranks_equal_length_disjoint(n, bs, world):
    df = _anchors({"a": n // 2, "b": n - n // 2})
    per_rank = [_all(FlexibleBatchSampler(df, bs, num_replicas=world, rank=r, seed=1)) for r in range(world)]
    expected = -(-(n // bs) // world)
    assert all(len(r) == expected == len(FlexibleBatchSampler(df, bs, num_replicas=world, rank=0)) for r in per_rank)
    assert all(len(b) == bs for rank in per_rank for b in rank)
    # every rank draws its own stream: no batch is repeated across (or within) ranks
    flat = [tuple(b) for rank in per_rank for b in rank]
    assert len(set(flat)) == len(flat)
    # and each rank is reproducible
    assert per_rank[world - 1] == _all(FlexibleBatchSampler(df, bs, num_replicas=world, rank=world - 1, seed=1))


@pytest.mark.parametrize("world", [1, 2, 3])
def test_ddp_drop_last_false_partial_batch_on_one_rank(world):
    df = _anchors({"a": 100})
    samplers = [FlexibleBatchSampler(df, 32, drop_last=False, num_replicas=world, rank=r) for r in range(world)]
    sizes = [[len(b) for b in s] for s in samplers]
    assert all(len(s) == -(-4 // world) for s in sizes)
    assert sorted(x for s in sizes for x in s).count(4) == 1


@pytest.mark.parametrize("block_size", [1, 3, 256])
def test_block_size_does_not_change_behaviour(block_size):
    df = _anchors()
    s = FlexibleBatchSampler(df, 16, leaky=0.25, temporal_enrichment=True, block_size=block_size, drop_last=False)
    batches = _all(s)
    assert [len(b) for b in batches] == [16] * 62 + [8]
    assert all(len(set(b)) == len(b) for b in batches)
    for b in batches[:-1]:
        assert df.loc[b[:12], "experiment"].nunique() == 1
        assert (df.loc[b[12:], "experiment"] != df.loc[b[0], "experiment"]).all()
    with pytest.raises(ValueError, match="block_size"):
        FlexibleBatchSampler(df, 16, block_size=0)


def test_rank_validation():
    with pytest.raises(ValueError, match="rank"):
        FlexibleBatchSampler(_anchors(), 8, num_replicas=2, rank=2)


def test_drop_last_false_yields_partial_batch():
    df = _anchors({"a": 100})
    s = FlexibleBatchSampler(df, batch_size=32, drop_last=False)
    sizes = [len(b) for b in s]
    assert sizes == [32, 32, 32, 4] and len(s) == 4
    assert [len(b) for b in FlexibleBatchSampler(df, batch_size=32)] == [32, 32, 32]


def test_temporal_enrichment_concentrates():
    df = _anchors({"a": 4000}, infected_fraction=0.5)
    s = FlexibleBatchSampler(
        df,
        64,
        temporal_enrichment=True,
        temporal_window_hours=2.0,
        temporal_global_fraction=0.3,
        condition_balanced=False,
    )
    fracs = []
    for b in s:
        h = df.loc[b, "hours_post_infection"].to_numpy()
        fracs.append(max(np.mean(np.abs(h - c) <= 2.0) for c in np.unique(h)))
    assert np.mean(fracs) >= 0.55
    s0 = FlexibleBatchSampler(df, 64, temporal_enrichment=True, temporal_global_fraction=0.0)
    for b in s0:
        h = df.loc[b, "hours_post_infection"]
        assert h.max() - h.min() <= 4.01
    assert all(
        len(b) == 64 for b in FlexibleBatchSampler(df, 64, temporal_enrichment=True, temporal_global_fraction=1.0)
    )


@pytest.mark.parametrize("seed", range(3))
def test_temporal_and_condition_balance_compose(seed):
    df = _anchors({"a": 3000}, infected_fraction=0.1, seed=seed)
    s = FlexibleBatchSampler(
        df, 50, temporal_enrichment=True, condition_balanced=True, temporal_global_fraction=0.0, seed=seed
    )
    fracs = []
    for b in s:
        assert len(b) == 50
        fracs.append(np.mean(df.loc[b, "condition"] == "infected"))
        h = df.loc[b, "hours_post_infection"]
        assert h.max() - h.min() <= 4.01
    assert np.mean(fracs) == pytest.approx(0.5, abs=0.03)


def test_missing_columns_and_index():
    df = _anchors()
    with pytest.raises(ValueError, match="'hours_post_infection'.*experiment"):
        FlexibleBatchSampler(df.drop(columns="hours_post_infection"), 8, temporal_enrichment=True)
    with pytest.raises(ValueError, match="'condition'"):
        FlexibleBatchSampler(df.drop(columns="condition"), 8)
    with pytest.raises(ValueError, match="'experiment'"):
        FlexibleBatchSampler(df.drop(columns="experiment"), 8)
    FlexibleBatchSampler(
        df.drop(columns=["experiment", "condition"]), 8, experiment_aware=False, condition_balanced=False
    )
    with pytest.raises(ValueError, match="0..N-1"):
        FlexibleBatchSampler(df.iloc[::2], 8)


def test_lazy_first_batch(monkeypatch):
    df = _anchors({"a": 5000, "b": 5000})
    s = FlexibleBatchSampler(df, 16, temporal_enrichment=True, block_size=8)
    calls = []
    original = s._block
    monkeypatch.setattr(s, "_block", lambda *args: calls.append(args) or original(*args))
    it = iter(s)
    first = next(it)
    assert calls == [(0, 0, 8)] and len(first) == 16
    assert len(list(it)) == len(s) - 1 and len(calls) == -(-len(s) // 8)


@pytest.mark.parametrize("seed", range(5))
def test_draw_rows_uniform_without_replacement(seed):
    from viscy_data.sampler import _draw_rows

    rng = np.random.default_rng(seed)
    m = np.array([10, 25, 40, 1000, 3, 10] * 2000)
    k = 6
    j = _draw_rows(rng, m, k)
    assert j.shape == (m.size, k) and j.min() >= 0 and (j < m[:, None]).all()
    distinct = np.array([len(set(r)) for r in j.tolist()])
    assert (distinct[m >= k] == k).all()  # no replacement whenever the pool is large enough
    assert (distinct[m < k] <= 3).all()
    # every offset equally likely: dense (m=10, 25) and sparse (m=40, 1000) paths
    for size in (10, 25, 40):
        counts = np.bincount(j[m == size].ravel(), minlength=size)
        expected = counts.sum() / size
        assert np.abs(counts - expected).max() < 5 * np.sqrt(expected)
    top = j[m == 1000]
    assert abs(top.mean() - 499.5) < 5 * 289 / np.sqrt(top.size)


def test_package_export():
    import viscy_data

    assert viscy_data.FlexibleBatchSampler is FlexibleBatchSampler
    assert "FlexibleBatchSampler" in viscy_data.__all__
