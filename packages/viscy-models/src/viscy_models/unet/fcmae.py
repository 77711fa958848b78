"""Fully convolutional masked autoencoder (FCMAE): a maskable ConvNeXt-V2 encoder with the UNeXt2 decoder.

Masking follows ConvNeXt-V2's sparse pre-training: a random subset of the coarsest-scale cells is hidden;
masked positions are zeroed before every depth-wise convolution and excluded from the layer norms and the
global response normalisation, so the encoder never sees them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from timm.layers import DropPath, GlobalResponseNormMlp, LayerNorm2d, trunc_normal_
from torch import nn

from viscy_models.components.decoders import UNeXt2Decoder
from viscy_models.components.heads import PixelToVoxelHead, PixelToVoxelShuffleHead
from viscy_models.components.validation import check_divisible


def generate_mask(shape: Sequence[int], stride: int, mask_ratio: float, device: torch.device) -> torch.Tensor:
    """Draw a random boolean mask (True = masked) over the ``stride``-sized cells of an image batch.

    Every sample gets exactly ``int(cells * mask_ratio)`` masked cells. One ``torch.rand(B, cells)`` draw
    from the global RNG decides which (the reference's draw, so seeded masks reproduce).

    Parameters
    ----------
    shape : sequence of int
        Input shape; the first entry is the batch size, the last two are Y and X.
    stride : int
        Cell size in pixels.
    mask_ratio : float
        Fraction of cells to mask.
    device : torch.device
        Device of the mask.

    Returns
    -------
    torch.Tensor
        Boolean mask of shape ``(B, 1, Y / stride, X / stride)``.
    """
    h, w = shape[-2] // stride, shape[-1] // stride
    num_masked = int(h * w * mask_ratio)
    ranks = torch.rand(shape[0], h * w, device=device).argsort(dim=1)
    return (ranks < num_masked).reshape(shape[0], 1, h, w)


def upsample_mask(mask: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Repeat a ``(B, 1, h, w)`` cell mask to the spatial ``size`` (a multiple of ``(h, w)``).

    Parameters
    ----------
    mask : torch.Tensor
        Boolean cell mask.
    size : sequence of int
        Target (Y, X) size.

    Returns
    -------
    torch.Tensor
        Boolean mask of shape ``(B, 1, *size)``.
    """
    h, w = mask.shape[-2:]
    if size[0] % h or size[1] % w:
        raise ValueError(f"Feature size {tuple(size)} is not a multiple of the mask size {(h, w)}.")
    return mask.repeat_interleave(size[0] // h, dim=-2).repeat_interleave(size[1] // w, dim=-1)


def _tokens(x: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    """(B, C, H, W) features to (B, L, C) tokens, only the kept positions when ``keep`` is given."""
    x = x.permute(0, 2, 3, 1)
    if keep is None:
        return x.reshape(x.shape[0], -1, x.shape[-1])
    # Every sample keeps the same number of positions, so the gathered tokens reshape per sample.
    return x[keep[:, 0]].reshape(x.shape[0], -1, x.shape[-1])


def _untokens(tokens: torch.Tensor, shape: Sequence[int], keep: torch.Tensor | None) -> torch.Tensor:
    """Inverse of :func:`_tokens`; masked positions are filled with zeros."""
    b, c, h, w = shape
    if keep is None:
        return tokens.reshape(b, h, w, c).permute(0, 3, 1, 2)
    out = tokens.new_zeros(b, h, w, c)
    out[keep[:, 0]] = tokens.reshape(-1, c)
    return out.permute(0, 3, 1, 2)


class MaskedAdaptiveProjection(nn.Module):
    """FCMAE stem: a 3D patchify convolution for stacks (a 2D one for single slices), then a layer norm.

    Parameters
    ----------
    in_channels, out_channels : int
        Input channels and channels of the 2D output.
    kernel_size_2d : int
        Y and X patch size.
    kernel_depth : int
        Z patch size; ``in_stack_depth`` must be a multiple of it.
    in_stack_depth : int
        Z size of stack inputs.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size_2d: int = 4,
        kernel_depth: int = 5,
        in_stack_depth: int = 5,
    ) -> None:
        super().__init__()
        if in_stack_depth % kernel_depth:
            raise ValueError(
                f"in_stack_depth={in_stack_depth} must be a multiple of the stem's depth kernel {kernel_depth}."
            )
        ratio = in_stack_depth // kernel_depth
        if out_channels % ratio:
            raise ValueError(f"dims[0]={out_channels} must be a multiple of in_stack_depth // kernel depth = {ratio}.")
        kernel_3d = (kernel_depth, kernel_size_2d, kernel_size_2d)
        self.conv3d = nn.Conv3d(in_channels, out_channels // ratio, kernel_size=kernel_3d, stride=kernel_3d)
        self.conv2d = nn.Conv2d(in_channels, out_channels, kernel_size=kernel_size_2d, stride=kernel_size_2d)
        self.norm = nn.LayerNorm(out_channels)

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Project ``(B, C, Z, Y, X)`` to ``(B, out_channels, Y / k, X / k)``; Z = 1 uses the 2D convolution."""
        if x.shape[2] > 1:
            x = self.conv3d(x)
            b, c, d, h, w = x.shape
            x = x.reshape(b, c * d, h, w)
        else:
            x = self.conv2d(x[:, :, 0])
        if keep is not None:
            keep = upsample_mask(keep, x.shape[-2:])
        return _untokens(self.norm(_tokens(x, keep)), x.shape, keep)


class MaskedConvNeXtV2Block(nn.Module):
    """ConvNeXt-V2 block (depth-wise 7x7, layer norm, GRN MLP) that skips masked positions.

    With a mask, the identity shortcut carries the *masked* input (masked positions zeroed), as the
    reference's in-place masking did; pretrained checkpoints depend on it.

    Parameters
    ----------
    in_channels : int
        Channels.
    kernel_size : int
        Depth-wise kernel size.
    mlp_ratio : int
        Hidden width of the MLP relative to ``in_channels``.
    drop_path : float
        Stochastic depth probability.
    """

    def __init__(self, in_channels: int, kernel_size: int = 7, mlp_ratio: int = 4, drop_path: float = 0.0) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(
            in_channels, in_channels, kernel_size=kernel_size, padding=kernel_size // 2, groups=in_channels, bias=False
        )
        self.layernorm = nn.LayerNorm(in_channels)
        self.mlp = GlobalResponseNormMlp(
            in_features=in_channels, hidden_features=mlp_ratio * in_channels, act_layer=nn.GELU, use_conv=False
        )
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Apply the block; ``keep`` is a boolean (B, 1, H, W) mask of visible positions, or None."""
        if keep is not None:
            x = x * keep
        shape = x.shape
        y = _tokens(self.dwconv(x), keep)
        # (B, 1, L, C): the GRN normalises over all (kept) tokens of a sample.
        y = self.mlp(self.layernorm(y).unsqueeze(1)).squeeze(1)
        return x + self.drop_path(_untokens(y, shape, keep))


class MaskedConvNeXtV2Stage(nn.Module):
    """Optional down-sampling (layer norm + strided convolution) followed by masked ConvNeXt-V2 blocks.

    Parameters
    ----------
    in_channels, out_channels : int
        Input and output channels.
    kernel_size, stride : int
        Down-sampling kernel and stride.
    num_blocks : int
        Number of blocks.
    inner_kernel_size : int
        Depth-wise kernel of the blocks.
    mlp_ratio : int
        MLP expansion of the blocks.
    drop_path_rates : sequence of float or None
        Stochastic depth per block.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 2,
        stride: int = 2,
        num_blocks: int = 2,
        inner_kernel_size: int = 7,
        mlp_ratio: int = 4,
        drop_path_rates: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if in_channels != out_channels or stride > 1:
            self.downsample = nn.Sequential(
                LayerNorm2d(in_channels), nn.Conv2d(in_channels, out_channels, kernel_size=kernel_size, stride=stride)
            )
        else:
            self.downsample = nn.Identity()
        drop_path_rates = drop_path_rates or [0.0] * num_blocks
        self.blocks = nn.ModuleList(
            MaskedConvNeXtV2Block(out_channels, inner_kernel_size, mlp_ratio, rate) for rate in drop_path_rates
        )

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Down-sample and apply the blocks with ``keep`` repeated to this scale."""
        x = self.downsample(x)
        if keep is not None:
            keep = upsample_mask(keep, x.shape[-2:])
        for block in self.blocks:
            x = block(x, keep)
        return x


class MaskedMultiscaleEncoder(nn.Module):
    """Maskable ConvNeXt-V2 encoder returning the features of every stage (shallowest first).

    Parameters
    ----------
    in_channels : int
        Input channels.
    stage_blocks : sequence of int
        Blocks per stage.
    dims : sequence of int
        Channels per stage.
    drop_path_rate : float
        Maximum stochastic depth (linearly increasing over blocks).
    stem_kernel_size : sequence of int
        (Z, Y, X) patch size of the stem.
    in_stack_depth : int
        Z size of stack inputs.
    """

    def __init__(
        self,
        in_channels: int,
        stage_blocks: Sequence[int] = (3, 3, 9, 3),
        dims: Sequence[int] = (96, 192, 384, 768),
        drop_path_rate: float = 0.0,
        stem_kernel_size: Sequence[int] = (5, 4, 4),
        in_stack_depth: int = 5,
    ) -> None:
        super().__init__()
        if len(stage_blocks) != len(dims):
            raise ValueError(f"encoder_blocks {tuple(stage_blocks)} and dims {tuple(dims)} differ in length.")
        self.stem = MaskedAdaptiveProjection(
            in_channels, dims[0], stem_kernel_size[-1], stem_kernel_size[0], in_stack_depth
        )
        rates = torch.linspace(0, drop_path_rate, sum(stage_blocks)).tolist()
        chs = [dims[0], *dims]
        starts = [sum(stage_blocks[:i]) for i in range(len(stage_blocks) + 1)]
        self.stages = nn.ModuleList(
            MaskedConvNeXtV2Stage(
                chs[i],
                chs[i + 1],
                kernel_size=1 if i == 0 else 2,
                stride=1 if i == 0 else 2,
                num_blocks=n,
                drop_path_rates=rates[starts[i] : starts[i + 1]],
            )
            for i, n in enumerate(stage_blocks)
        )
        self.total_stride = stem_kernel_size[-1] * 2 ** (len(dims) - 1)
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor, mask_ratio: float = 0.0) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """Encode ``(B, C, Z, Y, X)``; return the stage features and the full-resolution mask (or None)."""
        mask = keep = None
        if mask_ratio > 0:
            cells = generate_mask(x.shape, self.total_stride, mask_ratio, x.device)
            keep = ~cells
            mask = upsample_mask(cells, x.shape[-2:])
        x = self.stem(x, keep)
        features = []
        for stage in self.stages:
            x = stage(x, keep)
            features.append(x)
        return features, mask


def _init_weights(module: nn.Module) -> None:
    # ConvNeXt-V2 initialisation of the encoder.
    if isinstance(module, (nn.Conv2d, nn.Conv3d, nn.Linear)):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class FullyConvolutionalMAE(nn.Module):
    """Fully convolutional masked autoencoder for self-supervised pre-training and virtual staining.

    ``forward(x, mask_ratio=0.0)`` on ``(B, C, Z, Y, X)`` returns ``(prediction, mask)`` when
    ``pretraining`` is True (``mask`` is a boolean ``(B, 1, Y, X)`` tensor, True where masked, or None when
    ``mask_ratio`` is 0) and the prediction alone otherwise.

    Parameters
    ----------
    in_channels, out_channels : int
        Input and output channels.
    encoder_blocks : sequence of int
        ConvNeXt-V2 blocks per encoder stage.
    dims : sequence of int
        Channels per encoder stage.
    encoder_drop_path_rate : float
        Maximum stochastic depth of the encoder.
    stem_kernel_size : sequence of int
        (Z, Y, X) patch size of the stem; Y and X of the input must be multiples of
        ``stem_kernel_size[-1] * 2**(len(dims) - 1)``.
    in_stack_depth : int
        Input (and output) Z size; Z = 1 inputs use the stem's 2D convolution.
    decoder_conv_blocks : int
        ConvNeXt blocks per decoder stage.
    pretraining : bool
        Return ``(prediction, mask)`` instead of the prediction.
    head_conv : bool
        Use the convolutional pixel-to-voxel head instead of the parameter-free pixel-shuffle head.
    head_conv_expansion_ratio : int
        Width multiplier of the convolutional head.
    head_conv_pool : bool
        Blur the head's pixel-shuffle with pad-and-pool.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        encoder_blocks: Sequence[int] = (3, 3, 9, 3),
        dims: Sequence[int] = (96, 192, 384, 768),
        encoder_drop_path_rate: float = 0.0,
        stem_kernel_size: Sequence[int] = (5, 4, 4),
        in_stack_depth: int = 5,
        decoder_conv_blocks: int = 1,
        pretraining: bool = True,
        head_conv: bool = False,
        head_conv_expansion_ratio: int = 4,
        head_conv_pool: bool = True,
    ) -> None:
        super().__init__()
        self.encoder = MaskedMultiscaleEncoder(
            in_channels=in_channels,
            stage_blocks=encoder_blocks,
            dims=dims,
            drop_path_rate=encoder_drop_path_rate,
            stem_kernel_size=stem_kernel_size,
            in_stack_depth=in_stack_depth,
        )
        decoder_channels = list(dims)[::-1]
        if head_conv:
            decoder_channels[-1] = (in_stack_depth + 2) * out_channels * 4 * head_conv_expansion_ratio
        else:
            decoder_channels[-1] = out_channels * in_stack_depth * stem_kernel_size[-1] ** 2
        self.decoder = UNeXt2Decoder(
            decoder_channels,
            norm_name="instance",
            mode="pixelshuffle",
            conv_blocks=decoder_conv_blocks,
            strides=[2] * (len(dims) - 1),
            upsample_pre_conv=False,
        )
        if head_conv:
            self.head = PixelToVoxelHead(
                decoder_channels[-1], out_channels, in_stack_depth, head_conv_expansion_ratio, pool=head_conv_pool
            )
        else:
            self.head = PixelToVoxelShuffleHead(
                decoder_channels[-1], out_channels, in_stack_depth, stem_kernel_size[-1], pool=head_conv_pool
            )
        self.in_stack_depth = in_stack_depth
        self.out_stack_depth = in_stack_depth
        self.num_blocks = 6
        self.pretraining = pretraining

    def forward(
        self, x: torch.Tensor, mask_ratio: float = 0.0
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor | None]:
        """Reconstruct ``x`` (masking ``mask_ratio`` of the coarse cells); see the class docstring."""
        if x.ndim != 5 or x.shape[2] not in (1, self.in_stack_depth):
            raise ValueError(
                f"FullyConvolutionalMAE expects (B, C, Z, Y, X) input with Z = {self.in_stack_depth} "
                f"(in_stack_depth) or 1, got {tuple(x.shape)}."
            )
        if not 0.0 <= mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}.")
        check_divisible(x.shape[-2:], self.encoder.total_stride, "FullyConvolutionalMAE", "Y and X")
        features, mask = self.encoder(x, mask_ratio)
        prediction = self.head(self.decoder(features[::-1]))
        if self.pretraining:
            return prediction, mask
        return prediction
