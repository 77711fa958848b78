"""Per-sample percentile intensity scaling of batches, exact for any volume size."""

from __future__ import annotations

import math
import warnings
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.transforms import MapTransform, ScaleIntensityRangePercentiles
from monai.utils.type_conversion import get_equivalent_dtype

from viscy_transforms._checks import check_ndim

__all__ = [
    "BatchedScaleIntensityRangePercentiles",
    "BatchedScaleIntensityRangePercentilesd",
    "batch_percentile",
    "batch_percentiles",
]


def _order_statistics_kthvalue(rows: torch.Tensor, ranks: list[int]) -> torch.Tensor:
    return torch.stack([rows.kthvalue(r + 1, dim=1).values for r in ranks], dim=1)


def _order_statistics_partition(rows: torch.Tensor, ranks: list[int]) -> torch.Tensor:
    # One introselect per row finds all ranks, narrowing the range for each next one: several times faster
    # than a torch ``kthvalue`` pass per rank on CPU, and exact.
    return torch.from_numpy(np.partition(rows.detach().numpy(), ranks, axis=1)[:, ranks])


def _order_statistics(rows: torch.Tensor, ranks: list[int]) -> torch.Tensor:
    """Return the ``ranks``-th (0-based, sorted, unique) smallest values of every row, as ``(R, len(ranks))``."""
    if rows.device.type == "cpu":
        return _order_statistics_partition(rows, ranks)
    return _order_statistics_kthvalue(rows, ranks)


def batch_percentiles(rows: torch.Tensor, qs: Sequence[float]) -> torch.Tensor:
    """Percentiles ``qs`` (0-100) of every row of a 2-D tensor, with numpy's default linear interpolation.

    All the order statistics the percentiles need come from one selection pass per row (numpy's introselect
    on CPU, ``kthvalue`` elsewhere): linear time, no full sort and no size limit, unlike ``torch.quantile``
    which sorts and refuses more than 2**24 elements.

    Parameters
    ----------
    rows : torch.Tensor
        Values of shape ``(R, N)``.
    qs : sequence of float
        Percentiles in [0, 100].

    Returns
    -------
    torch.Tensor
        Shape ``(len(qs), R)``, float32 or float64, on ``rows``' device.
    """
    if rows.dtype not in (torch.float32, torch.float64):
        rows = rows.float()
    n = rows.shape[1]
    positions = [q / 100.0 * (n - 1) for q in qs]
    lows = [math.floor(p) for p in positions]
    ranks = sorted({r for low in lows for r in (low, min(low + 1, n - 1))})
    stats = _order_statistics(rows, ranks).to(rows.device)
    column = {rank: i for i, rank in enumerate(ranks)}
    out = []
    for position, low in zip(positions, lows, strict=True):
        v_low = stats[:, column[low]]
        frac = position - low
        if frac == 0 or low + 1 >= n:
            out.append(v_low)
        else:
            out.append(v_low + (stats[:, column[low + 1]] - v_low) * frac)
    return torch.stack(out)


def batch_percentile(rows: torch.Tensor, q: float) -> torch.Tensor:
    """Percentile ``q`` (0-100) of every row of a 2-D tensor, with numpy's default linear interpolation.

    Parameters
    ----------
    rows : torch.Tensor
        Values of shape ``(R, N)``.
    q : float
        Percentile in [0, 100].

    Returns
    -------
    torch.Tensor
        Shape ``(R,)``, float32 or float64.
    """
    return batch_percentiles(rows, [q])[0]


