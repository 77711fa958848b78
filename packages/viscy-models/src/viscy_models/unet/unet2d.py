"""2D U-Net with average-pooling encoder, bilinear decoder and residual convolution blocks."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from viscy_models.components.conv_block import ConvBlock2D
from viscy_models.components.validation import (
    check_choice,
    check_divisible,
    check_odd_kernel,
    check_positive_ints,
    default_filters,
)


class Unet2d(nn.Module):
    """2D U-Net for single-slice virtual staining or segmentation.

    Input ``(B, C, 1, Y, X)`` or ``(B, C, Y, X)``; output ``(B, out_channels, 1, Y, X)``.

    Parameters
    ----------
    in_channels, out_channels : int
        Input and output channels.
    kernel_size : tuple of int
        Odd (Y, X) kernel of every convolution, the terminal one included.
    residual : bool
        Use residual 1x1 projections in the encoder and decoder blocks.
    dropout : float
        Channel dropout probability in the encoder and decoder blocks. The reference truncated it to an
        integer (so 0) and never trained with dropout; here the value is honoured in training mode. It has no
        parameters, so checkpoints are unaffected. The terminal block has no dropout.
    num_blocks : int
        Number of down-sampling (and up-sampling) steps; Y and X must be multiples of ``2**num_blocks``.
    num_block_layers : int
        Convolutions per block.
    num_filters : sequence of int
        Channels of the ``num_blocks + 1`` encoder levels; empty means ``16 * 2**i``.
    task : {"seg", "reg"}
        Terminal block: ``"seg"`` ends in a convolution + ReLU (non-negative predictions), ``"reg"`` in a linear
        convolution. Neither has a normalisation (checkpoint format of the reference).
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        kernel_size: tuple[int, int] = (3, 3),
        residual: bool = False,
        dropout: float = 0.2,
        num_blocks: int = 4,
        num_block_layers: int = 2,
        num_filters: tuple[int, ...] = (),
        task: Literal["seg", "reg"] = "seg",
    ) -> None:
        super().__init__()
        model = "Unet2d"
        check_positive_ints(
            model,
            in_channels=in_channels,
            out_channels=out_channels,
            num_blocks=num_blocks,
            num_block_layers=num_block_layers,
        )
        kernel_size = check_odd_kernel(kernel_size, "kernel_size", model, dims=2)
        check_choice(task, "task", model, ("seg", "reg"))
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"Unet2d: dropout must be in [0, 1), got {dropout!r}.")
        self.num_blocks = num_blocks
        self.num_filters = default_filters(num_filters, num_blocks, model)
        down_filters = [in_channels, *self.num_filters]
        block_kwargs = dict(kernel_size=kernel_size, num_repeats=num_block_layers, residual=residual, dropout=dropout)
        self.down_samp = nn.AvgPool2d(kernel_size=2)
        self.up_samp = nn.Upsample(scale_factor=2, mode="bilinear")
        self.down_conv_blocks = [
            ConvBlock2D(down_filters[i], down_filters[i + 1], **block_kwargs) for i in range(num_blocks)
        ]
        for i, block in enumerate(self.down_conv_blocks):
            self.register_module(f"down_conv_block_{i}", block)
        self.bottom_transition_block = ConvBlock2D(self.num_filters[-2], self.num_filters[-1], **block_kwargs)
        self.up_conv_blocks = [
            ConvBlock2D(self.num_filters[-(i + 1)] + self.num_filters[-(i + 2)], down_filters[-(i + 2)], **block_kwargs)
            for i in range(num_blocks)
        ]
        for i, block in enumerate(self.up_conv_blocks):
            self.register_module(f"up_conv_block_{i}", block)
        self.terminal_block = ConvBlock2D(
            down_filters[1],
            out_channels,
            kernel_size=kernel_size,
            num_repeats=1,
            norm="none",
            activation="relu" if task == "seg" else "linear",
            residual=False,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predict ``(B, out_channels, 1, Y, X)`` from ``(B, C, 1, Y, X)`` or ``(B, C, Y, X)``."""
        if x.ndim == 5:
            if x.shape[2] != 1:
                raise ValueError(f"Unet2d takes a single Z slice, got input shape {tuple(x.shape)}.")
            x = x[:, :, 0]
        elif x.ndim != 4:
            raise ValueError(f"Unet2d takes (B, C, 1, Y, X) or (B, C, Y, X) input, got {tuple(x.shape)}.")
        check_divisible(x.shape[-2:], 2**self.num_blocks, "Unet2d", "Y and X")
        skips = []
        for block in self.down_conv_blocks:
            x = block(x)
            skips.append(x)
            x = self.down_samp(x)
        x = self.bottom_transition_block(x)
        for block, skip in zip(self.up_conv_blocks, reversed(skips)):
            x = block(torch.cat([self.up_samp(x), skip], dim=1))
        return self.terminal_block(x).unsqueeze(2)
