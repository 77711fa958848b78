"""Convolutional blocks of the 2D and 2.5D U-Nets: repeated convolution, activation, normalisation.

The parameter names (``Conv2d_0``, ``batch_norm_0``, ``resid_conv``) are part of the checkpoint format of
``Unet2d`` and ``Unet25d`` and must not change.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

_ACTIVATIONS = {"relu": nn.ReLU, "linear": nn.Identity}


class _ConvBlockNd(nn.Module):
    """Shared implementation of :class:`ConvBlock2D` and :class:`ConvBlock3D`."""

    _dims: int

    def __init__(
        self,
        in_filters: int,
        out_filters: int,
        kernel_size: int | tuple[int, ...] = 3,
        num_repeats: int = 2,
        norm: Literal["batch", "none"] = "batch",
        activation: Literal["relu", "linear"] = "relu",
        residual: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if isinstance(kernel_size, int):
            kernel_size = (kernel_size,) * self._dims
        kernel_size = tuple(kernel_size)
        if len(kernel_size) != self._dims or any(k % 2 == 0 for k in kernel_size):
            raise ValueError(f"kernel_size must be {self._dims} odd integers, got {kernel_size}.")
        if norm not in ("batch", "none"):
            raise ValueError(f"norm must be 'batch' or 'none', got {norm!r}.")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}.")
        self.in_filters = in_filters
        self.out_filters = out_filters
        self.num_repeats = num_repeats
        self.residual = residual
        conv = nn.Conv2d if self._dims == 2 else nn.Conv3d
        batch_norm = nn.BatchNorm2d if self._dims == 2 else nn.BatchNorm3d
        dropout_layer = nn.Dropout2d if self._dims == 2 else nn.Dropout3d
        # Registration order fixes the state_dict order of the checkpoints: norms, convolutions, residual.
        self.norms = [] if norm == "none" else [batch_norm(out_filters) for _ in range(num_repeats)]
        for i, layer in enumerate(self.norms):
            self.register_module(f"batch_norm_{i}", layer)
        self.convs = [
            conv(in_filters if i == 0 else out_filters, out_filters, kernel_size, padding="same")
            for i in range(num_repeats)
        ]
        for i, layer in enumerate(self.convs):
            self.register_module(f"Conv{self._dims}d_{i}", layer)
        # The 1x1 projection is always part of the checkpoint, even where it is unused (see _shortcut).
        self.resid_conv = conv(in_filters, out_filters, kernel_size=1)
        self.act = _ACTIVATIONS[activation]()
        self.drop = dropout_layer(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply ``num_repeats`` times convolution, dropout, activation and normalisation, then the residual."""
        x_0 = x
        for i, conv in enumerate(self.convs):
            # The reference's order: dropout acts on the convolution output, before activation and norm.
            x = self.act(self.drop(conv(x)))
            if self.norms:
                x = self.norms[i](x)
        if self.residual:
            x = x + self._shortcut(x_0)
        return x

    def _shortcut(self, x: torch.Tensor) -> torch.Tensor:
        # Checkpoint semantics: only a narrowing block projects with resid_conv; a widening block
        # zero-pads the missing channels in front of the input channels.
        if self.in_filters > self.out_filters:
            return self.resid_conv(x)
        if self.in_filters < self.out_filters:
            return F.pad(x, (0, 0) * self._dims + (self.out_filters - self.in_filters, 0))
        return x


class ConvBlock2D(_ConvBlockNd):
    """Repeated 2D convolution, (dropout,) activation and batch normalisation with an optional 1x1 residual.

    Parameters
    ----------
    in_filters, out_filters : int
        Input and output channels; the first convolution maps between them, later ones keep ``out_filters``.
    kernel_size : int or tuple of int
        Odd kernel size of every convolution ('same' padding).
    num_repeats : int
        Number of convolution, activation, normalisation repeats.
    norm : {"batch", "none"}
        Batch normalisation after each activation, or none.
    activation : {"relu", "linear"}
        Activation after each convolution.
    residual : bool
        Add the input to the output: projected by the 1x1 ``resid_conv`` when the block narrows the channels,
        zero-padded in front when it widens them (checkpoint semantics of the reference; ``resid_conv`` then
        receives no gradient).
    dropout : float
        Channel dropout probability after each convolution (0 disables it).
    """

    _dims = 2


class ConvBlock3D(_ConvBlockNd):
    """Repeated 3D convolution, activation and batch normalisation with an optional 1x1x1 residual.

    Parameters are those of :class:`ConvBlock2D`, with 3D kernels.
    """

    _dims = 3
