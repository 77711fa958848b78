"""2D decoders: up-sampling stages with skip connections (UNeXt2, FCMAE) and without (VAE)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from monai.networks.blocks import ResidualUnit, UnetResBlock, UpSample
from monai.networks.blocks.dynunet_block import get_conv_layer
from timm.layers import LayerNorm, LayerNorm2d
from timm.models.convnext import ConvNeXtStage
from torch import nn

DecoderMode = Literal["pixelshuffle", "deconv"]


def _check_mode(mode: str) -> None:
    if mode not in ("pixelshuffle", "deconv"):
        raise ValueError(f"Decoder mode must be 'pixelshuffle' or 'deconv', got {mode!r}.")


def _pixelshuffle(
    in_channels: int, scale_factor: int, pre_conv: bool | Literal["default"] | nn.Module | None
) -> UpSample:
    if in_channels % scale_factor**2:
        raise ValueError(
            f"Pixel-shuffle by {scale_factor} needs channels divisible by {scale_factor**2}, got {in_channels}."
        )
    return UpSample(
        spatial_dims=2,
        in_channels=in_channels,
        out_channels=in_channels // scale_factor**2,
        scale_factor=scale_factor,
        mode="pixelshuffle",
        # True means MONAI's default 3x3 convolution; a module is used as is.
        pre_conv="default" if pre_conv is True else (None if pre_conv is False else pre_conv),
        apply_pad_pool=False,
    )


class UNeXt2UpStage(nn.Module):
    """Up-sample, concatenate the skip features, then convolve.

    ``pixelshuffle`` mode: pixel-shuffle (optionally after a 3x3 convolution) and a timm ConvNeXt-V2 stage
    (``conv_blocks`` blocks with GRN, no layer scale); ``norm_name`` is unused. ``deconv`` mode: a transposed
    convolution to ``skip_channels``, then a MONAI residual block with ``norm_name`` normalisation and a
    1x1 projection. (The reference's deconv mode crashed with a channel mismatch; this one works.)

    Parameters
    ----------
    in_channels, skip_channels, out_channels : int
        Channels of the input, of the skip features and of the output.
    scale_factor : int
        Up-sampling factor.
    mode : {"pixelshuffle", "deconv"}
        Up-sampling method.
    conv_blocks : int
        Number of ConvNeXt blocks (pixelshuffle mode).
    norm_name : str
        MONAI normalisation of the residual block (deconv mode).
    upsample_pre_conv : bool
        Convolve before pixel-shuffling (pixelshuffle mode).
    """

    def __init__(
        self,
        in_channels: int,
        skip_channels: int,
        out_channels: int,
        scale_factor: int,
        mode: DecoderMode,
        conv_blocks: int,
        norm_name: str,
        upsample_pre_conv: bool,
    ) -> None:
        super().__init__()
        _check_mode(mode)
        if mode == "pixelshuffle":
            self.upsample = _pixelshuffle(in_channels, scale_factor, upsample_pre_conv)
            self.conv = ConvNeXtStage(
                in_chs=in_channels // scale_factor**2 + skip_channels,
                out_chs=out_channels,
                stride=1,
                depth=conv_blocks,
                ls_init_value=None,
                conv_mlp=True,
                use_grn=True,
                norm_layer=LayerNorm2d,
                norm_layer_cl=LayerNorm,
            )
        else:
            self.upsample = nn.ConvTranspose2d(in_channels, skip_channels, scale_factor, stride=scale_factor)
            self.conv = nn.Sequential(
                UnetResBlock(2, 2 * skip_channels, skip_channels, kernel_size=3, stride=1, norm_name=norm_name),
                nn.Conv2d(skip_channels, out_channels, kernel_size=1),
            )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """Up-sample ``x``, concatenate ``skip`` along channels and convolve."""
        return self.conv(torch.cat([self.upsample(x), skip], dim=1))


class UNeXt2Decoder(nn.Module):
    """U-Net decoder over a multi-scale feature list ordered from the deepest to the shallowest.

    Stage ``i`` up-samples from ``num_channels[i]`` to ``num_channels[i + 1]`` channels and takes skip
    features of ``num_channels[i] // 2`` channels (the encoder's widths halve at each scale).

    Parameters
    ----------
    num_channels : sequence of int
        Channels at the input of each stage followed by the output channels.
    norm_name : str
        Normalisation of the deconv-mode blocks.
    mode : {"pixelshuffle", "deconv"}
        Up-sampling method.
    conv_blocks : int
        Convolution blocks per stage.
    strides : sequence of int
        Up-sampling factor of each stage (at least ``len(num_channels) - 1`` values).
    upsample_pre_conv : bool
        Convolve before pixel-shuffling.
    """

    def __init__(
        self,
        num_channels: Sequence[int],
        norm_name: str,
        mode: DecoderMode,
        conv_blocks: int,
        strides: Sequence[int],
        upsample_pre_conv: bool,
    ) -> None:
        super().__init__()
        self.decoder_stages = nn.ModuleList(
            UNeXt2UpStage(
                in_channels=num_channels[i],
                skip_channels=num_channels[i] // 2,
                out_channels=num_channels[i + 1],
                scale_factor=strides[i],
                mode=mode,
                conv_blocks=conv_blocks,
                norm_name=norm_name,
                upsample_pre_conv=upsample_pre_conv,
            )
            for i in range(len(num_channels) - 1)
        )

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """Decode ``features``: the deepest map, then one skip map per stage (the input is not modified)."""
        if len(features) != len(self.decoder_stages) + 1:
            raise ValueError(
                f"The decoder has {len(self.decoder_stages)} stages and needs {len(self.decoder_stages) + 1} "
                f"feature maps, got {len(features)}."
            )
        x = features[0]
        for stage, skip in zip(self.decoder_stages, features[1:]):
            x = stage(x, skip)
        return x


class VaeUpStage(nn.Module):
    """Up-sampling stage without skip connection (BetaVae25D decoder).

    ``pixelshuffle`` mode: pixel-shuffle to ``in_channels / scale_factor**2`` channels (optionally after a
    convolution), then ``conv_blocks`` MONAI residual units to ``out_channels``. ``deconv`` mode: a bias-free
    transposed convolution to ``out_channels``, one MONAI residual unit and a 1x1 convolution; as in the
    reference, ``conv_blocks`` does not apply to this mode.

    Parameters
    ----------
    in_channels, out_channels : int
        Input and output channels.
    scale_factor : int
        Up-sampling factor.
    mode : {"pixelshuffle", "deconv"}
        Up-sampling method.
    conv_blocks : int
        Number of residual units (each two 3x3 convolutions with normalisation and PReLU), pixelshuffle mode.
    norm_name : str
        MONAI normalisation of the residual units.
    upsample_pre_conv : "default", torch.nn.Module or None
        Convolution before pixel-shuffling: MONAI's ``"default"`` 3x3 convolution, a module, or none.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        scale_factor: int,
        mode: DecoderMode,
        conv_blocks: int,
        norm_name: str,
        upsample_pre_conv: Literal["default"] | nn.Module | None,
    ) -> None:
        super().__init__()
        _check_mode(mode)
        if mode == "deconv":
            self.upsample = get_conv_layer(
                2, in_channels, out_channels, kernel_size=scale_factor, stride=scale_factor, is_transposed=True
            )
            self.conv = nn.Sequential(
                ResidualUnit(spatial_dims=2, in_channels=out_channels, out_channels=out_channels, norm=norm_name),
                nn.Conv2d(out_channels, out_channels, kernel_size=1),
            )
            return
        self.upsample = _pixelshuffle(in_channels, scale_factor, upsample_pre_conv)
        channels = in_channels // scale_factor**2
        units = []
        for _ in range(conv_blocks):
            units.append(ResidualUnit(spatial_dims=2, in_channels=channels, out_channels=out_channels, norm=norm_name))
            channels = out_channels
        self.conv = nn.Sequential(*units)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Up-sample and convolve."""
        return self.conv(self.upsample(x))
