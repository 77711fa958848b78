"""Beta-VAE built on MONAI's VarAutoEncoder (2D or 3D)."""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import torch
from monai.networks.nets import VarAutoEncoder
from torch import nn

from viscy_models.components.validation import check_choice


class BetaVaeMonai(nn.Module):
    """MONAI ``VarAutoEncoder`` returning ``SimpleNamespace(recon_x, mean, logvar, z)``.

    In training mode ``z = mean + eps * exp(logvar / 2)``; in eval mode MONAI uses
    ``z = mean + exp(logvar / 2)`` without noise (kept: checkpoints and outputs depend on it).

    Parameters
    ----------
    spatial_dims : int
        2 or 3.
    in_shape : sequence of int
        (C, *spatial) shape of one input sample.
    out_channels : int
        Channels of the reconstruction.
    latent_size : int
        Latent dimension.
    channels, strides : sequence of int
        Channels and strides of the encoder levels.
    kernel_size, up_kernel_size : int
        Kernel sizes of the encoder and decoder convolutions.
    num_res_units : int
        Residual units per level.
    use_sigmoid : bool
        Apply a sigmoid to the reconstruction.
    norm : {"batch", "instance"}
        Normalisation of the encoder and decoder layers.
    **kwargs
        Further ``VarAutoEncoder`` arguments (``act``, ``dropout``, ``bias``, ...).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_shape: Sequence[int],
        out_channels: int,
        latent_size: int,
        channels: Sequence[int],
        strides: Sequence[int],
        kernel_size: int = 3,
        up_kernel_size: int = 3,
        num_res_units: int = 0,
        use_sigmoid: bool = False,
        norm: str = "instance",
        **kwargs: Any,
    ) -> None:
        super().__init__()
        check_choice(spatial_dims, "spatial_dims", "BetaVaeMonai", (2, 3))
        check_choice(norm, "norm", "BetaVaeMonai", ("batch", "instance"))
        if len(channels) == 0:
            raise ValueError("BetaVaeMonai: channels must give at least one encoder level, got ().")
        if len(in_shape) != spatial_dims + 1:
            raise ValueError(
                f"BetaVaeMonai: in_shape must be (C, *spatial) with spatial_dims={spatial_dims} spatial sizes, "
                f"got {tuple(in_shape)}."
            )
        if len(channels) != len(strides):
            raise ValueError(
                f"BetaVaeMonai: channels {tuple(channels)} and strides {tuple(strides)} must have one entry per level."
            )
        self.in_shape = tuple(in_shape)
        self.model = VarAutoEncoder(
            spatial_dims=spatial_dims,
            in_shape=in_shape,
            out_channels=out_channels,
            latent_size=latent_size,
            channels=channels,
            strides=strides,
            kernel_size=kernel_size,
            up_kernel_size=up_kernel_size,
            num_res_units=num_res_units,
            use_sigmoid=use_sigmoid,
            norm=norm,
            **kwargs,
        )

    def forward(self, x: torch.Tensor) -> SimpleNamespace:
        """Encode, sample and decode ``x`` of shape ``(B, *in_shape)``."""
        if tuple(x.shape[1:]) != self.in_shape:
            raise ValueError(f"BetaVaeMonai expects (B, *in_shape) = (B, *{self.in_shape}), got {tuple(x.shape)}.")
        recon_x, mean, logvar, z = self.model(x)
        return SimpleNamespace(recon_x=recon_x, mean=mean, logvar=logvar, z=z)
