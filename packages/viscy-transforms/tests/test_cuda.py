"""CUDA runs of every batched transform: device kept, and the same parameters give the CPU result."""

import math

import pytest
import torch

import viscy_transforms as vt

pytestmark = pytest.mark.cuda

KEYS = ["source", "target"]
DETERMINISTIC = [
    vt.BatchedCenterSpatialCropd(KEYS, (4, 8, 8)),
    vt.BatchedZoomd(KEYS, 0.5, "area"),
    vt.BatchedScaleIntensityRangePercentilesd(KEYS, 1, 99, 0, 1),
]
RANDOM = [
    vt.BatchedRandAdjustContrastd(KEYS, prob=0.5),
    vt.BatchedRandScaleIntensityd(KEYS, prob=0.5),
    vt.BatchedRandGaussianNoised(KEYS, prob=0.5),
    vt.BatchedRandGaussianSmoothd(KEYS, prob=0.5),
    vt.BatchedRandFlipd(KEYS, prob=0.5),
    vt.BatchedRandAffined(KEYS, prob=0.5, rotate_range=[math.pi, 0, 0], scale_range=(0.8, 1.2)),
    vt.BatchedRand3DElasticd(KEYS, (1, 2), (1, 2), prob=0.5),
    vt.BatchedRandHistogramShiftd(KEYS, prob=0.5),
    vt.BatchedRandSharpend(KEYS, prob=0.5),
    vt.BatchedRandLocalPixelShufflingd(KEYS, prob=0.5),
    vt.BatchedRandZStackShiftd(KEYS, prob=0.5),
    vt.BatchedRandSpatialCropd(KEYS, (4, 8, 8)),
]


def _batch(device):
    x = torch.rand(8, 2, 8, 16, 16, generator=torch.Generator().manual_seed(0)).to(device)
    return {"source": x, "target": x.clone()}


@pytest.mark.parametrize("t", DETERMINISTIC, ids=lambda t: type(t).__name__)
def test_deterministic_cuda_matches_cpu(t):
    cpu = t(_batch("cpu"))["source"]
    gpu = t(_batch("cuda"))["source"]
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("t", RANDOM, ids=lambda t: type(t).__name__)
def test_random_cuda_keeps_device_dtype_and_aligns_keys(t):
    for dtype in (torch.float32, torch.float16):
        data = {k: v.to(dtype) for k, v in _batch("cuda").items()}
        torch.manual_seed(0)
        out = t(data)
        assert out["source"].device.type == "cuda" and out["source"].dtype == dtype
        torch.testing.assert_close(out["source"], out["target"], rtol=0, atol=0)
        t.set_random_state(3)
        a = t(data)["source"]
        t.set_random_state(3)
        torch.testing.assert_close(t(data)["source"], a, rtol=0, atol=0)
        t.set_random_state()
