"""Gaussian noise: per-call tensor transforms (MONAI semantics) and per-sample batched transforms."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.transforms import RandGaussianNoise, RandGaussianNoised, RandomizableTransform
from monai.utils.type_conversion import get_equivalent_dtype

from viscy_transforms._batched_dict import BatchedRandDictTransform
from viscy_transforms._checks import batch_view
from viscy_transforms._random import BatchRandomizable, check_prob
from viscy_transforms._selection import merge_selected

__all__ = [
    "BatchedRandGaussianNoise",
    "BatchedRandGaussianNoised",
    "RandGaussianNoiseTensor",
    "RandGaussianNoiseTensord",
]


def _check_std(std: float) -> None:
    if isinstance(std, bool) or not isinstance(std, (int, float, np.number)) or std < 0:
        raise ValueError(f"std must be a non-negative number, got {std!r}.")


class RandGaussianNoiseTensor(RandGaussianNoise):
    """MONAI ``RandGaussianNoise`` that generates the noise with torch directly on the input's device.

    One Bernoulli(``prob``) decision per call (MONAI ``R``); the noise is seeded from ``R`` too, so
    ``set_random_state`` makes it reproducible. Same constructor as MONAI ``RandGaussianNoise``.

    Parameters
    ----------
    prob : float
        Probability of adding noise.
    mean : float
        Mean of the noise.
    std : float
        Standard deviation of the noise (upper bound of a uniform draw when ``sample_std``).
    dtype : numpy or torch dtype
        Output dtype.
    sample_std : bool
        Draw the standard deviation from ``U(0, std)`` on every call.
    """

    def __init__(self, prob: float = 0.1, mean: float = 0.0, std: float = 0.1, dtype=np.float32, sample_std=True):
        check_prob(prob)
        _check_std(std)
        super().__init__(prob=prob, mean=mean, std=std, dtype=dtype, sample_std=sample_std)
        self._noise_seed: int | None = None
        self._std_drawn = float(std)

    def randomize(self, img: torch.Tensor, mean: float | None = None) -> None:
        """Draw the decision, the standard deviation and the noise seed."""
        RandomizableTransform.randomize(self, None)
        if not self._do_transform:
            return
        self._std_drawn = float(self.R.uniform(0, self.std)) if self.sample_std else float(self.std)
        self._noise_seed = int(self.R.randint(0, 2**62, dtype=np.int64))

    def __call__(self, img: torch.Tensor, mean: float | None = None, randomize: bool = True) -> torch.Tensor:
        img = torch.as_tensor(img)
        if randomize:
            self.randomize(img, mean)
        out_dtype = get_equivalent_dtype(self.dtype, torch.Tensor) if self.dtype is not None else img.dtype
        if not self._do_transform:
            return img.to(out_dtype)
        if self._noise_seed is None:
            raise RuntimeError(f"{type(self).__name__}: call with randomize=True before randomize=False.")
        work = img.dtype if img.is_floating_point() else torch.float32
        gen = torch.Generator(device=img.device).manual_seed(self._noise_seed)
        noise = torch.randn(img.shape, generator=gen, device=img.device, dtype=work)
        offset = self.mean if mean is None else mean
        return (img + (offset + self._std_drawn * noise)).to(out_dtype)


class RandGaussianNoiseTensord(RandGaussianNoised):
    """Dictionary version of :class:`RandGaussianNoiseTensor` (MONAI ``RandGaussianNoised`` semantics).

    One decision per call; the same noise tensor is added to every key (their shapes must match).

    Parameters
    ----------
    keys : str or sequence of str
        Keys to add noise to.
    prob, mean, std, dtype, sample_std
        See :class:`RandGaussianNoiseTensor`.
    allow_missing_keys : bool
        Skip keys absent from the dict instead of raising ``KeyError``.
    """

    def __init__(
        self,
        keys: Sequence[str] | str,
        prob: float = 0.1,
        mean: float = 0.0,
        std: float = 0.1,
        dtype=np.float32,
        allow_missing_keys: bool = False,
        sample_std: bool = True,
    ) -> None:
        check_prob(prob)
        _check_std(std)
        super().__init__(keys, prob, mean, std, dtype, allow_missing_keys, sample_std)
        self.rand_gaussian_noise = RandGaussianNoiseTensor(1.0, mean, std, dtype, sample_std)


class BatchedRandGaussianNoise(BatchRandomizable):
    """Add Gaussian noise to each sample of a batch independently.

    Every sample gets its own Bernoulli(``prob``) decision, its own standard deviation (``U(0, std)`` when
    ``sample_std``) and its own noise field, generated with torch on the input's device.

    Parameters
    ----------
    prob : float
        Per-sample probability of adding noise.
    mean : float
        Mean of the noise.
    std : float
        Standard deviation of the noise (upper bound of a per-sample uniform draw when ``sample_std``).
    dtype : numpy or torch dtype
        Output dtype for non-floating inputs; floating inputs keep their dtype (mixed precision stays intact).
    sample_std : bool
        Draw each sample's standard deviation from ``U(0, std)``.
    """

    def __init__(self, prob: float = 0.1, mean: float = 0.0, std: float = 0.1, dtype=np.float32, sample_std=True):
        super().__init__(prob)
        _check_std(std)
        self.mean = mean
        self.std = std
        self.dtype = dtype
        self.sample_std = sample_std
        self._noise: torch.Tensor | None = None

    def _work_dtype(self, img: torch.Tensor) -> torch.dtype:
        if img.is_floating_point():
            return img.dtype
        return get_equivalent_dtype(self.dtype, torch.Tensor) if self.dtype is not None else torch.float32

    def randomize(self, img: torch.Tensor, mean: float | None = None) -> None:
        """Draw per-sample decisions, standard deviations and noise fields for the batch ``img``.

        Noise is generated for the selected samples only: drawing normal variates is the cost of this
        transform, and with ``prob=0.5`` half of them would be multiplied by zero.
        """
        n, device = img.shape[0], img.device
        mask = self._coin(n, device)
        if self.sample_std:
            std = self._uniform(0.0, self.std, (n,), device)
        else:
            std = torch.full((n,), float(self.std), device=device)
        dtype = self._work_dtype(img)
        selected = mask.nonzero().squeeze(1)
        noise = self._randn((selected.numel(), *img.shape[1:]), device, dtype=dtype)
        offset = float(self.mean if mean is None else mean)
        self._shape, self._dtype, self._selected = tuple(img.shape), dtype, selected
        self._noise = noise.mul_(batch_view(std[selected].to(dtype), img.ndim)).add_(offset)

    def __call__(self, img: torch.Tensor, mean: float | None = None, randomize: bool = True) -> torch.Tensor:
        if not isinstance(img, torch.Tensor) or img.ndim < 2:
            raise ValueError(f"{type(self).__name__} expects a (B, C, ...) tensor, got {getattr(img, 'shape', img)}.")
        if randomize:
            self.randomize(img, mean)
        if self._noise is None:
            raise RuntimeError(f"{type(self).__name__}: call with randomize=True before randomize=False.")
        if self._shape != tuple(img.shape):
            raise ValueError(f"{type(self).__name__}: noise was drawn for shape {self._shape}, got {tuple(img.shape)}.")
        if self._selected.numel() == img.shape[0]:
            return img.to(self._dtype) + self._noise
        noisy = img.index_select(0, self._selected).to(self._dtype).add_(self._noise)
        return merge_selected(img, self._selected, noisy)


class BatchedRandGaussianNoised(BatchedRandDictTransform):
    """Dictionary version of :class:`BatchedRandGaussianNoise`.

    Gating, standard deviation and noise field are drawn per sample, and the identical noise is added to
    every key (their shapes must match).

    Parameters
    ----------
    keys : str or sequence of str
        Keys to add noise to.
    prob, mean, std, dtype, sample_std
        See :class:`BatchedRandGaussianNoise`.
    allow_missing_keys : bool
        Skip keys absent from the dict instead of raising ``KeyError``.
    """

    def __init__(
        self,
        keys: Sequence[str] | str,
        prob: float = 0.1,
        mean: float = 0.0,
        std: float = 0.1,
        dtype=np.float32,
        allow_missing_keys: bool = False,
        sample_std: bool = True,
    ) -> None:
        super().__init__(keys, BatchedRandGaussianNoise(prob, mean, std, dtype, sample_std), allow_missing_keys)
