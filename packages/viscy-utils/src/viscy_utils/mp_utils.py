"""Process-pool helpers and the normalisation statistics of an array."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

from viscy_data.norm_meta import compute_statistics

__all__ = ["get_val_stats", "mp_get_val_stats", "mp_wrapper"]


def get_val_stats(sample_values: np.ndarray) -> dict[str, float]:
    """NaN-aware normalisation statistics of an array.

    The single definition lives in :func:`viscy_data.norm_meta.compute_statistics`; this name is
    kept for compatibility.

    Parameters
    ----------
    sample_values : numpy.ndarray
        Values of any shape.

    Returns
    -------
    dict[str, float]
        ``mean, std, median, iqr, p5, p95, p95_p5, p1, p99, p99_p1`` (in this order).
    """
    return compute_statistics(sample_values)


def mp_wrapper(fn: Callable[..., Any], fn_args: Sequence[tuple], workers: int) -> list[Any]:
    """Call ``fn(*args)`` for every tuple of ``fn_args`` in a pool of processes, keeping the order.

    Parameters
    ----------
    fn : callable
        Picklable function (defined at module level).
    fn_args : sequence of tuple
        Positional arguments of each call.
    workers : int
        Number of processes; with 1 the calls run in this process (no pool start-up cost).

    Returns
    -------
    list
        ``[fn(*args) for args in fn_args]``.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if workers == 1 or len(fn_args) <= 1:
        return [fn(*args) for args in fn_args]
    with ProcessPoolExecutor(max_workers=min(workers, len(fn_args))) as pool:
        futures = [pool.submit(fn, *args) for args in fn_args]
        return [future.result() for future in futures]


def mp_get_val_stats(fn_args: Sequence[np.ndarray], workers: int) -> list[dict[str, float]]:
    """:func:`get_val_stats` of several arrays in a pool of processes.

    Parameters
    ----------
    fn_args : sequence of numpy.ndarray
        One array per call.
    workers : int
        Number of processes.

    Returns
    -------
    list[dict[str, float]]
        Statistics of each array, in input order.
    """
    return mp_wrapper(compute_statistics, [(values,) for values in fn_args], workers)
