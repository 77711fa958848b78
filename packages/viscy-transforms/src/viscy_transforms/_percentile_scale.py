"""Per-sample percentile intensity scaling of batches, exact for any volume size."""

from __future__ import annotations

import math
import warnings
from collections.abc import Hashable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

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


# Rows shorter than this are partitioned directly: sampling would not pay for itself.
_MIN_SAMPLED_SIZE = 1 << 15
# Values drawn per row to bracket the ranks: at least _SAMPLE_SIZE, and _SAMPLE_PER_SQRT_N * sqrt(n) for long
# rows, which balances the cost of partitioning the sample against that of the candidates it leaves.
_SAMPLE_SIZE = 8192
_SAMPLE_PER_SQRT_N = 20.0
# Bracket half-width in binomial standard deviations (plus a few values): a rank escapes its bracket with a
# probability of about 1e-6, and then only that row is redone by the exact fallback.
_MARGIN_SIGMAS = 5.0
_MARGIN_EXTRA = 4
_SAMPLE_SEED = 0x5EED
# Values per pass: the chunk (256 KiB of float32) and its masks stay in L2 between the passes over it.
_CHUNK_SIZE = 1 << 16


def _order_statistics_kthvalue(rows: torch.Tensor, ranks: list[int]) -> torch.Tensor:
    return torch.stack([rows.kthvalue(r + 1, dim=1).values for r in ranks], dim=1)


def _order_statistics_partition(rows: torch.Tensor, ranks: list[int]) -> torch.Tensor:
    # One introselect per row finds all ranks, narrowing the range for each next one: several times faster
    # than a torch ``kthvalue`` pass per rank on CPU, and exact.
    return torch.from_numpy(np.partition(rows.detach().numpy(), ranks, axis=1)[:, ranks])


def _brackets(n: int, s: int, ranks: list[int]) -> list[tuple[int, int, list[int]]]:
    """Sample positions ``(lo, hi, ranks)`` whose values bracket each rank, overlapping brackets merged.

    ``lo == -1`` stands for -inf and ``hi == s`` for +inf. With ``s`` values drawn uniformly with replacement,
    the number of sample values <= the ``k``-th smallest value is Binomial(s, >= (k + 1) / n) and the number
    below it Binomial(s, <= k / n), hence the margins.
    """
    merged: list[tuple[int, int, list[int]]] = []
    for k in ranks:
        p = (k + 0.5) / n
        margin = _MARGIN_SIGMAS * math.sqrt(s * p * (1.0 - p)) + _MARGIN_EXTRA
        lo = max(math.floor(s * (k + 1) / n - margin), -1)
        hi = min(math.ceil(s * k / n + margin), s)
        if merged and lo <= merged[-1][1]:  # ranks are sorted, so only the last bracket can overlap
            prev_lo, prev_hi, prev_ranks = merged[-1]
            merged[-1] = (min(prev_lo, lo), max(prev_hi, hi), prev_ranks + [k])
        else:
            merged.append((lo, hi, [k]))
    return merged


def _row_order_statistics(
    row: np.ndarray, ranks: list[int], brackets: list[tuple[int, int, list[int]]], idx: np.ndarray
) -> np.ndarray | None:
    """Select the ``ranks``-th smallest values of one row by sample-then-select; None if a bracket misses."""
    s = len(idx)
    sample = row[idx]
    kth = sorted({i for lo, hi, _ in brackets for i in (lo, hi) if 0 <= i < s})
    if kth:
        sample.partition(kth)
    bounds = [(sample[lo] if lo >= 0 else -np.inf, sample[hi] if hi < s else np.inf) for lo, hi, _ in brackets]
    below = [0] * len(bounds)  # values < lo
    ties = [0] * len(bounds)  # values == lo, for brackets with lo == hi
    pieces = []
    for start in range(0, len(row), _CHUNK_SIZE):
        chunk = row[start : start + _CHUNK_SIZE]
        inside_any = None
        for b, (lo, hi) in enumerate(bounds):
            below_lo = chunk < lo
            below[b] += np.count_nonzero(below_lo)
            if lo == hi:  # a bracket of ties (flat or quantised images): counting them is enough
                ties[b] += np.count_nonzero(chunk == lo)
                continue
            inside = np.greater(chunk <= hi, below_lo)  # lo <= x <= hi; NaN is in no bracket
            inside_any = inside if inside_any is None else np.logical_or(inside_any, inside, out=inside_any)
        if inside_any is not None:
            pieces.append(chunk.take(np.flatnonzero(inside_any)))
    candidates = np.concatenate(pieces) if pieces else row[:0]
    out = np.empty(len(ranks), row.dtype)
    j = 0
    for (lo, hi), (_, _, ks), n_below, n_ties in zip(bounds, brackets, below, ties, strict=True):
        if lo == hi:
            values = None
            n_inside = n_ties
        else:
            values = candidates[(candidates >= lo) & (candidates <= hi)] if len(bounds) > 1 else candidates
            n_inside = len(values)
        # lo <= x_(k) <= hi exactly when this holds, so the selection below is exact. NaN bounds leave no value
        # inside and fail it; NaN values are in no bracket, as if above all of them (numpy's NaN-last order).
        if not (n_below <= ks[0] and ks[-1] < n_below + n_inside):
            return None
        if values is None:
            out[j : j + len(ks)] = lo
        else:
            local = [k - n_below for k in ks]
            out[j : j + len(ks)] = np.partition(values, local)[local]
        j += len(ks)
    return out


