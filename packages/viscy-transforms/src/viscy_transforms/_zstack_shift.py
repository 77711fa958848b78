"""Batched random integer shift of the Z stack (focus drift)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import torch
from monai.transforms import MapTransform

from viscy_transforms._checks import batch_view, check_ndim, check_same_batch
from viscy_transforms._random import BatchRandomizable

__all__ = ["BatchedRandZStackShiftd"]


class BatchedRandZStackShiftd(MapTransform, BatchRandomizable):
    """Shift each selected sample along Z by a random non-zero integer ``k`` with ``|k| <= max_shift``.

    Content moves to higher Z for ``k > 0`` and to lower Z for ``k < 0``; vacated slices are filled with
    ``cval``. Decisions and shifts are per sample and shared by all keys (source and target stay aligned).

    Parameters
    ----------
    keys : str or sequence of str
        Keys of the ``(B, C, Z, Y, X)`` tensors to shift.
    max_shift : int
        Largest shift in slices (>= 0).
    prob : float
        Per-sample probability of shifting.
    mode : str
        Fill mode of vacated slices; only ``"constant"`` exists.
    cval : float
        Fill value.
    allow_missing_keys : bool
        Skip keys absent from the dict instead of raising ``KeyError``.
    """

    def __init__(
        self,
        keys: Sequence[str] | str,
        max_shift: int = 3,
        prob: float = 0.1,
        mode: str = "constant",
        cval: float = 0.0,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        BatchRandomizable.__init__(self, prob)
        if isinstance(max_shift, bool) or not isinstance(max_shift, int) or max_shift < 0:
            raise ValueError(f"max_shift must be a non-negative int (slices), got {max_shift!r}.")
        if mode != "constant":
            raise ValueError(f"mode must be 'constant' (the only fill mode), got {mode!r}.")
        self.max_shift = max_shift
        self.mode = mode
        self.cval = cval
        self._shift: torch.Tensor | None = None

    def randomize(self, data: torch.Tensor) -> None:
        """Draw per-sample shifts (0 where not selected) for the batch ``data``."""
        n, device = data.shape[0], data.device
        mask = self._coin(n, device)
        # Non-zero shifts only, so that ``prob`` is the probability that a sample actually moves.
        magnitude = (
            self._randint(1, self.max_shift + 1, (n,), device) if self.max_shift else torch.zeros(n, device=device)
        )
        sign = torch.where(self._rand((n,), device) < 0.5, -1, 1)
        shift = (magnitude * sign).long()
        self._shift = torch.where(mask, shift, torch.zeros_like(shift))

    def _apply(self, img: torch.Tensor) -> torch.Tensor:
        z = img.shape[2]
        source = torch.arange(z, device=img.device) - self._shift.unsqueeze(1)  # (B, Z)
        valid = (source >= 0) & (source < z)
        index = batch_view(source.clamp(0, z - 1), 5).transpose(1, 2).expand(-1, img.shape[1], -1, *img.shape[3:])
        out = img.gather(2, index)
        keep = batch_view(valid, 5).transpose(1, 2)
        return torch.where(keep, out, torch.full((), self.cval, dtype=img.dtype, device=img.device))

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        keys = list(self.key_iterator(d))
        if not keys:
            return d
        check_same_batch(d, keys, type(self).__name__)
        for key in keys:
            check_ndim(d[key], (5,), f"{type(self).__name__}[{key!r}]")
        self.randomize(d[keys[0]])
        for key in keys:
            d[key] = self._apply(d[key])
        return d
