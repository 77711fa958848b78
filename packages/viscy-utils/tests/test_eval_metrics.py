import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from viscy_utils.evaluation.metrics import (
    POD_metric,
    VOI_metric,
    labels_to_detection,
    labels_to_masks,
    mean_average_precision,
    ms_ssim_25d,
    ssim_25d,
)


def _two_squares(shift=0):
    img = np.zeros((40, 40), dtype=np.int64)
    img[5:15, 5:15] = 1
    img[25 + shift : 35 + shift, 20:30] = 2
    return img


def test_voi_identical_and_known_value():
    a = _two_squares() > 0
    assert VOI_metric(a, a) == [pytest.approx(0.0)]
    # independent halves: target = left half, prediction = top half -> H(T|P) = H(P|T) = 1 bit
    t = np.zeros((4, 4), bool)
    t[:, :2] = True
    p = np.zeros((4, 4), bool)
    p[:2] = True
    assert VOI_metric(t, p) == [pytest.approx(2.0)]
    with pytest.raises(ValueError, match="shape"):
        VOI_metric(t, p[:2])


def test_pod_metric_counts():
    target = _two_squares() > 0
    pred = target.copy()
    pred[0:3, 35:38] = True  # one extra (false positive) object
    tp, fp, fn, precision, recall, f1 = POD_metric(target, pred)
    assert (tp, fp, fn) == (2, 1, 0)
    assert precision == pytest.approx(2 / 3) and recall == 1.0 and f1 == pytest.approx(0.8)
    # a prediction displaced far beyond half the object size does not match
    far = _two_squares(shift=-20) > 0
    tp, fp, fn, *_ = POD_metric(target, far)
    assert (tp, fp, fn) == (1, 1, 1)
    # no objects at all: no division by zero
    assert POD_metric(np.zeros((5, 5)), np.zeros((5, 5))) == [0, 0, 0, 0.0, 0.0, 0.0]


def test_labels_to_masks_and_detection():
    labels = torch.from_numpy(_two_squares())
    masks = labels_to_masks(labels)
    assert masks.shape == (2, 40, 40) and masks.dtype == torch.bool
    assert masks[0].sum() == 100 and masks[1][30, 25]
    det = labels_to_detection(labels)
    torch.testing.assert_close(det["boxes"], torch.tensor([[5.0, 5.0, 14.0, 14.0], [20.0, 25.0, 29.0, 34.0]]))
    assert det["scores"].dtype == torch.float32 and det["labels"].dtype == torch.uint8
    assert det["labels"].tolist() == [0, 0]
    with pytest.raises(ValueError, match="2-D"):
        labels_to_masks(labels[None])
    assert labels_to_detection(torch.zeros(4, 4, dtype=torch.int64))["boxes"].shape == (0, 4)


def test_mean_average_precision():
    labels = torch.from_numpy(_two_squares())
    perfect = mean_average_precision(labels, labels)
    assert perfect["map"].item() == pytest.approx(1.0)
    half = mean_average_precision(torch.from_numpy(_two_squares(shift=-20)), labels)
    assert half["map"].item() < 0.6


def test_ssim_25d_matches_skimage_for_single_slice():
    rng = np.random.default_rng(0)
    target = rng.random((32, 40))
    pred = target + 0.1 * rng.normal(size=target.shape)
    expected = structural_similarity(
        pred, target, win_size=11, data_range=target.max(), gaussian_weights=False, use_sample_covariance=False
    )
    got = ssim_25d(torch.from_numpy(pred)[None, None, None], torch.from_numpy(target)[None, None, None])
    assert got.shape == (1,) and got.dtype == torch.float64
    assert got.item() == pytest.approx(expected, abs=1e-8)


def test_ssim_25d_properties_and_errors():
    rng = torch.Generator().manual_seed(0)
    x = torch.rand(3, 2, 5, 24, 24, generator=rng)
    ssim, cs = ssim_25d(x, x, return_contrast_sensitivity=True)
    torch.testing.assert_close(ssim, torch.ones(3))
    torch.testing.assert_close(cs, torch.ones(3))
    noisy = ssim_25d(x + 0.3 * torch.rand(x.shape, generator=rng), x)
    assert (noisy < 0.95).all()
    with pytest.raises(ValueError, match="5-D"):
        ssim_25d(x[0], x[0])
    with pytest.warns(UserWarning, match="16 slices"):
        ssim_25d(torch.rand(1, 1, 16, 12, 12), torch.rand(1, 1, 16, 12, 12))


def test_ms_ssim_25d():
    rng = torch.Generator().manual_seed(1)
    x = torch.rand(2, 1, 3, 176, 176, generator=rng)
    assert ms_ssim_25d(x, x).item() == pytest.approx(1.0, abs=1e-5)
    noisy = ms_ssim_25d(x + 0.5 * torch.rand(x.shape, generator=rng), x, clamp=True)
    assert 0.0 < noisy.item() < 0.99
    # three scales need only 44 pixels
    small = torch.rand(1, 1, 2, 44, 44, generator=rng)
    assert ms_ssim_25d(small, small, betas=(0.3, 0.3, 0.4)).item() == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="at least 176"):
        ms_ssim_25d(small, small)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_metrics_and_distances_on_cuda():
    from scipy.spatial.distance import cdist

    from viscy_utils.evaluation.clustering import pairwise_distance_matrix

    x = np.random.default_rng(0).normal(size=(300, 8))
    np.testing.assert_allclose(pairwise_distance_matrix(x, "cosine", "cuda"), cdist(x, x, "cosine"), atol=1e-10)
    cpu = torch.rand(2, 1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    noisy = cpu + 0.1
    gpu_ssim = ssim_25d(noisy.cuda(), cpu.cuda())
    assert gpu_ssim.device.type == "cuda"
    torch.testing.assert_close(gpu_ssim.cpu(), ssim_25d(noisy, cpu))
    labels = torch.from_numpy(_two_squares()).cuda()
    det = labels_to_detection(labels)
    assert det["boxes"].device.type == "cuda" and det["masks"].shape == (2, 40, 40)