def _order_statistics_sampled(rows: torch.Tensor, ranks: list[int]) -> torch.Tensor:
    """Exact order statistics by sample-then-select (Floyd-Rivest), falling back to a full partition per row.

    A fixed pseudo-random sample of each row, partially sorted, gives for each rank a value bracket that
    holds it with high probability. A few passes over the row count the values below each bracket and extract
    the few inside it, where a small partition finds the rank. The counts prove the rank lies in its bracket,
    so the result is exact; rows where it does not (unlucky sample, NaN) are partitioned in full.
    Each row is scanned in chunks that stay in L2 with their masks over those passes: numpy's compare and
    count kernels are then several times faster than torch's or numpy's passes over the whole batch. Rows are
    spread over ``torch.get_num_threads()`` threads (numpy releases the GIL in these kernels), so a loader
    worker, where torch runs one thread, stays on one core.
    """
    a = rows.detach().numpy()
    r, n = a.shape
    size = max(_SAMPLE_SIZE, round(_SAMPLE_PER_SQRT_N * math.sqrt(n)))
    # drawn with replacement, as the margins assume; sorted so that the gather walks each row forwards.
    # The fixed seed makes the work (not the result, which is exact anyway) reproducible.
    idx = np.sort(np.random.default_rng(_SAMPLE_SEED).integers(0, n, size))
    brackets = _brackets(n, size, ranks)

    def select(i: int) -> np.ndarray | None:
        return _row_order_statistics(a[i], ranks, brackets, idx)

    workers = min(torch.get_num_threads(), r)
    if workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            results = list(pool.map(select, range(r)))
    else:
        results = [select(i) for i in range(r)]
    out = np.empty((r, len(ranks)), a.dtype)
    missed = []
    for i, res in enumerate(results):
        if res is None:
            missed.append(i)
        else:
            out[i] = res
    if missed:
        out[missed] = np.partition(a[missed], ranks, axis=1)[:, ranks]
    return torch.from_numpy(out)


def _order_statistics(rows: torch.Tensor, ranks: list[int]) -> torch.Tensor:
    """Return the ``ranks``-th (0-based, sorted, unique) smallest values of every row, as ``(R, len(ranks))``."""
    if rows.device.type != "cpu":
        return _order_statistics_kthvalue(rows, ranks)
    if rows.shape[1] < _MIN_SAMPLED_SIZE:
        return _order_statistics_partition(rows, ranks)
    return _order_statistics_sampled(rows, ranks)


def batch_percentiles(rows: torch.Tensor, qs: Sequence[float]) -> torch.Tensor:
    """Percentiles ``qs`` (0-100) of every row of a 2-D tensor, with numpy's default linear interpolation.

    The order statistics the percentiles need are selected exactly, in linear time, with no full sort and
    no size limit (``torch.quantile`` sorts and refuses more than 2**24 elements): on CPU long rows by
    sample-then-select over cache-sized chunks, spread over ``torch.get_num_threads()`` threads, short ones
    by numpy's introselect; elsewhere by ``kthvalue``. Results equal ``numpy.percentile``'s; NaN values are
    ordered last, as by ``numpy.partition``.

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
        # one temporary, updated in place, and the per-sample factor folded before touching the batch: these
        # passes over the whole batch are memory-bound (subtracting first keeps the precision of x - a_min)
        span = torch.where(degenerate, torch.ones_like(a_max), a_max - a_min)
        if b_min is not None and b_max is not None:
            out = (x - a_min).mul_((b_max - b_min) / span).add_(b_min)
        else:
            out = (x - a_min).div_(span)
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
