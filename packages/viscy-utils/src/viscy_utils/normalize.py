"""Intensity normalisation of single images: z-score, its inverse, percentile clipping, CLAHE."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["hist_adapteq_2D", "hist_clipping", "unzscore", "zscore"]


def _eps(array: np.ndarray) -> float:
    """Machine epsilon of the array's float type (float64 for non-float inputs)."""
    dtype = array.dtype if np.issubdtype(array.dtype, np.floating) else np.float64
    return float(np.finfo(dtype).eps)


def zscore(input_image: np.ndarray, im_mean: float | None = None, im_std: float | None = None) -> np.ndarray:
    """Z-score an image: ``(x - mean) / (std + eps)``.

    Parameters
    ----------
    input_image : numpy.ndarray
        Image of any shape.
    im_mean : float, optional
        Mean to subtract; the NaN-aware mean of the image when ``None``. ``0.0`` is a valid mean.
    im_std : float, optional
        Standard deviation to divide by; the NaN-aware (population) std of the image when ``None``.

    Returns
    -------
    numpy.ndarray
        The normalised image.
    """
    input_image = np.asarray(input_image)
    if im_mean is None:
        im_mean = np.nanmean(input_image)
    if im_std is None:
        im_std = np.nanstd(input_image)
    return (input_image - im_mean) / (im_std + _eps(input_image))


def unzscore(im_norm: np.ndarray, zscore_median: float, zscore_iqr: float) -> np.ndarray:
    """Invert a median/IQR normalisation: ``x * (iqr + eps) + median``.

    Parameters
    ----------
    im_norm : numpy.ndarray
        Normalised image.
    zscore_median : float
        Median (or mean) that was subtracted.
    zscore_iqr : float
        Inter-quartile range (or std) that was divided by.

    Returns
    -------
    numpy.ndarray
        The image in its original intensity scale.
    """
    im_norm = np.asarray(im_norm)
    return im_norm * (zscore_iqr + _eps(im_norm)) + zscore_median


def hist_clipping(input_image: np.ndarray, min_percentile: float = 2, max_percentile: float = 98) -> np.ndarray:
    """Clip an image to two of its intensity percentiles (no rescaling).

    Parameters
    ----------
    input_image : numpy.ndarray
        Image of any shape.
    min_percentile : float
        Lower percentile (0-100).
    max_percentile : float
        Upper percentile (0-100), larger than ``min_percentile``.

    Returns
    -------
    numpy.ndarray
        The clipped image.
    """
    assert min_percentile < max_percentile and max_percentile <= 100, (
        f"need min_percentile < max_percentile <= 100, got {min_percentile} and {max_percentile}"
    )
    low, high = np.nanpercentile(input_image, [min_percentile, max_percentile])
    return np.clip(input_image, low, high)


def hist_adapteq_2D(
    input_image: np.ndarray,
    kernel_size: int | Sequence[int] | None = None,
    clip_limit: float | None = None,
) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation (CLAHE) of a 2-D image.

    Parameters
    ----------
    input_image : numpy.ndarray
        2-D image.
    kernel_size : int or sequence of int, optional
        Contextual region size; an int must be smaller than the smallest image side, a sequence needs
        one entry per image dimension. scikit-image's default (1/8 of each side) when ``None``.
    clip_limit : float, optional
        Clipping limit in [0, 1]; higher means more contrast. scikit-image's default when ``None``.

    Returns
    -------
    numpy.ndarray
        Equalised image (float, in [0, 1]).

    Raises
    ------
    ValueError
        If ``kernel_size`` is too large, of the wrong length or of an unsupported type.
    """
    from skimage.exposure import equalize_adapthist

    input_image = np.asarray(input_image)
    if kernel_size is not None:
        if isinstance(kernel_size, (int, np.integer)):
            if kernel_size >= min(input_image.shape):
                raise ValueError(f"kernel_size {kernel_size} must be smaller than the image sides {input_image.shape}")
        elif isinstance(kernel_size, (list, tuple)):
            if len(kernel_size) != input_image.ndim:
                raise ValueError(f"kernel_size {kernel_size} needs one entry per image dimension ({input_image.ndim})")
        else:
            raise ValueError(f"kernel_size must be an int, a list or a tuple, got {type(kernel_size).__name__}")
    if clip_limit is not None:
        assert 0 <= clip_limit <= 1, f"clip_limit must be in [0, 1], got {clip_limit}"
    clip_limit = 0.01 if clip_limit is None else clip_limit  # scikit-image's default
    return equalize_adapthist(input_image, kernel_size=kernel_size, clip_limit=clip_limit)
