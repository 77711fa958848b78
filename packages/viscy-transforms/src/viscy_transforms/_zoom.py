"""Deterministic batched zoom by ``torch.nn.functional.interpolate``."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import torch
import torch.nn.functional as F
from monai.transforms import MapTransform, Transform

__all__ = ["BatchedZoom", "BatchedZoomd"]

MODES = ("nearest", "nearest-exact", "linear", "bilinear", "bicubic", "trilinear", "area")


class BatchedZoom(Transform):
    """Zoom a ``(B, C, *spatial)`` batch by ``scale_factor`` with ``torch.nn.functional.interpolate``.

    Parameters
    ----------
    scale_factor : float or tuple of float
        Zoom factor, one for all axes or one per spatial axis (Z, Y, X).
    mode : str
        ``nearest``, ``nearest-exact``, ``linear``, ``bilinear``, ``bicubic``, ``trilinear`` or ``area``.
    align_corners, recompute_scale_factor, antialias
        Passed to ``interpolate``.
    """

    def __init__(
        self,
        scale_factor: float | tuple[float, ...],
        mode: str,
        align_corners: bool | None = None,
        recompute_scale_factor: bool | None = None,
        antialias: bool = False,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}.")
        factors = (scale_factor,) if isinstance(scale_factor, (int, float)) else tuple(scale_factor)
        if not factors or any(isinstance(f, bool) or not isinstance(f, (int, float)) or f <= 0 for f in factors):
            raise ValueError(f"scale_factor must be a positive number or a sequence of them, got {scale_factor!r}.")
        self.scale_factor = scale_factor if isinstance(scale_factor, (int, float)) else factors
        self.mode = mode
        self.align_corners = align_corners
        self.recompute_scale_factor = recompute_scale_factor
        self.antialias = antialias

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        if not isinstance(self.scale_factor, (int, float)) and len(self.scale_factor) != img.ndim - 2:
            raise ValueError(
                f"BatchedZoom: scale_factor {self.scale_factor} has {len(self.scale_factor)} entries "
                f"but the input has {img.ndim - 2} spatial axes (shape {tuple(img.shape)})."
            )
        return F.interpolate(
            img,
            scale_factor=self.scale_factor,
            mode=self.mode,
            align_corners=self.align_corners,
            recompute_scale_factor=self.recompute_scale_factor,
            antialias=self.antialias,
        )


class BatchedZoomd(MapTransform):
    """Dictionary version of :class:`BatchedZoom` (returns a copy).

    Parameters
    ----------
    keys : str or sequence of str
        Keys to zoom.
    scale_factor, mode, align_corners, recompute_scale_factor, antialias
        See :class:`BatchedZoom`.
    allow_missing_keys : bool
        Skip keys absent from the dict instead of raising ``KeyError``.
    """

    def __init__(
        self,
        keys: Sequence[str] | str,
        scale_factor: float | tuple[float, ...],
        mode: str,
        align_corners: bool | None = None,
        recompute_scale_factor: bool | None = None,
        antialias: bool = False,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.zoom = BatchedZoom(scale_factor, mode, align_corners, recompute_scale_factor, antialias)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.zoom(d[key])
        return d
