"""A composable batch sampler over cell observations: experiment, condition and time axes."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator

import numpy as np
import pandas as pd
from torch.utils.data import Sampler

__all__ = ["FlexibleBatchSampler"]

_logger = logging.getLogger(__name__)


class _SubPool:
    """Rows of one (pool, condition) group, sorted by hours post infection when needed."""

    __slots__ = ("hpi", "rows")

    def __init__(self, rows: np.ndarray, hpi: np.ndarray | None) -> None:
        if hpi is not None:
            order = np.argsort(hpi[rows], kind="stable")
            rows = rows[order]
            self.hpi = hpi[rows]
        else:
            self.hpi = None
        self.rows = rows


class FlexibleBatchSampler(Sampler[list[int]]):
    """Yield batches of row indices of ``valid_anchors`` along composable sampling axes.

    Parameters
    ----------
    valid_anchors : pandas.DataFrame
        One row per anchor with a 0..N-1 index; needs ``experiment`` (experiment_aware),
        ``condition`` (condition_balanced) and ``hours_post_infection`` (temporal_enrichment).
    batch_size : int
        Indices per batch.
    experiment_aware : bool
        Draw each batch from one experiment, chosen with ``experiment_weights``.
    leaky : float
        Fraction of each batch taken from the other experiments (experiment_aware only).
    experiment_weights : dict[str, float] or None
        Experiment -> weight (normalised; absent experiments get 0). None: proportional to size.
    condition_balanced : bool
        Split each batch across the conditions of its pool by ``condition_ratio``.
    condition_ratio : dict[str, float] or None
        Condition -> target fraction (absent conditions get ``1 / n_conditions``; normalised).
    temporal_enrichment : bool
        Concentrate each batch around a focal hours-post-infection value drawn uniformly from the
        pool's distinct values. Composes with ``condition_balanced`` (balance holds in both the
        focal and the global part).
    temporal_window_hours : float
        Half-width of the focal window (``|hpi - focal| <= window``).
    temporal_global_fraction : float
        Fraction of each (condition) draw taken from outside the window.
    num_replicas, rank : int
        DDP world size and this process' rank. Every rank yields exactly ``len(self)`` batches;
        the ranks' batches are disjoint draws (extra batches are drawn to even them out).
    seed : int
        Base seed. Batches are built in blocks of ``block_size``; block ``b`` of epoch ``e`` on
        ``rank`` draws from ``numpy.random.default_rng([seed, e, rank, b])``, so each rank draws
        its own stream and builds only its own batches.
    drop_last : bool
        With False the last, partial batch of ``N % batch_size`` anchors is yielded too.
    block_size : int
        Batches drawn together with vectorised numpy calls. Iteration is lazy per block: the first
        batch costs one block, not one epoch.

    Notes
    -----
    A pool smaller than what is requested from it is sampled with replacement; otherwise draws
    are without replacement within a batch. Call :meth:`set_epoch` every epoch for new batches.
    """

    def __init__(
        self,
        valid_anchors: pd.DataFrame,
        batch_size: int = 128,
        experiment_aware: bool = True,
        leaky: float = 0.0,
        experiment_weights: dict[str, float] | None = None,
        condition_balanced: bool = True,
        condition_ratio: dict[str, float] | None = None,
        temporal_enrichment: bool = False,
        temporal_window_hours: float = 2.0,
        temporal_global_fraction: float = 0.3,
        num_replicas: int = 1,
        rank: int = 0,
        seed: int = 0,
        drop_last: bool = True,
        block_size: int = 256,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0.0 <= leaky < 1.0:
            raise ValueError(f"leaky must be in [0, 1), got {leaky}")
        if not 0.0 <= temporal_global_fraction <= 1.0:
            raise ValueError(f"temporal_global_fraction must be in [0, 1], got {temporal_global_fraction}")
        if block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {block_size}")
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"invalid DDP rank {rank} for num_replicas={num_replicas}")
        required = {
            "experiment": experiment_aware,
            "condition": condition_balanced,
            "hours_post_infection": temporal_enrichment,
        }
        for column, needed in required.items():
            if needed and column not in valid_anchors.columns:
                raise ValueError(
                    f"FlexibleBatchSampler needs column '{column}' in valid_anchors; "
                    f"available columns: {list(valid_anchors.columns)}"
                )
        n = len(valid_anchors)
        if not valid_anchors.index.equals(pd.RangeIndex(n)):
            raise ValueError("valid_anchors must have a 0..N-1 index (use reset_index(drop=True))")
        self.batch_size = int(batch_size)
        self.experiment_aware = experiment_aware
        self.leaky = float(leaky)
        self.experiment_weights = experiment_weights
        self.condition_balanced = condition_balanced
        self.condition_ratio = condition_ratio
        self.temporal_enrichment = temporal_enrichment
        self.temporal_window_hours = float(temporal_window_hours)
        self.temporal_global_fraction = float(temporal_global_fraction)
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.seed = int(seed)
        self.drop_last = drop_last
        self.block_size = int(block_size)
        self.epoch = 0
        self._n = n
        self._build_pools(valid_anchors)

    def _build_pools(self, df: pd.DataFrame) -> None:
        n = self._n
        hpi = df["hours_post_infection"].to_numpy(dtype=np.float64) if self.temporal_enrichment else None
        if self.experiment_aware:
            exp_codes, exp_names = pd.factorize(df["experiment"].astype(str), sort=True)
        else:
            exp_codes, exp_names = np.zeros(n, dtype=np.int64), pd.Index(["all"])
        if self.condition_balanced:
            cond_codes, cond_names = pd.factorize(df["condition"].astype(str), sort=True)
        else:
            cond_codes, cond_names = np.zeros(n, dtype=np.int64), pd.Index(["all"])
        # rows grouped by pool, contiguous: leak draws index the complement of one pool directly
        order = np.argsort(exp_codes, kind="stable")
        self._rows_by_pool = order
        sizes = np.bincount(exp_codes, minlength=len(exp_names))
        self._pool_start = np.concatenate([[0], np.cumsum(sizes)])
        self._pool_names = list(exp_names)
        self._pools: list[list[tuple[str, _SubPool]]] = []
        self._pool_hpis: list[np.ndarray | None] = []
        self._pool_ratios: list[np.ndarray] = []
        for p in range(len(exp_names)):
            rows = order[self._pool_start[p] : self._pool_start[p + 1]]
            present = np.unique(cond_codes[rows])
            subs = [(str(cond_names[c]), _SubPool(rows[cond_codes[rows] == c], hpi)) for c in present]
            self._pools.append(subs)
            self._pool_hpis.append(np.unique(hpi[rows]) if hpi is not None else None)
            ratio = np.array(
                [
                    (self.condition_ratio or {}).get(name, 1.0 / len(subs)) if self.condition_balanced else 1.0
                    for name, _ in subs
                ],
                dtype=np.float64,
            )
            if ratio.sum() <= 0:
                raise ValueError(f"condition_ratio gives zero weight to every condition of pool '{exp_names[p]}'")
            self._pool_ratios.append(ratio / ratio.sum())
        if self.experiment_aware:
            if self.experiment_weights is not None:
                unknown = sorted(set(self.experiment_weights) - set(self._pool_names))
                if unknown:
                    _logger.warning("experiment_weights names unknown experiments %s; ignored", unknown)
                weights = np.array([float(self.experiment_weights.get(e, 0.0)) for e in self._pool_names])
            else:
                weights = sizes.astype(np.float64)
            if n and weights.sum() <= 0:
                raise ValueError(
                    f"experiment_weights {self.experiment_weights} give no weight to any experiment "
                    f"of {self._pool_names}"
                )
            self._pool_probs = weights / weights.sum() if n else weights
            for name, size in zip(self._pool_names, sizes):
                if size < self.batch_size:
                    _logger.warning(
                        "Experiment '%s' has %d samples, fewer than batch_size=%d; its batches use "
                        "replacement sampling",
                        name,
                        size,
                        self.batch_size,
                    )
        else:
            self._pool_probs = np.ones(1)

    # ------------------------------------------------------------------ protocol
    def set_epoch(self, epoch: int) -> None:
        """Set the epoch; each epoch has its own batch sequence."""
        self.epoch = int(epoch)

    def _n_batches_total(self) -> int:
        return math.ceil(self._n / self.batch_size) if not self.drop_last else self._n // self.batch_size

    def __len__(self) -> int:
        return math.ceil(self._n_batches_total() / self.num_replicas)

    def __iter__(self) -> Iterator[list[int]]:
        n_local = len(self)
        for block, start in enumerate(range(0, n_local, self.block_size)):
            yield from self._block(block, start, min(start + self.block_size, n_local))

    def _local_sizes(self, start: int, stop: int) -> np.ndarray:
        """Sizes of this rank's batches ``start..stop-1`` (global batch ``rank + k * num_replicas``)."""
        sizes = np.full(stop - start, self.batch_size, dtype=np.int64)
        partial = self._n % self.batch_size
        if not self.drop_last and partial:
            last = self._n_batches_total() - 1
            k, r = divmod(last, self.num_replicas)
            if r == self.rank and start <= k < stop:
                sizes[k - start] = partial
        return sizes

    # ------------------------------------------------------------------ one block of batches
    def _block(self, block: int, start: int, stop: int) -> list[list[int]]:
        """Draw this rank's batches ``start..stop-1`` with one generator and vectorised calls."""
        rng = np.random.default_rng([self.seed, self.epoch, self.rank, block])
        sizes = self._local_sizes(start, stop)
        n_batches = sizes.size
        n_pools = len(self._pools)
        pools = rng.choice(n_pools, n_batches, p=self._pool_probs) if n_pools > 1 else np.zeros(n_batches, np.int64)
        out: list[np.ndarray | None] = [None] * n_batches
        # batches of one (pool, size) share their composition: fill them as one matrix
        for pool, size in sorted(set(zip(pools.tolist(), sizes.tolist()))):
            which = np.flatnonzero((pools == pool) & (sizes == size))
            rows = self._pool_batches(rng, pool, size, which.size)
            for j, r in zip(which.tolist(), rows):
                out[j] = r
        return [b.tolist() for b in out]

    def _pool_batches(self, rng: np.random.Generator, pool: int, size: int, n_batches: int) -> np.ndarray:
        """``(n_batches, size)`` rows of batches whose primary pool is ``pool``."""
        start, stop = int(self._pool_start[pool]), int(self._pool_start[pool + 1])
        n_other = self._n - (stop - start)
        n_leak = int(size * self.leaky) if self.experiment_aware and self.leaky > 0 and n_other > 0 else 0
        parts = self._primary(rng, pool, size - n_leak, n_batches)
        if n_leak:
            j = _draw_rows(rng, np.full(n_batches, n_other), n_leak)
            parts.append(self._rows_by_pool[np.where(j < start, j, j + (stop - start))])
        if not parts:
            return np.zeros((n_batches, 0), dtype=np.int64)
        return np.concatenate(parts, axis=1)

    def _primary(self, rng: np.random.Generator, pool: int, n: int, n_batches: int) -> list[np.ndarray]:
        subs = self._pools[pool]
        if not subs or n <= 0:
            return []
        ratio = self._pool_ratios[pool]
        counts = (n * ratio).astype(np.int64)
        counts[-1] = n - counts[:-1].sum()
        focal = None
        if self.temporal_enrichment:
            hpis = self._pool_hpis[pool]
            focal = hpis[rng.integers(0, hpis.size, n_batches)]
        parts = []
        for (_, sub), k in zip(subs, counts.tolist()):
            m = np.full(n_batches, sub.rows.size)
            if focal is None:
                parts.append(sub.rows[_draw_rows(rng, m, k)])
                continue
            lo = np.searchsorted(sub.hpi, focal - self.temporal_window_hours, side="left")
            hi = np.searchsorted(sub.hpi, focal + self.temporal_window_hours, side="right")
            n_global = int(k * self.temporal_global_fraction)
            width = hi - lo
            # an empty window (or an empty outside) falls back to the whole sub-pool
            in_window = width > 0
            j = _draw_rows(rng, np.where(in_window, width, m), k - n_global)
            parts.append(sub.rows[np.where(in_window[:, None], lo[:, None] + j, j)])
            outside = m - width
            has_outside = outside > 0
            j = _draw_rows(rng, np.where(has_outside, outside, m), n_global)
            skip = np.where(has_outside[:, None] & (j >= lo[:, None]), width[:, None], 0)
            parts.append(sub.rows[j + skip])
        return parts


