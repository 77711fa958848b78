"""Sampling of the temporal offset tau between an anchor and its positive."""

from __future__ import annotations

import numpy as np

__all__ = ["sample_tau", "tau_probabilities"]


def tau_probabilities(tau_min: int, tau_max: int, decay_rate: float = 2.0, exclude_zero: bool = False) -> np.ndarray:
    """Probabilities of every integer offset in ``[tau_min, tau_max]``.

    Parameters
    ----------
    tau_min, tau_max : int
        Inclusive range of offsets, in frames.
    decay_rate : float
        ``P(tau) ∝ exp(-decay_rate * (tau - tau_min) / (tau_max - tau_min))``; 0 gives a uniform law.
    exclude_zero : bool
        Give ``tau = 0`` probability 0 (an anchor is never its own positive). If 0 is the only
        offset the result is all zeros.

    Returns
    -------
    numpy.ndarray
        ``float64`` probabilities of the offsets ``tau_min, ..., tau_max`` (sum 1 unless empty).

    Raises
    ------
    ValueError
        If ``tau_max < tau_min``.
    """
    if tau_max < tau_min:
        raise ValueError(f"tau_max={tau_max} must be >= tau_min={tau_min}")
    taus = np.arange(tau_min, tau_max + 1)
    span = max(tau_max - tau_min, 1)
    weights = np.exp(-decay_rate * (taus - tau_min) / span)
    if exclude_zero:
        weights[taus == 0] = 0.0
    total = weights.sum()
    return weights / total if total > 0 else weights


def sample_tau(tau_min: int, tau_max: int, rng: np.random.Generator, decay_rate: float = 2.0) -> int:
    """Draw a temporal offset with exponentially decaying probability.

    Parameters
    ----------
    tau_min, tau_max : int
        Inclusive range of offsets, in frames.
    rng : numpy.random.Generator
        Source of randomness (seed it for reproducible draws).
    decay_rate : float
        ``P(tau) ∝ exp(-decay_rate * (tau - tau_min) / (tau_max - tau_min))``; 0 is uniform and
        ``P(tau_max) / P(tau_min) = exp(-decay_rate)``.

    Returns
    -------
    int
        A Python ``int`` in ``[tau_min, tau_max]``; ``tau_min`` when both bounds are equal.

    Raises
    ------
    ValueError
        If ``tau_max < tau_min``.
    """
    if tau_max < tau_min:
        raise ValueError(f"tau_max={tau_max} must be >= tau_min={tau_min}")
    if tau_min == tau_max:
        return int(tau_min)
    probs = tau_probabilities(tau_min, tau_max, decay_rate)
    return int(tau_min + rng.choice(probs.size, p=probs))
