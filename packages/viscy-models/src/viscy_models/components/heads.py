"""Heads that turn a 2D decoder feature map into a (B, C, Z, Y, X) volume."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution, UpSample
from torch import nn


class PixelToVoxelHead(nn.Module):
    """Pixel-shuffle x2, fold channels into ``out_stack_depth + 2`` slices, 3D convolutions, pixel-shuffle x2.

    The 3x3x3 convolution is unpadded in depth, so ``out_stack_depth + 2`` slices become ``out_stack_depth``.

    Parameters
    ----------
    in_channels : int
        Input channels; must be a multiple of ``4 * (out_stack_depth + 2)``.
    out_channels : int
        Output channels.
    out_stack_depth : int
        Output Z size.
    expansion_ratio : int
        Width of the 3D convolution relative to ``4 * out_channels``.
    pool : bool
        Blur the first pixel-shuffle with a pad-and-average-pool (MONAI ``apply_pad_pool``).
    """

    def __init__(
        self, in_channels: int, out_channels: int, out_stack_depth: int, expansion_ratio: int, pool: bool
    ) -> None:
        super().__init__()
        depth = out_stack_depth + 2
        if in_channels % (4 * depth):
            raise ValueError(
                f"PixelToVoxelHead: in_channels={in_channels} must be a multiple of 4 * (out_stack_depth + 2) "
                f"= {4 * depth}."
            )
        self.upsample = UpSample(
            spatial_dims=2,
            in_channels=in_channels,
            out_channels=in_channels // 4,
            scale_factor=2,
            mode="pixelshuffle",
            pre_conv=None,
            apply_pad_pool=pool,
        )
        mid_channels = out_channels * expansion_ratio * 4
        self.conv = nn.Sequential(
            # MONAI's default adds a (parameter-free) instance norm and a PReLU.
            Convolution(
                spatial_dims=3,
                in_channels=in_channels // 4 // depth,
                out_channels=mid_channels,
                kernel_size=3,
                padding=(0, 1, 1),
            ),
            nn.Conv3d(mid_channels, out_channels * 4, kernel_size=1),
        )
        self.out_stack_depth = out_stack_depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(B, in_channels, Y, X)`` to ``(B, out_channels, out_stack_depth, 4 Y, 4 X)``."""
        x = self.upsample(x)
        b, c, h, w = x.shape
        depth = self.out_stack_depth + 2
        x = self.conv(x.reshape(b, c // depth, depth, h, w))
        # Shuffle every slice in 2D: (B, C*4, Z, Y, X) -> (B*Z, C*4, Y, X) keeps the op 4-D (ONNX-exportable).
        _, c4, d, _, _ = x.shape
        x = F.pixel_shuffle(x.transpose(1, 2).reshape(-1, c4, h, w), 2)
        return x.reshape(b, d, c4 // 4, 2 * h, 2 * w).transpose(1, 2)


class PixelToVoxelShuffleHead(nn.Module):
    """Parameter-free head: pixel-shuffle by ``xy_scaling`` and split channels into (C, Z).

    Parameters
    ----------
    in_channels : int
        Input channels; must equal ``out_channels * out_stack_depth * xy_scaling**2``.
    out_channels : int
        Output channels.
    out_stack_depth : int
        Output Z size.
    xy_scaling : int
        Pixel-shuffle factor.
    pool : bool
        Blur the pixel-shuffle with a pad-and-average-pool (MONAI ``apply_pad_pool``).
    """

    def __init__(
        self, in_channels: int, out_channels: int, out_stack_depth: int = 5, xy_scaling: int = 4, pool: bool = False
    ) -> None:
        super().__init__()
        expected = out_channels * out_stack_depth * xy_scaling**2
        if in_channels != expected:
            raise ValueError(
                f"PixelToVoxelShuffleHead: in_channels={in_channels} must equal out_channels * out_stack_depth "
                f"* xy_scaling**2 = {expected}."
            )
        self.out_channels = out_channels
        self.out_stack_depth = out_stack_depth
        self.upsample = UpSample(
            spatial_dims=2,
            in_channels=in_channels,
            out_channels=out_stack_depth * out_channels,
            scale_factor=xy_scaling,
            mode="pixelshuffle",
            pre_conv=None,
            apply_pad_pool=pool,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(B, in_channels, Y, X)`` to ``(B, out_channels, out_stack_depth, s Y, s X)``."""
        x = self.upsample(x)
        b, _, h, w = x.shape
        return x.reshape(b, self.out_channels, self.out_stack_depth, h, w)
