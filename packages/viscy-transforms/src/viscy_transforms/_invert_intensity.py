"""Random intensity inversion (negation), one decision per call."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

from monai.transforms import MapTransform, RandomizableTransform

from viscy_transforms._random import check_prob

__all__ = ["RandInvertIntensityd"]


class RandInvertIntensityd(MapTransform, RandomizableTransform):
    """Negate every listed key (``-x``) with probability ``prob``, one MONAI ``R`` draw per call.

    Works on any shape: called on single samples it decides per sample, called on a batch per batch.

    Parameters
    ----------
    keys : str or sequence of str
        Keys to invert; they share the decision.
    prob : float
        Probability of inverting.
    allow_missing_keys : bool
        Skip keys absent from the dict instead of raising ``KeyError``.
    """

    def __init__(self, keys: Sequence[str] | str, prob: float = 0.1, allow_missing_keys: bool = False) -> None:
        check_prob(prob)
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        self.randomize(None)
        keys = list(self.key_iterator(d))
        if self._do_transform:
            for key in keys:
                d[key] = -d[key]
        return d
