"""UNeXt2: 2.5D virtual staining U-Net with a timm ConvNeXt encoder and ConvNeXt-V2 decoder."""

from __future__ import annotations

import warnings
from typing import Literal

import torch
from torch import nn

from viscy_models.components.backbones import create_timm_backbone, feature_reduction
from viscy_models.components.decoders import UNeXt2Decoder
from viscy_models.components.heads import PixelToVoxelHead
from viscy_models.components.stems import UNeXt2Stem
from viscy_models.components.validation import check_choice, check_divisible, check_positive_ints


class UNeXt2(nn.Module):
    """UNeXt2 virtual staining network: (B, C, Z, Y, X) in, (B, C_out, Z_out, Y, X) out.

    A 3D patchify stem folds Z into channels, a timm ConvNeXt (``features_only``) encodes four scales, a
    ConvNeXt-V2 decoder up-samples with skip connections and a pixel-to-voxel head rebuilds the stack.

    Parameters
    ----------
    in_channels, out_channels : int
        Input and output channels.
    in_stack_depth : int
        Input Z size; a multiple of ``stem_kernel_size[0]``.
    out_stack_depth : int or None
        Output Z size; None means ``in_stack_depth``.
    backbone : str
        timm ConvNeXt model name (``convnextv2_tiny``, ``convnext_tiny``, ...).
    pretrained : bool
        Load timm's ImageNet weights into the encoder (needs network access).
    stem_kernel_size : tuple of int
        (Z, Y, X) kernel and stride of the stem. The input's Y and X must be multiples of the total
        down-sampling, ``8 * stem_kernel_size[1:]`` for a four-stage ConvNeXt. The decoder and head up-sample
        by 32, so only (Z, 4, 4) predicts at the input size (others warn, as the reference returned another size).
    decoder_mode : {"pixelshuffle", "deconv"}
        Decoder up-sampling. The reference's deconv mode crashed; here it works (transposed convolution and
        a MONAI residual block per stage).
    decoder_conv_blocks : int
        ConvNeXt blocks per decoder stage (pixelshuffle mode).
    decoder_norm_layer : str
        MONAI normalisation of the deconv-mode blocks; unused in pixelshuffle mode.
    decoder_upsample_pre_conv : bool
        Add a 3x3 convolution before each pixel-shuffle.
    head_pool : bool
        Blur the head's first pixel-shuffle with pad-and-pool.
    head_expansion_ratio : int
        Width multiplier of the head's 3D convolution.
    drop_path_rate : float
        Stochastic depth of the encoder.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        in_stack_depth: int = 5,
        out_stack_depth: int | None = None,
        backbone: str = "convnextv2_tiny",
        pretrained: bool = False,
        stem_kernel_size: tuple[int, int, int] = (5, 4, 4),
        decoder_mode: Literal["pixelshuffle", "deconv"] = "pixelshuffle",
        decoder_conv_blocks: int = 2,
        decoder_norm_layer: str = "instance",
        decoder_upsample_pre_conv: bool = False,
        head_pool: bool = False,
        head_expansion_ratio: int = 4,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        model = "UNeXt2"
        check_positive_ints(
            model,
            in_channels=in_channels,
            out_channels=out_channels,
            in_stack_depth=in_stack_depth,
            out_stack_depth=in_stack_depth if out_stack_depth is None else out_stack_depth,
            decoder_conv_blocks=decoder_conv_blocks,
            head_expansion_ratio=head_expansion_ratio,
        )
        check_choice(decoder_mode, "decoder_mode", model, ("pixelshuffle", "deconv"))
        if "convnext" not in backbone:
            raise ValueError(f"UNeXt2 needs a timm ConvNeXt backbone, got backbone={backbone!r}.")
        if len(stem_kernel_size) != 3 or min(stem_kernel_size) < 1:
            raise ValueError(f"UNeXt2: stem_kernel_size must be 3 positive (Z, Y, X) sizes, got {stem_kernel_size}.")
        if tuple(stem_kernel_size[1:]) != (4, 4):
            # Valid for the reference (it builds and runs), so a warning rather than an error.
            warnings.warn(
                f"UNeXt2: stem_kernel_size={tuple(stem_kernel_size)}: the decoder and head up-sample by 32 = 4 x "
                "the ConvNeXt stages' 8, so the prediction's (Y, X) is the input's times "
                f"(4 / {stem_kernel_size[1]}, 4 / {stem_kernel_size[2]}); use (Z, 4, 4) to predict at input size.",
                stacklevel=2,
            )
        if in_stack_depth % stem_kernel_size[0]:
            raise ValueError(
                f"in_stack_depth={in_stack_depth} must be a multiple of the stem's depth kernel "
                f"stem_kernel_size[0]={stem_kernel_size[0]}."
            )
        out_stack_depth = in_stack_depth if out_stack_depth is None else out_stack_depth
        encoder = create_timm_backbone(
            backbone, pretrained=pretrained, features_only=True, drop_path_rate=drop_path_rate
        )
        num_channels = list(encoder.feature_info.channels())
        if any(b != 2 * a for a, b in zip(num_channels[:-1], num_channels[1:])):
            raise ValueError(
                f"UNeXt2: backbone={backbone!r} has feature widths {tuple(num_channels)}; the decoder needs widths "
                "that double at every stage (each stage takes skip features of half its input width)."
            )
        # The 2D patchify convolution is replaced by the 3D stem; its layer norm stays.
        encoder.stem_0 = nn.Identity()
        self.encoder_stages = encoder
        self.stem = UNeXt2Stem(in_channels, num_channels[0], stem_kernel_size, in_stack_depth)
        decoder_channels = num_channels[::-1]
        decoder_channels[-1] = (out_stack_depth + 2) * out_channels * 4 * head_expansion_ratio
        self.decoder = UNeXt2Decoder(
            decoder_channels,
            norm_name=decoder_norm_layer,
            mode=decoder_mode,
            conv_blocks=decoder_conv_blocks,
            strides=[2] * (len(num_channels) - 1),
            upsample_pre_conv=decoder_upsample_pre_conv,
        )
        self.head = PixelToVoxelHead(
            decoder_channels[-1], out_channels, out_stack_depth, head_expansion_ratio, pool=head_pool
        )
        self.in_stack_depth = in_stack_depth
        self.out_stack_depth = out_stack_depth
        # Reference attribute read by inference code (tiling multiples); kept for compatibility.
        self.num_blocks = len(num_channels) + 2
        self.total_stride = tuple(feature_reduction(encoder, k) for k in stem_kernel_size[1:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predict ``(B, out_channels, out_stack_depth, Y, X)`` from ``(B, in_channels, in_stack_depth, Y, X)``."""
        if x.ndim != 5 or x.shape[2] != self.in_stack_depth:
            raise ValueError(
                f"UNeXt2 expects (B, C, {self.in_stack_depth}, Y, X) input (in_stack_depth={self.in_stack_depth}),"
                f" got {tuple(x.shape)}."
            )
        for size, stride, axis in zip(x.shape[-2:], self.total_stride, "YX"):
            check_divisible([size], stride, "UNeXt2", axis)
        features = self.encoder_stages(self.stem(x))
        return self.head(self.decoder(features[::-1]))
