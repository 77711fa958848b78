"""2.5D U-Net: 3D convolutions in the encoder, a learned Z compression of every level, 2D-like decoder."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from viscy_models.components.conv_block import ConvBlock3D
from viscy_models.components.validation import (
    check_choice,
    check_divisible,
    check_odd_kernel,
    check_positive_ints,
    default_filters,
)


class Unet25d(nn.Module):
    """2.5D U-Net: predicts ``out_stack_depth`` slices from a stack of ``in_stack_depth`` slices.

    The encoder convolves in 3D with 'same' padding, each skip connection and the bottleneck are compressed
    from ``in_stack_depth`` to ``out_stack_depth`` slices by a learned (depth, 1, 1) convolution, and the
    decoder convolves with (1, ky, kx) kernels. Input ``(B, in_channels, in_stack_depth, Y, X)``, output
    ``(B, out_channels, out_stack_depth, Y, X)``.

    Parameters
    ----------
    in_channels, out_channels : int
        Input and output channels.
    in_stack_depth, out_stack_depth : int
        Input and output Z sizes (``out_stack_depth <= in_stack_depth``).
    xy_kernel_size : tuple of int
        Odd (Y, X) kernel of the block convolutions; the encoder uses (3, ky, kx), the decoder (1, ky, kx). The
        terminal convolution is always (1, 3, 3), as in the reference.
    residual : bool
        Use residual connections in the encoder and decoder blocks.
    dropout : float
        Channel dropout probability in [0, 0.5] after every block convolution (training mode only), and after the
        terminal convolution with ``task="seg"``, as in the reference.
    num_blocks : int
        Number of down-sampling steps; Y and X must be multiples of ``2**num_blocks``.
    num_block_layers : int
        Convolutions per block.
    num_filters : sequence of int
        Channels of the ``num_blocks + 1`` encoder levels; empty means ``16 * 2**i``.
    task : {"seg", "reg"}
        Terminal block: ``"seg"`` is a convolution, dropout, ReLU and batch normalisation; ``"reg"`` a linear
        convolution without normalisation (checkpoint format of the reference).
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        in_stack_depth: int = 5,
        out_stack_depth: int = 1,
        xy_kernel_size: tuple[int, int] = (3, 3),
        residual: bool = False,
        dropout: float = 0.2,
        num_blocks: int = 4,
        num_block_layers: int = 2,
        num_filters: tuple[int, ...] = (),
        task: Literal["seg", "reg"] = "seg",
    ) -> None:
        super().__init__()
        model = "Unet25d"
        check_positive_ints(
            model,
            in_channels=in_channels,
            out_channels=out_channels,
            in_stack_depth=in_stack_depth,
            out_stack_depth=out_stack_depth,
            num_blocks=num_blocks,
            num_block_layers=num_block_layers,
        )
        if out_stack_depth > in_stack_depth:
            raise ValueError(
                f"Unet25d: out_stack_depth must be between 1 and in_stack_depth={in_stack_depth}, "
                f"got {out_stack_depth}."
            )
        ky, kx = check_odd_kernel(xy_kernel_size, "xy_kernel_size", model, dims=2)
        check_choice(task, "task", model, ("seg", "reg"))
        if not 0.0 <= dropout <= 0.5:
            raise ValueError(f"Unet25d: dropout must be in [0, 0.5] (as in the reference), got {dropout!r}.")
        self.num_blocks = num_blocks
        self.in_stack_depth = in_stack_depth
        self.out_stack_depth = out_stack_depth
        self.num_filters = default_filters(num_filters, num_blocks, model)
        down_filters = [in_channels, *self.num_filters]
        common = dict(num_repeats=num_block_layers, residual=residual, dropout=dropout)
        z_compression = (1 + in_stack_depth - out_stack_depth, 1, 1)
        self.down_samp = nn.AvgPool3d(kernel_size=(1, 2, 2))
        self.up_samp = nn.Upsample(scale_factor=(1, 2, 2), mode="trilinear")
        # Registration order fixes the state_dict order: down blocks, bottleneck, up blocks, skips, terminal.
        self.down_conv_blocks = [
            ConvBlock3D(down_filters[i], down_filters[i + 1], kernel_size=(3, ky, kx), **common)
            for i in range(num_blocks)
        ]
        for i, block in enumerate(self.down_conv_blocks):
            self.register_module(f"down_conv_block_{i}", block)
        self.bottom_transition_block = nn.Conv3d(self.num_filters[-2], self.num_filters[-1], z_compression)
        self.up_conv_blocks = [
            ConvBlock3D(
                self.num_filters[-(i + 1)] + self.num_filters[-(i + 2)],
                down_filters[-(i + 2)],
                kernel_size=(1, ky, kx),
                **common,
            )
            for i in range(num_blocks)
        ]
        for i, block in enumerate(self.up_conv_blocks):
            self.register_module(f"up_conv_block_{i}", block)
        self.skip_conv_layers = [nn.Conv3d(f, f, z_compression) for f in down_filters[1:-1]]
        for i, layer in enumerate(self.skip_conv_layers):
            self.register_module(f"skip_conv_layer_{i}", layer)
        # The terminal kernel is (1, 3, 3) whatever xy_kernel_size is (checkpoint format of the reference).
        seg = task == "seg"
        self.terminal_block = ConvBlock3D(
            down_filters[1],
            out_channels,
            kernel_size=(1, 3, 3),
            num_repeats=1,
            norm="batch" if seg else "none",
            activation="relu" if seg else "linear",
            residual=False,
            dropout=dropout if seg else 0.0,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predict ``(B, out_channels, out_stack_depth, Y, X)`` from ``(B, C, in_stack_depth, Y, X)``."""
        if x.ndim != 5 or x.shape[2] != self.in_stack_depth:
            raise ValueError(
                f"Unet25d expects (B, C, {self.in_stack_depth}, Y, X) input (in_stack_depth={self.in_stack_depth}),"
                f" got {tuple(x.shape)}."
            )
        check_divisible(x.shape[-2:], 2**self.num_blocks, "Unet25d", "Y and X")
        skips = []
        for block, skip_conv in zip(self.down_conv_blocks, self.skip_conv_layers):
            x = block(x)
            skips.append(skip_conv(x))
            x = self.down_samp(x)
        x = self.bottom_transition_block(x)
        for block, skip in zip(self.up_conv_blocks, reversed(skips)):
            x = block(torch.cat([self.up_samp(x), skip], dim=1))
        return self.terminal_block(x)
