"""Stems that turn a (B, C, Z, Y, X) stack into a 2D feature map by folding depth into channels."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import nn


def _fold_depth(x: torch.Tensor) -> torch.Tensor:
    b, c, d, h, w = x.shape
    return x.reshape(b, c * d, h, w)


class UNeXt2Stem(nn.Module):
    """Non-overlapping 3D patchify convolution whose output depth is folded into channels (UNeXt2).

    Parameters
    ----------
    in_channels : int
        Input channels.
    out_channels : int
        Channels of the 2D output (the first width of the 2D encoder).
    kernel_size : sequence of int
        (Z, Y, X) kernel, also used as the stride. ``in_stack_depth`` must be a multiple of the Z kernel
        and ``out_channels`` a multiple of the resulting output depth.
    in_stack_depth : int
        Z size of the input.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Sequence[int], in_stack_depth: int) -> None:
        super().__init__()
        kernel_size = tuple(kernel_size)
        if in_stack_depth % kernel_size[0]:
            raise ValueError(
                f"in_stack_depth={in_stack_depth} must be a multiple of the stem's depth kernel {kernel_size[0]}."
            )
        out_depth = in_stack_depth // kernel_size[0]
        if out_channels % out_depth:
            raise ValueError(
                f"The stem folds in_stack_depth // stem_kernel_size[0] = {in_stack_depth} // {kernel_size[0]} = "
                f"{out_depth} slices into the encoder's {out_channels} input channels, which it does not divide; "
                "choose another in_stack_depth or stem depth kernel."
            )
        self.in_stack_depth = in_stack_depth
        self.conv = nn.Conv3d(in_channels, out_channels // out_depth, kernel_size=kernel_size, stride=kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(B, C, Z, Y, X)`` to ``(B, out_channels, Y / ky, X / kx)``."""
        return _fold_depth(self.conv(x))


class StemDepthtoChannels(nn.Module):
    """3D convolution stem with its own stride whose output depth is folded into the encoder's channels.

    Parameters
    ----------
    in_channels : int
        Input channels.
    in_stack_depth : int
        Z size of the input.
    in_channels_encoder : int
        Channels the 2D encoder expects after the stem.
    stem_kernel_size, stem_stride : sequence of int
        (Z, Y, X) kernel and stride of the 3D convolution. The output depth
        ``(in_stack_depth - kz) // sz + 1`` must divide ``in_channels_encoder``.
    """

    def __init__(
        self,
        in_channels: int,
        in_stack_depth: int,
        in_channels_encoder: int,
        stem_kernel_size: Sequence[int] = (5, 4, 4),
        stem_stride: Sequence[int] = (5, 4, 4),
    ) -> None:
        super().__init__()
        stem_kernel_size, stem_stride = tuple(stem_kernel_size), tuple(stem_stride)
        if len(stem_kernel_size) != 3 or len(stem_stride) != 3 or min(*stem_kernel_size, *stem_stride) < 1:
            raise ValueError(
                f"stem_kernel_size and stem_stride must be 3 positive (Z, Y, X) sizes, got {stem_kernel_size} and "
                f"{stem_stride}."
            )
        if in_stack_depth < stem_kernel_size[0]:
            raise ValueError(
                f"in_stack_depth={in_stack_depth} is smaller than the stem's depth kernel "
                f"stem_kernel_size[0]={stem_kernel_size[0]}."
            )
        out_depth = (in_stack_depth - stem_kernel_size[0]) // stem_stride[0] + 1
        unused = (in_stack_depth - stem_kernel_size[0]) % stem_stride[0]
        if unused:
            # Valid for the reference (checkpoints exist), but almost certainly not what the user meant.
            warnings.warn(
                f"in_stack_depth={in_stack_depth} with stem depth kernel {stem_kernel_size[0]} and stride "
                f"{stem_stride[0]}: the last {unused} slices of every stack are ignored.",
                stacklevel=3,
            )
        if in_channels_encoder % out_depth:
            raise ValueError(
                f"The stem produces {out_depth} slices from in_stack_depth={in_stack_depth} "
                f"(stem_kernel_size[0]={stem_kernel_size[0]}, stem_stride[0]={stem_stride[0]}), which do not divide "
                f"the encoder's {in_channels_encoder} input channels; choose an in_stack_depth whose stem output "
                "divides them."
            )
        self.in_stack_depth = in_stack_depth
        self.conv = nn.Conv3d(
            in_channels, in_channels_encoder // out_depth, kernel_size=stem_kernel_size, stride=stem_stride
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(B, C, Z, Y, X)`` to ``(B, in_channels_encoder, Y', X')``."""
        return _fold_depth(self.conv(x))