class BatchedScaleIntensityRangePercentiles(ScaleIntensityRangePercentiles):
    """MONAI ``ScaleIntensityRangePercentiles`` applied to each sample of a ``(B, C, [Z,] Y, X)`` batch.

    Each sample (each sample-channel when ``channel_wise``) maps its own ``[p_lower, p_upper]`` to
    ``[b_min, b_max]``. A sample whose two percentiles coincide is shifted by ``-p_lower`` (+ ``b_min``) with a
    warning, as MONAI does, without affecting the other samples.

    Parameters
    ----------
    lower, upper : float
        Percentiles in [0, 100].
    b_min, b_max : float or None
        Output range; with ``None`` the result is the [0, 1]-normalised intensity.
    clip : bool
        Clip the output to ``[b_min, b_max]``.
    relative : bool
        Map to ``b_min + (b_max - b_min) * q / 100`` for ``q`` = lower and upper; needs both bounds.
    channel_wise : bool
        Compute percentiles per channel.
    dtype : numpy or torch dtype or None
        Output dtype; ``None`` keeps the input's.
    """

    def __init__(
        self,
        lower: float,
        upper: float,
        b_min: float | None,
        b_max: float | None,
        clip: bool = False,
        relative: bool = False,
        channel_wise: bool = False,
        dtype=np.float32,
    ) -> None:
        for name, value in (("lower", lower), ("upper", upper)):
            if not 0.0 <= value <= 100.0:
                raise ValueError(f"{name} must be a percentile in [0, 100], got {value!r}.")
        if relative and (b_min is None or b_max is None):
            raise ValueError("relative=True needs both b_min and b_max (got None).")
        super().__init__(lower, upper, b_min, b_max, clip, relative, channel_wise, dtype)

    def _output_range(self) -> tuple[float | None, float | None]:
        if not self.relative:
            return self.b_min, self.b_max
        span = self.b_max - self.b_min
        return self.b_min + span * self.lower / 100.0, self.b_min + span * self.upper / 100.0

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        check_ndim(img, (4, 5), type(self).__name__)
        b, c = img.shape[:2]
        rows = img.reshape(b * c, -1) if self.channel_wise else img.reshape(b, -1)
        stat_shape = (b, c) + (1,) * (img.ndim - 2) if self.channel_wise else (b,) + (1,) * (img.ndim - 1)
        a_min, a_max = (p.reshape(stat_shape) for p in batch_percentiles(rows, (self.lower, self.upper)))
        work = a_min.dtype if not img.is_floating_point() or img.element_size() < 4 else img.dtype
        x = img.to(work)
        a_min, a_max = a_min.to(work), a_max.to(work)
        b_min, b_max = self._output_range()
        degenerate = a_max == a_min
        # one temporary, updated in place: these passes over the whole batch are memory-bound
        out = (x - a_min).div_(torch.where(degenerate, torch.ones_like(a_max), a_max - a_min))
        if b_min is not None and b_max is not None:
            out = out.mul_(b_max - b_min).add_(b_min)
        if self.clip:
            out = out.clamp_(min=b_min, max=b_max)
        if degenerate.any():
            culprits = degenerate.reshape(b, -1).any(dim=1).nonzero().flatten().tolist()
            warnings.warn(
                f"Divide by zero (a_min == a_max) in samples {culprits}: they are only shifted.", UserWarning, 2
            )
            shifted = x - a_min + (b_min if b_min is not None else 0.0)
            out = torch.where(degenerate, shifted, out)
        dtype = img.dtype if self.dtype is None else get_equivalent_dtype(self.dtype, torch.Tensor)
        return out.to(dtype)


class BatchedScaleIntensityRangePercentilesd(MapTransform):
    """Dictionary version of :class:`BatchedScaleIntensityRangePercentiles` (returns a copy).

    Parameters
    ----------
    keys : str or sequence of str
        Keys to scale; each is scaled with its own percentiles.
    lower, upper, b_min, b_max, clip, relative, channel_wise, dtype
        See :class:`BatchedScaleIntensityRangePercentiles`.
    allow_missing_keys : bool
        Skip keys absent from the dict instead of raising ``KeyError``.
    """

    def __init__(
        self,
        keys: Sequence[str] | str,
        lower: float,
        upper: float,
        b_min: float | None,
        b_max: float | None,
        clip: bool = False,
        relative: bool = False,
        channel_wise: bool = False,
        dtype=np.float32,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.scaler = BatchedScaleIntensityRangePercentiles(
            lower, upper, b_min, b_max, clip, relative, channel_wise, dtype
        )

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.scaler(d[key])
        return d
