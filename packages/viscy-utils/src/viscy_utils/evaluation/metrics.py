"""Segmentation and image-quality metrics: VOI, object detection, mAP and 2.5-D (MS-)SSIM."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist
from skimage.measure import label, regionprops_table

__all__ = [
    "POD_metric",
    "VOI_metric",
    "labels_to_detection",
    "labels_to_masks",
    "mean_average_precision",
    "ms_ssim_25d",
    "ssim_25d",
]


def _entropy_bits(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-np.sum(p * np.log2(p)))


def VOI_metric(target: np.ndarray, prediction: np.ndarray) -> list[float]:  # noqa: N802 (public name)
    """Variation of information between two binarised masks (values > 0 are foreground).

    Parameters
    ----------
    target, prediction : numpy.ndarray
        Arrays of equal shape.

    Returns
    -------
    list of float
        ``[H(target | prediction) + H(prediction | target)]`` in bits (0 for identical masks).
    """
    target = np.asarray(target) > 0
    prediction = np.asarray(prediction) > 0
    if target.shape != prediction.shape:
        raise ValueError(f"target shape {target.shape} differs from prediction shape {prediction.shape}")
    joint = np.bincount(target.ravel().astype(np.int64) * 2 + prediction.ravel(), minlength=4).astype(np.float64)
    h_joint = _entropy_bits(joint)
    h_target = _entropy_bits(joint.reshape(2, 2).sum(axis=1))
    h_pred = _entropy_bits(joint.reshape(2, 2).sum(axis=0))
    return [2 * h_joint - h_target - h_pred]


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator > 0 else 0.0


def POD_metric(target_bin: np.ndarray, pred_bin: np.ndarray) -> list[float]:  # noqa: N802 (public name)
    """Object detection agreement between two binary masks.

    Connected components are matched one-to-one (Hungarian algorithm on centroid distance); a match
    counts when the centroids are at most half the mean major-axis length of the target objects apart.

    Parameters
    ----------
    target_bin, pred_bin : numpy.ndarray
        Binary masks (2-D or 3-D) of equal shape.

    Returns
    -------
    list of float
        ``[tp, fp, fn, precision, recall, f1]``; ratios are 0 when their denominator is 0 (no objects).
    """
    target_labels = label(np.asarray(target_bin) > 0)
    pred_labels = label(np.asarray(pred_bin) > 0)
    target_props = regionprops_table(target_labels, properties=("centroid", "axis_major_length"))
    pred_props = regionprops_table(pred_labels, properties=("centroid",))
    target_centroids = np.stack([v for k, v in target_props.items() if k.startswith("centroid")], axis=1)
    pred_centroids = np.stack([v for k, v in pred_props.items() if k.startswith("centroid")], axis=1)
    n_target, n_pred = len(target_centroids), len(pred_centroids)
    tp = 0
    if n_target and n_pred:
        distance = cdist(target_centroids, pred_centroids)
        rows, cols = linear_sum_assignment(distance)
        threshold = np.mean(target_props["axis_major_length"]) / 2
        tp = int(np.sum(distance[rows, cols] <= threshold))
    fp, fn = n_pred - tp, n_target - tp
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    f1 = _ratio(2 * precision * recall, precision + recall)
    return [tp, fp, fn, precision, recall, f1]


def labels_to_masks(labels: torch.Tensor) -> torch.Tensor:
    """One boolean mask per non-zero label of a 2-D label image.

    Parameters
    ----------
    labels : torch.Tensor
        Integer label image ``(H, W)``; 0 is background.

    Returns
    -------
    torch.Tensor
        Boolean ``(N, H, W)``, masks in increasing label order.
    """
    if labels.ndim != 2:
        raise ValueError(f"labels must be a 2-D (H, W) label image, got shape {tuple(labels.shape)}")
    ids = torch.unique(labels)
    ids = ids[ids != 0]
    return labels.unsqueeze(0) == ids.view(-1, 1, 1)


def labels_to_detection(labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """Build the detection dictionary (torchmetrics format) of a 2-D label image.

    Returns
    -------
    dict
        ``boxes`` (N, 4) xyxy float, ``scores`` ones (float32), ``labels`` zeros (uint8), ``masks``
        (N, H, W) bool.
    """
    masks = labels_to_masks(labels)
    n = masks.shape[0]
    boxes = torch.zeros((n, 4), dtype=torch.float32, device=labels.device)
    if n:
        rows = masks.any(dim=2)  # (N, H)
        cols = masks.any(dim=1)  # (N, W)
        ys = torch.arange(labels.shape[0], device=labels.device)
        xs = torch.arange(labels.shape[1], device=labels.device)
        big = max(labels.shape)
        boxes[:, 0] = torch.where(cols, xs, big).amin(dim=1)
        boxes[:, 1] = torch.where(rows, ys, big).amin(dim=1)
        boxes[:, 2] = torch.where(cols, xs, -1).amax(dim=1)
        boxes[:, 3] = torch.where(rows, ys, -1).amax(dim=1)
    return {
        "boxes": boxes,
        "scores": torch.ones(n, dtype=torch.float32, device=labels.device),
        "labels": torch.zeros(n, dtype=torch.uint8, device=labels.device),
        "masks": masks,
    }


def mean_average_precision(pred_labels: torch.Tensor, target_labels: torch.Tensor, **kwargs: Any) -> dict:
    """COCO-style mean average precision between two 2-D label images (torchmetrics).

    Parameters
    ----------
    pred_labels, target_labels : torch.Tensor
        Integer label images ``(H, W)``.
    **kwargs
        Override ``MeanAveragePrecision`` arguments (defaults: ``iou_type="segm"``,
        ``box_format="xyxy"``, ``max_detection_thresholds=[1, 100, 10000]``).

    Returns
    -------
    dict
        The torchmetrics result (``map``, ``map_50``, ``mar_100``, ...).
    """
    from torchmetrics.detection import MeanAveragePrecision

    options = {"iou_type": "segm", "box_format": "xyxy", "max_detection_thresholds": [1, 100, 10000], **kwargs}
    metric = MeanAveragePrecision(**options)
    metric.update([labels_to_detection(pred_labels)], [labels_to_detection(target_labels)])
    return metric.compute()


def ssim_25d(
    preds: torch.Tensor,
    target: torch.Tensor,
    in_plane_window_size: tuple[int, int] = (11, 11),
    return_contrast_sensitivity: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """SSIM of 3-D stacks with a window covering the whole depth (2.5-D).

    A uniform ``(D, wy, wx)`` window slides over Y and X only (valid positions); the data range is
    ``target.max()``.

    Parameters
    ----------
    preds, target : torch.Tensor
        ``(B, C, D, H, W)``.
    in_plane_window_size : tuple of int
        Window size in Y and X.
    return_contrast_sensitivity : bool
        Also return the contrast-structure term.

    Returns
    -------
    torch.Tensor or tuple
        Per-sample mean SSIM ``(B,)`` and, optionally, per-sample contrast sensitivity ``(B,)``.
    """
    if preds.ndim != 5 or target.ndim != 5:
        raise ValueError(
            f"ssim_25d needs 5-D (B, C, D, H, W) inputs, got preds {tuple(preds.shape)}, target {tuple(target.shape)}"
        )
    if preds.shape != target.shape:
        raise ValueError(f"preds shape {tuple(preds.shape)} differs from target shape {tuple(target.shape)}")
    depth = preds.shape[2]
    if depth > 15:
        warnings.warn(f"ssim_25d averages over the whole depth ({depth} slices); consider fewer slices.", stacklevel=2)
    preds, target = preds.to(torch.promote_types(preds.dtype, torch.float32)), target.to(preds.dtype)
    b, c = preds.shape[:2]
    kernel = (depth, *in_plane_window_size)
    data_range = target.max()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    # moments of all five quantities in one pooled pass: (5 * B * C, 1, D, H, W)
    stack = torch.cat([preds, target, preds * preds, target * target, preds * target]).reshape(-1, 1, *preds.shape[2:])
    mu_x, mu_y, xx, yy, xy = F.avg_pool3d(stack, kernel, stride=1).reshape(5, b, c, -1).unbind(0)
    var_x, var_y, cov = xx - mu_x**2, yy - mu_y**2, xy - mu_x * mu_y
    cs_map = (2 * cov + c2) / (var_x + var_y + c2)
    ssim_map = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1) * cs_map
    ssim = ssim_map.reshape(b, -1).mean(dim=1)
    if return_contrast_sensitivity:
        return ssim, cs_map.reshape(b, -1).mean(dim=1)
    return ssim


def ms_ssim_25d(
    preds: torch.Tensor,
    target: torch.Tensor,
    in_plane_window_size: tuple[int, int] = (11, 11),
    clamp: bool = False,
    betas: tuple[float, ...] = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333),
) -> torch.Tensor:
    """Multi-scale 2.5-D SSIM.

    At each of ``len(betas)`` scales SSIM and contrast sensitivity are computed, then Y and X are
    halved by 2x2 average pooling (depth is never downsampled). The result is the product of
    ``cs^beta`` over the first scales and ``ssim^beta`` at the last, averaged over the batch.

    Parameters
    ----------
    preds, target : torch.Tensor
        ``(B, C, D, H, W)``; H and W must stay at least the window size at the coarsest scale.
    in_plane_window_size : tuple of int
        Window size in Y and X.
    clamp : bool
        Clamp SSIM/CS to at least 1e-4 (avoids NaN from negative bases with fractional exponents).
    betas : tuple of float
        Weight of each scale.

    Returns
    -------
    torch.Tensor
        Scalar.
    """
    scales = len(betas)
    smallest = min(preds.shape[-2:]) // 2 ** (scales - 1) if preds.ndim == 5 else 0
    if smallest < max(in_plane_window_size):
        raise ValueError(
            f"ms_ssim_25d with {scales} scales and window {in_plane_window_size} needs H and W of at least "
            f"{max(in_plane_window_size) * 2 ** (scales - 1)}, got shape {tuple(preds.shape)}"
        )
    weights = torch.as_tensor(betas, dtype=torch.float32, device=preds.device)
    terms = []
    for scale in range(scales):
        ssim, cs = ssim_25d(preds, target, in_plane_window_size, return_contrast_sensitivity=True)
        value = ssim if scale == scales - 1 else cs
        terms.append(value.clamp(min=1e-4) if clamp else value)
        if scale < scales - 1:
            preds = F.avg_pool3d(preds, (1, 2, 2))
            target = F.avg_pool3d(target, (1, 2, 2))
    stacked = torch.stack(terms)  # (scales, B)
    return torch.prod(stacked ** weights.to(stacked.dtype).view(-1, 1), dim=0).mean()
