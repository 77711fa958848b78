"""timm backbone construction without silent downloads, and its total down-sampling."""

from __future__ import annotations

from typing import Any

import timm
from torch import nn


def create_timm_backbone(name: str, pretrained: bool, **kwargs: Any) -> nn.Module:
    """Create a timm model, turning a failed weight download into an error that says what to do.

    Parameters
    ----------
    name : str
        timm model name, for example ``"convnextv2_tiny"``.
    pretrained : bool
        Load timm's pretrained weights (needs network access or a populated Hugging Face cache).
    **kwargs
        Passed to :func:`timm.create_model`.

    Returns
    -------
    torch.nn.Module
        The timm model.
    """
    try:
        return timm.create_model(name, pretrained=pretrained, **kwargs)
    except RuntimeError as err:
        if "Unknown model" in str(err):
            raise ValueError(f"Unknown timm backbone {name!r}.") from err
        raise
    except OSError as err:
        raise RuntimeError(
            f"Could not fetch pretrained weights for timm backbone {name!r} ({err}). "
            "Use pretrained=False offline, or pre-populate the Hugging Face cache."
        ) from err


def feature_reduction(encoder: nn.Module, stem_stride: int) -> int:
    """Return the total XY down-sampling of a ``features_only`` timm encoder whose first stem layer was replaced.

    Parameters
    ----------
    encoder : torch.nn.Module
        A timm ``features_only`` model.
    stem_stride : int
        XY stride of the replacement stem.

    Returns
    -------
    int
        Down-sampling of the last feature map relative to the input of the replacement stem.
    """
    reductions = encoder.feature_info.reduction()
    # The first feature (convnext stem / resnet act1) is taken right after the replaced stem convolution.
    return reductions[-1] // reductions[0] * stem_stride
