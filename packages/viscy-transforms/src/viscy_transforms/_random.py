"""Per-sample random draws from torch, reproducible by ``torch.manual_seed`` or ``set_random_state``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.transforms import RandomizableTransform

__all__ = ["BatchRandomizable", "TorchRNGMixin", "check_prob"]


class TorchRNGMixin:
    """Per-sample draws from torch for MONAI ``Randomizable`` transforms.

    Draws use torch's global RNG on the input's device, so ``torch.manual_seed`` (and Lightning's
    ``seed_everything``) make them reproducible. After ``set_random_state(seed)`` (which MONAI
    ``Compose.set_random_state`` calls) the transform switches to private torch generators seeded
    from its MONAI ``R``, so a composed pipeline is reproducible without touching global state.
    """

    _torch_seed: int | None = None

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        """Seed MONAI's ``R`` and the private torch generators; no arguments return to the global torch RNG."""
        super().set_random_state(seed=seed, state=state)
        if seed is None and state is None:
            self._torch_seed = None
        else:
            self._torch_seed = int(self.R.randint(0, 2**62, dtype=np.int64))
        self._generators = {}
        return self

    def _generator(self, device: torch.device) -> torch.Generator | None:
        if self._torch_seed is None:
            return None
        generators = self.__dict__.setdefault("_generators", {})
        key = str(device)
        if key not in generators:
            generators[key] = torch.Generator(device=device).manual_seed(self._torch_seed)
        return generators[key]

    def _rand(self, shape: Sequence[int], device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.rand(tuple(shape), generator=self._generator(device), device=device, dtype=dtype)

    def _randn(self, shape: Sequence[int], device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.randn(tuple(shape), generator=self._generator(device), device=device, dtype=dtype)

    def _uniform(self, low: float, high: float, shape: Sequence[int], device: torch.device) -> torch.Tensor:
        return low + (high - low) * self._rand(shape, device)

    def _randint(self, low, high, shape: Sequence[int], device: torch.device) -> torch.Tensor:
        """Integers uniform in ``[low, high)``; bounds may be tensors broadcasting against ``shape``."""
        low = torch.as_tensor(low, device=device)
        span = torch.as_tensor(high, device=device) - low
        u = self._rand(shape, device, dtype=torch.float64)
        return low + torch.minimum((u * span).floor().long(), span - 1)


class BatchRandomizable(TorchRNGMixin, RandomizableTransform):
    """MONAI ``RandomizableTransform`` with per-sample torch draws (see :class:`TorchRNGMixin`).

    Parameters
    ----------
    prob : float
        Per-sample probability of applying the transform, validated to lie in [0, 1].
    """

    # ``prob`` has a default because MONAI's ``MapTransform.__init__`` calls ``super().__init__()`` without it;
    # dictionary subclasses call this again with their own ``prob``.
    def __init__(self, prob: float = 1.0, do_transform: bool = True) -> None:
        check_prob(prob)
        RandomizableTransform.__init__(self, prob=prob, do_transform=do_transform)

    def _coin(self, n: int, device: torch.device) -> torch.Tensor:
        """Independent Bernoulli(``prob``) decisions, one per sample, as a bool tensor of shape ``(n,)``."""
        return self._rand((n,), device) < self.prob


def check_prob(prob: float, name: str = "prob") -> None:
    """Raise ``ValueError`` unless ``prob`` is a number in [0, 1]."""
    if isinstance(prob, bool) or not isinstance(prob, (int, float, np.number)) or not 0.0 <= float(prob) <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {prob!r}.")
