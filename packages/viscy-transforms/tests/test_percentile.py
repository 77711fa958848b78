import warnings

import numpy as np
import pytest
import torch
from monai.transforms import ScaleIntensityRangePercentiles

import viscy_transforms as vt
import viscy_transforms._percentile_scale as ps
from viscy_transforms._percentile_scale import (
    _order_statistics_kthvalue,
    _order_statistics_partition,
    batch_percentile,
    batch_percentiles,
)


def _rand(*shape, seed=0):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("q", [0, 1, 12.5, 50, 73.3, 99, 100])
@pytest.mark.parametrize("n", [1, 2, 7, 1000])
def test_batch_percentile_matches_numpy(q, n):
    rows = torch.randn(3, n, generator=torch.Generator().manual_seed(n), dtype=torch.float64)
    np.testing.assert_allclose(batch_percentile(rows, q).numpy(), np.percentile(rows.numpy(), q, axis=1), rtol=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_batch_percentiles_share_one_selection_and_match_numpy(seed):
    gen = torch.Generator().manual_seed(seed)
    n = int(torch.randint(1, 3000, (1,), generator=gen))
    rows = torch.randint(0, 50, (4, n), generator=gen).double()  # many ties
    qs = [float(q) for q in torch.rand(5, generator=gen) * 100] + [0.0, 50.0, 50.0, 100.0]
    out = batch_percentiles(rows, qs)
    assert out.shape == (len(qs), 4)
    np.testing.assert_allclose(out.numpy(), np.percentile(rows.numpy(), qs, axis=1), rtol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_partition_and_kthvalue_order_statistics_agree(dtype):
    rows = (torch.randn(6, 501, generator=torch.Generator().manual_seed(3)) * 4).round().to(dtype)  # ties
    ranks = [0, 7, 250, 251, 499, 500]
    expected = rows.sort(dim=1).values[:, ranks]
    for impl in (_order_statistics_partition, _order_statistics_kthvalue):
        out = impl(rows, ranks)
        assert out.dtype == dtype
        torch.testing.assert_close(out, expected, atol=0, rtol=0)


def test_percentile_input_is_not_modified():
    x = _rand(2, 1, 4, 8, 8)
    before = x.clone()
    vt.BatchedScaleIntensityRangePercentiles(5, 95, 0, 1)(x)
    torch.testing.assert_close(x, before, atol=0, rtol=0)


@pytest.mark.parametrize("channel_wise", [False, True])
@pytest.mark.parametrize("clip", [False, True])
@pytest.mark.parametrize("relative", [False, True])
def test_percentile_scaling_equals_monai_per_sample(channel_wise, clip, relative):
    x = _rand(3, 2, 4, 8, 8) * 10
    kwargs = dict(lower=5, upper=95, b_min=-1.0, b_max=2.0, clip=clip, relative=relative, channel_wise=channel_wise)
    out = vt.BatchedScaleIntensityRangePercentiles(**kwargs)(x)
    ref = torch.stack([ScaleIntensityRangePercentiles(**kwargs)(s).as_subclass(torch.Tensor) for s in x])
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("channel_wise", [False, True])
def test_median_maps_to_zero_and_p99_to_one(channel_wise):
    x = _rand(4, 2, 4, 16, 16)
    out = vt.BatchedScaleIntensityRangePercentilesd(["a"], 50, 99, 0, 1, channel_wise=channel_wise)({"a": x})["a"]
    rows = out.reshape(8, -1) if channel_wise else out.reshape(4, -1)
    torch.testing.assert_close(batch_percentile(rows, 50), torch.zeros(len(rows)), atol=1e-6, rtol=0)
    torch.testing.assert_close(batch_percentile(rows, 99), torch.ones(len(rows)), atol=1e-6, rtol=0)


def test_flat_sample_does_not_disable_the_rest_of_the_batch():
    x = _rand(3, 1, 4, 8, 8) * 10
    x[1] = 3.0
    with pytest.warns(UserWarning, match=r"Divide by zero.*\[1\]"):
        out = vt.BatchedScaleIntensityRangePercentiles(0, 100, 0, 1)(x)
    torch.testing.assert_close(out[1], torch.zeros_like(out[1]))  # shifted by -p_low (+ b_min = 0)
    for b in (0, 2):
        assert out[b].min().item() == pytest.approx(0.0) and out[b].max().item() == pytest.approx(1.0)


def test_no_warning_for_regular_input():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        vt.BatchedScaleIntensityRangePercentiles(1, 99, 0, 1)(_rand(2, 1, 4, 4, 4))


def test_volume_over_16m_voxels():
    x = torch.rand(1, 1, 17, 1000, 1000)  # 17 M voxels: torch.quantile refuses this
    out = vt.BatchedScaleIntensityRangePercentiles(0, 100, 0, 1)(x)
    assert out.min().item() == 0.0 and out.max().item() == 1.0


@pytest.mark.parametrize("shape", [(8, 8), (2, 8, 8), (1, 1, 1, 2, 8, 8)])
def test_wrong_rank_rejected(shape):
    with pytest.raises(ValueError, match="4-D or 5-D"):
        vt.BatchedScaleIntensityRangePercentiles(1, 99, 0, 1)(torch.rand(shape))


def test_4d_input_keeps_shape_dtype_and_non_contiguous_input():
    x = _rand(2, 1, 8, 8)
    assert vt.BatchedScaleIntensityRangePercentiles(1, 99, 0, 1)(x).shape == (2, 1, 8, 8)
    nc = _rand(2, 8, 8, 3).permute(0, 3, 1, 2)[:, :, None]
    assert not nc.is_contiguous()
    out = vt.BatchedScaleIntensityRangePercentiles(1, 99, 0, 1, dtype=torch.float64)(nc)
    assert out.dtype == torch.float64 and out.shape == nc.shape
    assert vt.BatchedScaleIntensityRangePercentiles(1, 99, 0, 1, dtype=None)(x.double()).dtype == torch.float64


def test_bad_arguments():
    with pytest.raises(ValueError, match="lower"):
        vt.BatchedScaleIntensityRangePercentiles(-1, 99, 0, 1)
    with pytest.raises(ValueError, match="relative"):
        vt.BatchedScaleIntensityRangePercentiles(1, 99, None, 1, relative=True)


# --- sample-then-select on CPU ------------------------------------------------------------------------------


@pytest.fixture
def small_sampling(monkeypatch):
    """Take the sampled path on rows of a few hundred values, with a sample of 64, so property tests stay fast."""
    monkeypatch.setattr(ps, "_MIN_SAMPLED_SIZE", 200)
    monkeypatch.setattr(ps, "_SAMPLE_SIZE", 64)
    monkeypatch.setattr(ps, "_SAMPLE_PER_SQRT_N", 0.0)
    monkeypatch.setattr(ps, "_CHUNK_SIZE", 128)  # several chunks per row


@pytest.fixture
def row_outcomes(monkeypatch):
    """Record, per row of the sampled path, whether its brackets held (True) or the fallback ran (False)."""
    outcomes = []
    inner = ps._row_order_statistics

    def spy(*args):
        out = inner(*args)
        outcomes.append(out is not None)
        return out

    monkeypatch.setattr(ps, "_row_order_statistics", spy)
    return outcomes


def _distribution(kind, r, n, rng):
    if kind == "uniform":
        return rng.random((r, n))
    if kind == "normal":
        return rng.normal(size=(r, n))
    if kind == "ties":
        return rng.integers(0, 4, (r, n)).astype(float)
    if kind == "quantised":
        return np.round(rng.normal(size=(r, n)), 1)
    if kind == "constant":
        return np.full((r, n), rng.normal())
    if kind == "mostly_zero":  # background-dominated image: the median is a huge tie
        return np.where(rng.random((r, n)) < 0.7, 0.0, rng.random((r, n)))
    if kind == "outliers":
        x = rng.random((r, n))
        x[:, rng.integers(0, n, 3)] = [1e30, -1e30, 1e12]
        return x
    if kind == "sorted":
        return np.sort(rng.random((r, n)), axis=1)
    if kind == "reversed":
        return np.sort(rng.random((r, n)), axis=1)[:, ::-1]
    if kind == "periodic":  # period 8: defeats a strided sample whose stride is a multiple of 8
        return np.tile(rng.random(8), (r, n // 8 + 1))[:, :n] + rng.random((r, 1))
    if kind == "infinite":
        x = rng.normal(size=(r, n))
        x[:, : n // 10] = np.inf
        x[:, n // 10 : n // 5] = -np.inf
        return x
    raise ValueError(kind)


KINDS = [
    "uniform",
    "normal",
    "ties",
    "quantised",
    "constant",
    "mostly_zero",
    "outliers",
    "sorted",
    "reversed",
    "periodic",
    "infinite",
]


@pytest.mark.parametrize("kind", KINDS)
def test_sampled_percentiles_equal_numpy_over_many_seeds(kind, small_sampling, row_outcomes):
    qs = [0.0, 1.0, 5.0, 33.3, 50.0, 99.0, 99.9, 100.0]
    for seed in range(20):
        rng = np.random.default_rng(seed)
        n = int(rng.integers(200, 1500))
        x = _distribution(kind, 4, n, rng)
        for dtype in (torch.float64, torch.float32):
            rows = torch.from_numpy(np.ascontiguousarray(x)).to(dtype)
            expected = np.percentile(rows.numpy().astype(np.float64), qs, axis=1)
            out = batch_percentiles(rows, qs)
            assert out.dtype == dtype
            # numpy interpolates between two equal infinities to NaN (inf - inf); we return the infinity
            keep = ~np.isnan(expected)
            np.testing.assert_allclose(
                out.double().numpy()[keep], expected[keep], rtol=1e-6 if dtype == torch.float32 else 1e-12
            )
            ranks = sorted({0, 1, n // 2, n // 2 + 1, n - 2, n - 1, int(rng.integers(0, n))})
            stats = ps._order_statistics_sampled(rows, ranks)
            np.testing.assert_array_equal(stats.numpy(), np.sort(rows.numpy(), axis=1)[:, ranks])
    assert row_outcomes, "the sampled path was not taken"
    if kind in ("uniform", "normal", "constant", "mostly_zero", "sorted", "reversed", "periodic"):
        # brackets hold (flat and background-dominated rows included) without the fallback
        assert all(row_outcomes), f"{row_outcomes.count(False)} of {len(row_outcomes)} rows fell back"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.int16, torch.uint8, torch.float16])
def test_default_sampled_path_equals_numpy_percentile(dtype, row_outcomes):
    gen = torch.Generator().manual_seed(7)
    n = ps._MIN_SAMPLED_SIZE + 123
    rows = (torch.randn(3, n, generator=gen, dtype=torch.float64) * 50 + 100).clamp(0, 255).to(dtype)
    qs = [0.0, 2.5, 50.0, 97.5, 99.0, 100.0]
    out = batch_percentiles(rows, qs)
    ref_rows = rows.float() if dtype not in (torch.float32, torch.float64) else rows
    np.testing.assert_allclose(
        out.double().numpy(), np.percentile(ref_rows.double().numpy(), qs, axis=1), rtol=1e-6, atol=0
    )
    assert len(row_outcomes) == 3 and all(row_outcomes)
    ranks = [0, n // 3, n // 2, n - 1]
    torch.testing.assert_close(
        ps._order_statistics_sampled(ref_rows, ranks), ref_rows.sort(dim=1).values[:, ranks], atol=0, rtol=0
    )


def test_fallback_rows_are_exact(small_sampling, monkeypatch, row_outcomes):
    # a one-sigma margin on a sample of 16: many brackets miss their rank and those rows are partitioned in full
    monkeypatch.setattr(ps, "_MARGIN_SIGMAS", 1.0)
    monkeypatch.setattr(ps, "_MARGIN_EXTRA", 0)
    monkeypatch.setattr(ps, "_SAMPLE_SIZE", 16)
    rows = torch.randn(16, 999, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ranks = [499, 500, 900]
    out = ps._order_statistics_sampled(rows, ranks)
    assert 0 < row_outcomes.count(True) < len(row_outcomes) == 16  # both paths taken in one batch
    torch.testing.assert_close(out, rows.sort(dim=1).values[:, ranks], atol=0, rtol=0)


def test_nan_rows_order_nan_last_like_partition(small_sampling, row_outcomes):
    rows = torch.rand(5, 600, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    rows[0, ::7] = float("nan")  # a few NaN: low ranks still finite
    rows[1] = float("nan")
    rows[2, :400] = float("nan")  # NaN majority: the sample's brackets are NaN
    ranks = [0, 100, 299, 300, 520, 599]
    expected = np.partition(rows.numpy(), ranks, axis=1)[:, ranks]
    np.testing.assert_array_equal(ps._order_statistics_sampled(rows, ranks).numpy(), expected)
    np.testing.assert_array_equal(ps._order_statistics(rows, ranks).numpy(), expected)
    assert row_outcomes.count(False) >= 2  # the all-NaN and NaN-majority rows were redone exactly


@pytest.mark.parametrize("threads", [1, 3])
def test_sampled_path_result_does_not_depend_on_thread_count(threads, small_sampling, monkeypatch):
    rows = torch.randn(7, 777, generator=torch.Generator().manual_seed(2))
    ranks = [10, 388, 389, 770]
    monkeypatch.setattr(ps.torch, "get_num_threads", lambda: threads)
    torch.testing.assert_close(
        ps._order_statistics_sampled(rows, ranks), rows.sort(dim=1).values[:, ranks], atol=0, rtol=0
    )


def test_brackets_cover_every_rank_and_are_disjoint():
    n, s = 100_000, 1000
    ranks = [0, 1, 49_999, 50_000, 98_999, 99_000, 99_999]
    brackets = ps._brackets(n, s, ranks)
    assert [k for _, _, ks in brackets for k in ks] == ranks
    for lo, hi, ks in brackets:
        assert -1 <= lo < hi <= s
        for k in ks:
            assert lo <= s * k / n <= hi  # the expected sample position of each rank is inside its bracket
    assert all(brackets[i][1] < brackets[i + 1][0] for i in range(len(brackets) - 1))
    assert brackets[0][0] == -1 and brackets[-1][1] == s  # extreme ranks get unbounded sides
