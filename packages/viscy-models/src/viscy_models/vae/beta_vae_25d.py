"""2.5D beta-VAE: 3D stem and timm backbone encoder, pixel-shuffle residual decoder, pixel-to-voxel head."""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Literal

import torch
from torch import nn

from viscy_models.components.backbones import create_timm_backbone, feature_reduction
from viscy_models.components.decoders import VaeUpStage
from viscy_models.components.heads import PixelToVoxelHead
from viscy_models.components.stems import StemDepthtoChannels
from viscy_models.components.validation import check_choice, check_positive_ints


class VaeEncoder(nn.Module):
    """Stem + timm ``features_only`` backbone, flattened last feature map, then linear mean and log-variance.

    The last feature map is flattened (not pooled), so ``fc`` has ``channels * h * w`` inputs, where
    ``(h, w)`` is ``input_spatial_size`` divided by the total down-sampling (:attr:`feature_size`).

    Parameters
    ----------
    backbone : str
        timm ResNet or ConvNeXt name.
    in_channels, in_stack_depth : int
        Input channels and Z size.
    latent_dim : int
        Latent dimension.
    input_spatial_size : sequence of int
        (Y, X) input size; each a multiple of the total down-sampling along its axis.
    stem_kernel_size, stem_stride : sequence of int
        (Z, Y, X) kernel and stride of the 3D stem.
    drop_path_rate : float
        Stochastic depth of the backbone.
    pretrained : bool
        Load timm's ImageNet weights into the backbone (needs network access).
    """

    def __init__(
        self,
        backbone: str = "resnet50",
        in_channels: int = 2,
        in_stack_depth: int = 16,
        latent_dim: int = 1024,
        input_spatial_size: Sequence[int] = (256, 256),
        stem_kernel_size: Sequence[int] = (2, 4, 4),
        stem_stride: Sequence[int] = (2, 4, 4),
        drop_path_rate: float = 0.0,
        pretrained: bool = False,
    ) -> None:
        super().__init__()
        if "convnext" not in backbone and "resnet" not in backbone:
            raise ValueError(f"BetaVae25D supports timm ResNet and ConvNeXt backbones, got backbone={backbone!r}.")
        encoder = create_timm_backbone(
            backbone, pretrained=pretrained, features_only=True, drop_path_rate=drop_path_rate
        )
        num_channels = encoder.feature_info.channels()
        # The first 2D convolution is replaced by the 3D stem (a ConvNeXt keeps its stem layer norm).
        if "convnext" in backbone:
            encoder.stem_0 = nn.Identity()
        else:
            encoder.conv1 = nn.Identity()
        self.stem = StemDepthtoChannels(in_channels, in_stack_depth, num_channels[0], stem_kernel_size, stem_stride)
        self.encoder = encoder
        self.out_channels = num_channels[-1]
        sizes = tuple(int(s) for s in input_spatial_size)
        # The backbone's own down-sampling after the replaced first convolution: 3 (ConvNeXt) or 4 (ResNet:
        # max-pool and stages) halvings, rounding down (ConvNeXt 2x2 convolutions) or up (ResNet, padded 3x3).
        reduction = feature_reduction(encoder, 1)
        feature_size = []
        for size, k, s in zip(sizes, stem_kernel_size[1:], stem_stride[1:]):
            n = (size - k) // s + 1 if size >= k else 0
            for _ in range(reduction.bit_length() - 1):
                n = n // 2 if "convnext" in backbone else (n + 1) // 2
            # The reference sizes fc as (size // stride) // reduction; where the real feature map differs, its
            # forward failed, so such a configuration has no checkpoint.
            if n < 1 or n != size // s // reduction:
                feature_size = None
                break
            feature_size.append(n)
        if len(sizes) != 2 or feature_size is None:
            raise ValueError(
                f"BetaVae25D: input_spatial_size={tuple(input_spatial_size)} must be two (Y, X) sizes that the stem "
                f"(kernel {tuple(stem_kernel_size[1:])}, stride {tuple(stem_stride[1:])}) and the {backbone} stages "
                f"(down-sampling {reduction}) reduce to whole feature maps, for example multiples of "
                f"{reduction * stem_stride[1]} with a non-overlapping stem."
            )
        self.input_spatial_size = sizes
        self.feature_size = tuple(feature_size)
        self.fc = nn.Linear(num_channels[-1] * self.feature_size[0] * self.feature_size[1], latent_dim)
        self.fc_mu = nn.Linear(latent_dim, latent_dim)
        self.fc_logvar = nn.Linear(latent_dim, latent_dim)

    def forward(self, x: torch.Tensor) -> SimpleNamespace:
        """Return ``SimpleNamespace(mean, log_covariance, z)``, the reference encoder's field names.

        :class:`BetaVae25D` returns the log-variance as ``logvar``. ``z`` is sampled, in eval mode too, as in the
        reference.
        """
        features = self.encoder(self.stem(x))[-1]
        h = self.fc(features.flatten(1))
        mean, logvar = self.fc_mu(h), self.fc_logvar(h)
        std = torch.exp(0.5 * logvar)
        z = mean + torch.randn_like(std) * std
        return SimpleNamespace(mean=mean, log_covariance=logvar, z=z)


