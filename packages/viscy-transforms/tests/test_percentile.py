import warnings

import numpy as np
import pytest
import torch
from monai.transforms import ScaleIntensityRangePercentiles

import viscy_transforms as vt
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
