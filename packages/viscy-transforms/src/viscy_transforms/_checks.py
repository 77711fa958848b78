"""Argument validation and small tensor helpers shared by the transforms."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence

import numpy as np
import torch

__all__ = [
    "as_range",
    "batch_view",
    "check_ndim",
    "check_same_batch",
    "first_present",
]


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool)


def as_range(value, name: str, symmetric_scalar: bool = True, positive: bool = False) -> tuple[float, float]:
    """Turn a scalar or a ``(min, max)`` pair into a ``(low, high)`` tuple.

    Parameters
    ----------
    value : float or sequence of two floats
        A scalar ``s`` means ``(-|s|, |s|)`` when ``symmetric_scalar`` else the fixed value ``(s, s)``.
        A pair is sorted, so ``(max, min)`` is accepted as well.
    name : str
        Argument name used in error messages.
    symmetric_scalar : bool
        Interpretation of a scalar, see above.
    positive : bool
        Require ``low > 0``.

    Returns
    -------
    tuple of float
        ``(low, high)`` with ``low <= high``.
    """
    if _is_number(value):
        s = float(value)
        low, high = (-abs(s), abs(s)) if symmetric_scalar else (s, s)
    elif isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2 and all(map(_is_number, value)):
        low, high = sorted(float(v) for v in value)
    else:
        raise ValueError(f"{name} must be a number or a (min, max) pair of numbers, got {value!r}.")
    if not (np.isfinite(low) and np.isfinite(high)):
        raise ValueError(f"{name} must be finite, got {value!r}.")
    if positive and low <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}.")
    return low, high


def batch_view(values: torch.Tensor, ndim: int) -> torch.Tensor:
    """Reshape per-sample values ``(B,)`` or ``(B, C)`` to broadcast against a ``ndim`` tensor."""
    return values.reshape(values.shape + (1,) * (ndim - values.ndim))


def check_ndim(img: torch.Tensor, allowed: Iterable[int], who: str) -> None:
    """Raise ``ValueError`` naming ``who`` unless ``img`` is a tensor whose rank is in ``allowed``."""
    allowed = tuple(allowed)
    if not isinstance(img, torch.Tensor):
        raise TypeError(f"{who} expects a torch.Tensor, got {type(img).__name__}.")
    if img.ndim not in allowed:
        layouts = " or ".join(f"{n}-D" for n in allowed)
        raise ValueError(f"{who} expects a {layouts} (B, C, ...) tensor, got shape {tuple(img.shape)}.")


def first_present(data: Mapping[Hashable, object], keys: Iterable[Hashable]) -> torch.Tensor | None:
    """Return the value of the first of ``keys`` present in ``data`` (``None`` when none is)."""
    for key in keys:
        if key in data:
            return data[key]
    return None


def check_same_batch(data: Mapping[Hashable, torch.Tensor], keys: Sequence[Hashable], who: str) -> None:
    """Raise ``ValueError`` naming the key whose batch size or spatial shape differs from the first key's."""
    ref_key = keys[0]
    ref = data[ref_key]
    for key in keys[1:]:
        if data[key].shape[0] != ref.shape[0]:
            raise ValueError(
                f"{who}: key {key!r} has batch size {data[key].shape[0]} but {ref_key!r} has {ref.shape[0]}; "
                "all keys share one random draw per sample."
            )


def check_aligned_volumes(data: Mapping[Hashable, torch.Tensor], keys: Sequence[Hashable], who: str) -> None:
    """Check that every key holds a ``(B, C, Z, Y, X)`` tensor with the first key's batch size and spatial shape.

    Transforms that warp or permute voxels with one draw shared by all keys need this; the error names
    the offending key.
    """
    check_same_batch(data, keys, who)
    ref_key = keys[0]
    for key in keys:
        check_ndim(data[key], (5,), f"{who}[{key!r}]")
        if data[key].shape[2:] != data[ref_key].shape[2:]:
            raise ValueError(
                f"{who}: key {key!r} has spatial shape {tuple(data[key].shape[2:])}, "
                f"{ref_key!r} has {tuple(data[ref_key].shape[2:])}."
            )