class VaeDecoder(nn.Module):
    """Linear latent-to-map projection, up-sampling residual stages and a pixel-to-voxel head.

    ``z`` is mapped by ``latent_reshape`` to ``latent_dim // encoder_spatial_size**2`` square maps of
    ``encoder_spatial_size`` cells, projected by a 1x1 ``latent_proj`` to ``decoder_channels[0]``, up-sampled
    by one stage per consecutive pair of ``decoder_channels`` and turned into a volume by the head.

    Parameters
    ----------
    decoder_channels : sequence of int
        Channels at the input of each stage followed by the head's input channels.
    latent_dim : int
        Latent dimension; at least ``encoder_spatial_size**2``.
    out_channels, out_stack_depth : int
        Output channels and Z size.
    head_expansion_ratio : int
        Width multiplier of the head's 3D convolution.
    strides : sequence of int
        Up-sampling factor of each stage (at least one per stage; extra entries are unused).
    encoder_spatial_size : int
        Side of the square first feature map.
    head_pool : bool
        Blur the head's first pixel-shuffle.
    upsample_mode : {"pixelshuffle", "deconv"}
        Up-sampling of the stages.
    conv_blocks : int
        Residual units per stage (pixelshuffle mode).
    norm_name : str
        MONAI normalisation of the residual units.
    upsample_pre_conv : "default", torch.nn.Module, bool or None
        Convolution before pixel-shuffling (see :class:`BetaVae25D`).
    """

    def __init__(
        self,
        decoder_channels: Sequence[int] = (1024, 512, 256, 128),
        latent_dim: int = 1024,
        out_channels: int = 2,
        out_stack_depth: int = 16,
        head_expansion_ratio: int = 2,
        strides: Sequence[int] = (2, 2, 2, 1),
        encoder_spatial_size: int = 16,
        head_pool: bool = False,
        upsample_mode: Literal["pixelshuffle", "deconv"] = "pixelshuffle",
        conv_blocks: int = 2,
        norm_name: str = "batch",
        upsample_pre_conv: Literal["default"] | nn.Module | bool | None = None,
    ) -> None:
        super().__init__()
        num_stages = len(decoder_channels) - 1
        if len(strides) < num_stages:
            raise ValueError(f"strides={tuple(strides)} must give one up-sampling factor per stage ({num_stages}).")
        self.spatial_size = (encoder_spatial_size, encoder_spatial_size)
        cells = encoder_spatial_size**2
        self.latent_channels = latent_dim // cells
        if self.latent_channels < 1:
            raise ValueError(
                f"BetaVae25D: latent_dim={latent_dim} is smaller than the {self.spatial_size} = {cells} cells of the "
                f"decoder's first feature map; use latent_dim >= {cells} (a multiple of it) or a smaller "
                "input_spatial_size."
            )
        self.latent_reshape = nn.Linear(latent_dim, self.latent_channels * cells)
        self.latent_proj = nn.Conv2d(self.latent_channels, decoder_channels[0], kernel_size=1)
        self.decoder_stages = nn.ModuleList(
            VaeUpStage(
                decoder_channels[i],
                decoder_channels[i + 1],
                scale_factor=strides[i],
                mode=upsample_mode,
                conv_blocks=conv_blocks,
                norm_name=norm_name,
                upsample_pre_conv=upsample_pre_conv,
            )
            for i in range(num_stages)
        )
        self.head = PixelToVoxelHead(
            decoder_channels[-1], out_channels, out_stack_depth, head_expansion_ratio, pool=head_pool
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Decode ``(B, latent_dim)`` latents into ``(B, out_channels, out_stack_depth, Y, X)``."""
        x = self.latent_reshape(z).view(z.shape[0], self.latent_channels, *self.spatial_size)
        x = self.latent_proj(x)
        for stage in self.decoder_stages:
            x = stage(x)
        return self.head(x)


class BetaVae25D(nn.Module):
    """2.5D beta-VAE for (B, C, Z, Y, X) cell patches; returns ``SimpleNamespace(recon_x, mean, logvar, z)``.

    Encoder: a 3D stem folds Z into channels, a timm ``features_only`` backbone encodes, and its last
    feature map ``(C, h, w)`` is flattened into ``fc`` (``C * h * w`` inputs, ``(h, w)`` =
    ``input_spatial_size`` divided by the stem stride and the backbone's down-sampling), then linear mean
    and log-variance heads. As in the reference, ``z`` is sampled with ``torch.randn_like`` in eval mode too.

    Decoder: ``latent_reshape`` maps ``z`` to ``latent_dim // h**2`` maps of ``h x h`` cells (square, from the
    Y size, as the reference: a non-square input gives a square reconstruction), a 1x1 ``latent_proj`` to the
    backbone's last width, ``decoder_stages`` x2 up-sampling stages halving the width, and a pixel-to-voxel
    head (x4). The reconstruction matches the input size when ``2**decoder_stages * 4`` equals the encoder's
    down-sampling (ResNet with a stride-4 stem and 4 stages); with a ConvNeXt (down-sampling 32) the default
    4 stages return twice the input size, as in the reference; use ``decoder_stages=3`` there.

    Parameters
    ----------
    backbone : str
        timm ResNet or ConvNeXt name.
    in_channels : int
        Input (and reconstruction) channels.
    in_stack_depth, out_stack_depth : int
        Input and reconstruction Z sizes.
    latent_dim : int
        Latent dimension; at least ``h**2`` (see above).
    input_spatial_size : tuple of int
        (Y, X) input size; the encoder's ``fc`` is sized for it, so inputs must have exactly this size.
    stem_kernel_size, stem_stride : tuple of int
        (Z, Y, X) kernel and stride of the 3D stem.
    drop_path_rate : float
        Stochastic depth of the backbone.
    decoder_stages : int
        Number of x2 up-sampling stages; channels halve at each from the backbone's last width.
    head_expansion_ratio : int
        Width multiplier of the head's 3D convolution.
    head_pool : bool
        Blur the head's first pixel-shuffle.
    upsample_mode : {"pixelshuffle", "deconv"}
        Up-sampling of the decoder stages. ``deconv``: a transposed convolution, one residual unit and a 1x1
        convolution per stage (``conv_blocks`` does not apply, as in the reference).
    conv_blocks : int
        Residual units per decoder stage (pixelshuffle mode).
    norm_name : str
        MONAI normalisation of the decoder (``"batch"`` or ``"instance"``).
    upsample_pre_conv : "default", torch.nn.Module or None
        Convolution before each pixel-shuffle (MONAI ``UpSample(pre_conv=...)``): ``"default"`` (or True)
        for MONAI's 3x3 convolution, a module, or None (or False) for none.
    """

    def __init__(
        self,
        backbone: str = "resnet50",
        in_channels: int = 2,
        in_stack_depth: int = 16,
        out_stack_depth: int = 16,
        latent_dim: int = 1024,
        input_spatial_size: tuple[int, int] = (256, 256),
        stem_kernel_size: tuple[int, int, int] = (2, 4, 4),
        stem_stride: tuple[int, int, int] = (2, 4, 4),
        drop_path_rate: float = 0.0,
        decoder_stages: int = 4,
        head_expansion_ratio: int = 2,
        head_pool: bool = False,
        upsample_mode: Literal["pixelshuffle", "deconv"] = "pixelshuffle",
        conv_blocks: int = 2,
        norm_name: str = "batch",
        upsample_pre_conv: Literal["default"] | nn.Module | bool | None = None,
    ) -> None:
        super().__init__()
        model = "BetaVae25D"
        check_positive_ints(
            model,
            in_channels=in_channels,
            in_stack_depth=in_stack_depth,
            out_stack_depth=out_stack_depth,
            latent_dim=latent_dim,
            decoder_stages=decoder_stages,
            head_expansion_ratio=head_expansion_ratio,
            conv_blocks=conv_blocks,
        )
        check_choice(upsample_mode, "upsample_mode", model, ("pixelshuffle", "deconv"))
        check_choice(norm_name, "norm_name", model, ("batch", "instance"))
        self.encoder = VaeEncoder(
            backbone,
            in_channels,
            in_stack_depth,
            latent_dim,
            input_spatial_size,
            stem_kernel_size,
            stem_stride,
            drop_path_rate,
        )
        self.input_spatial_size = self.encoder.input_spatial_size
        self.in_stack_depth = in_stack_depth
        width = self.encoder.out_channels
        decoder_channels = [width // 2**i for i in range(decoder_stages)]
        if width % 2 ** (decoder_stages - 1) or (
            upsample_mode == "pixelshuffle" and any(c % 4 for c in decoder_channels)
        ):
            raise ValueError(
                f"BetaVae25D: decoder_stages={decoder_stages} halves the {backbone} width {width} at every stage; "
                "each stage's input width must be an integer (a multiple of 4 for pixel-shuffle): use fewer stages."
            )
        decoder_channels.append((out_stack_depth + 2) * in_channels * 4 * head_expansion_ratio)
        self.decoder = VaeDecoder(
            decoder_channels,
            latent_dim=latent_dim,
            out_channels=in_channels,
            out_stack_depth=out_stack_depth,
            head_expansion_ratio=head_expansion_ratio,
            strides=[2] * decoder_stages,
            # Square, from the Y size of the encoder's last feature map, as in the reference.
            encoder_spatial_size=self.encoder.feature_size[0],
            head_pool=head_pool,
            upsample_mode=upsample_mode,
            conv_blocks=conv_blocks,
            norm_name=norm_name,
            upsample_pre_conv=upsample_pre_conv,
        )

    def forward(self, x: torch.Tensor) -> SimpleNamespace:
        """Encode, sample and decode ``x`` of shape ``(B, in_channels, in_stack_depth, *input_spatial_size)``.

        The reconstruction's size follows from the decoder (see the class docstring).
        """
        if x.ndim != 5 or x.shape[2] != self.in_stack_depth:
            raise ValueError(
                f"BetaVae25D expects (B, C, {self.in_stack_depth}, Y, X) input (in_stack_depth={self.in_stack_depth}),"
                f" got {tuple(x.shape)}."
            )
        if tuple(x.shape[-2:]) != self.input_spatial_size:
            raise ValueError(
                f"BetaVae25D was built for input_spatial_size={self.input_spatial_size} (its encoder flattens the "
                f"last feature map), got input shape {tuple(x.shape)}."
            )
        encoded = self.encoder(x)
        recon_x = self.decoder(encoded.z)
        return SimpleNamespace(recon_x=recon_x, mean=encoded.mean, logvar=encoded.log_covariance, z=encoded.z)