def _draw_rows(rng: np.random.Generator, m: np.ndarray, k: int) -> np.ndarray:
    """``(len(m), k)`` offsets, row ``r`` into ``range(m[r])``; without replacement where ``k <= m[r]``.

    Sparse rows draw with replacement and redraw collisions until distinct: the procedure treats
    all labels alike, so the drawn set is a uniform ``k``-subset. Dense rows (``m <= 4 k``) take the
    ``k`` smallest of ``m`` random keys. Rows with ``m < k`` draw with replacement.
    """
    n_rows = m.size
    if k <= 0 or n_rows == 0:
        return np.zeros((n_rows, max(k, 0)), dtype=np.int64)
    m = np.maximum(m.astype(np.int64), 1)
    out = (rng.random((n_rows, k)) * m[:, None]).astype(np.int64)
    if k == 1:
        return out
    dense = np.flatnonzero((m >= k) & (m <= 4 * k))
    if dense.size:
        width = int(m[dense].max())
        keys = rng.random((dense.size, width))
        keys[np.arange(width)[None, :] >= m[dense, None]] = np.inf
        out[dense] = np.argpartition(keys, k - 1, axis=1)[:, :k]
    sparse = np.flatnonzero(m > 4 * k)
    while sparse.size:
        block = np.sort(out[sparse], axis=1)
        dup = np.zeros(block.shape, dtype=bool)
        dup[:, 1:] = block[:, 1:] == block[:, :-1]
        bad = dup.any(axis=1)
        out[sparse] = block
        if not bad.any():
            break
        sparse, dup = sparse[bad], dup[bad]
        redraw = (rng.random(dup.shape) * m[sparse, None]).astype(np.int64)
        out[sparse] = np.where(dup, redraw, out[sparse])
    return out
