"""Fully convolutional masked autoencoder (FCMAE): a maskable ConvNeXt-V2 encoder with the UNeXt2 decoder.

Masking follows ConvNeXt-V2's sparse pre-training: a random subset of the coarsest-scale cells is hidden;
masked positions are zeroed before every depth-wise convolution and excluded from the layer norms and the
global response normalisation, so the encoder never sees them.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch
from timm.layers import DropPath, GlobalResponseNormMlp, LayerNorm2d, trunc_normal_
from torch import nn

from viscy_models.components.decoders import UNeXt2Decoder
from viscy_models.components.heads import PixelToVoxelHead, PixelToVoxelShuffleHead
from viscy_models.components.validation import check_divisible, check_positive_ints


def generate_mask(
    target: Sequence[int], stride: int, mask_ratio: float, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """Draw a random boolean mask (True = masked) over the ``stride``-sized cells of an image batch.

    Every sample gets exactly ``int(cells * mask_ratio)`` masked cells. One ``torch.rand(B, cells)`` draw
    from the global RNG decides which (the reference's draw, so seeded masks reproduce).

    Parameters
    ----------
    target : sequence of int
        Shape of the input batch; the first entry is the batch size, the last two are Y and X.
    stride : int
        Cell size in pixels (the encoder's total down-sampling).
    mask_ratio : float
        Fraction of cells to mask.
    device : str or torch.device
        Device of the mask.

    Returns
    -------
    torch.Tensor
        Boolean mask of shape ``(B, 1, Y // stride, X // stride)``.
    """
    h, w = target[-2] // stride, target[-1] // stride
    num_masked = int(h * w * mask_ratio)
    ranks = torch.rand(target[0], h * w, device=device).argsort(dim=1)
    return (ranks < num_masked).reshape(target[0], 1, h, w)


def upsample_mask(mask: torch.Tensor, target: Sequence[int]) -> torch.Tensor:
    """Repeat a ``(B, 1, h, w)`` cell mask to the spatial size of ``target``.

    Parameters
    ----------
    mask : torch.Tensor
        Boolean cell mask.
    target : sequence of int
        Target shape; only its last two entries (Y, X) are used, so a full ``(B, C, Y, X)`` shape or a
        ``(Y, X)`` size both work. They must be multiples of ``(h, w)``.

    Returns
    -------
    torch.Tensor
        Boolean mask of shape ``(B, 1, Y, X)`` (``mask`` itself when the size already matches).
    """
    (h, w), (y, x) = mask.shape[-2:], tuple(target[-2:])
    if (y, x) == (h, w):
        return mask
    if y % h or x % w:
        raise ValueError(f"Feature size {(y, x)} is not a multiple of the mask size {(h, w)}.")
    return mask.repeat_interleave(y // h, dim=-2).repeat_interleave(x // w, dim=-1)


def masked_patchify(features: torch.Tensor, unmasked: torch.Tensor | None = None) -> torch.Tensor:
    """Turn ``(B, C, H, W)`` features into channel-last tokens, keeping only the unmasked positions.

    Parameters
    ----------
    features : torch.Tensor
        Feature map ``(B, C, H, W)``.
    unmasked : torch.Tensor or None
        Boolean ``(B, 1, H, W)`` mask, True where visible. Every sample must keep the same number of
        positions (as :func:`generate_mask` guarantees). None keeps every position.

    Returns
    -------
    torch.Tensor
        Tokens ``(B, L, C)`` in row-major (H, W) order; ``L = H * W`` without a mask, else the number of
        visible positions per sample.
    """
    b, c = features.shape[:2]
    tokens = features.permute(0, 2, 3, 1)
    if unmasked is None:
        return tokens.reshape(b, -1, c)
    return tokens[unmasked[:, 0]].reshape(b, -1, c)


def masked_unpatchify(
    features: torch.Tensor, out_shape: Sequence[int], unmasked: torch.Tensor | None = None
) -> torch.Tensor:
    """Inverse of :func:`masked_patchify`: scatter ``(B, L, C)`` tokens back to a ``(B, C, H, W)`` map.

    Parameters
    ----------
    features : torch.Tensor
        Tokens ``(B, L, C)``.
    out_shape : sequence of int
        Shape ``(B, C, H, W)`` of the result.
    unmasked : torch.Tensor or None
        The boolean ``(B, 1, H, W)`` visibility mask the tokens were gathered with, or None.

    Returns
    -------
    torch.Tensor
        Feature map of shape ``out_shape``; masked positions are zero.
    """
    b, c, h, w = out_shape
    if unmasked is None:
        return features.reshape(b, h, w, c).permute(0, 3, 1, 2)
    out = features.new_zeros(b, h, w, c)
    out[unmasked[:, 0]] = features.reshape(-1, c)
    return out.permute(0, 3, 1, 2)


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


class MaskedAdaptiveProjection(nn.Module):
    """FCMAE stem: a 3D patchify convolution for stacks (a 2D one for single slices), then a layer norm.

    Parameters
    ----------
    in_channels, out_channels : int
        Input channels and channels of the 2D output.
    kernel_size_2d : int or tuple of int
        (Y, X) patch size.
    kernel_depth : int
        Z patch size.
    in_stack_depth : int
        Z size of stack inputs; the 3D convolution yields ``in_stack_depth // kernel_depth`` slices, folded
        into channels, so ``out_channels`` must be a multiple of that.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size_2d: int | Sequence[int] = 4,
        kernel_depth: int = 5,
        in_stack_depth: int = 5,
    ) -> None:
        super().__init__()
        if in_stack_depth < kernel_depth:
            raise ValueError(
                f"in_stack_depth={in_stack_depth} is smaller than the stem's depth kernel "
                f"stem_kernel_size[0]={kernel_depth}."
            )
        ratio = in_stack_depth // kernel_depth
        if in_stack_depth % kernel_depth:
            warnings.warn(
                f"in_stack_depth={in_stack_depth} is not a multiple of the stem's depth kernel {kernel_depth}: the "
                f"last {in_stack_depth % kernel_depth} slices of every stack are ignored.",
                stacklevel=3,
            )
        if out_channels % ratio:
            raise ValueError(
                f"dims[0]={out_channels} must be a multiple of in_stack_depth // stem_kernel_size[0] = {ratio}: the "
                "stem folds that many slices into the first stage's channels."
            )
        kernel_2d = _pair(kernel_size_2d)
        kernel_3d = (kernel_depth, *kernel_2d)
        self.conv3d = nn.Conv3d(in_channels, out_channels // ratio, kernel_size=kernel_3d, stride=kernel_3d)
        self.conv2d = nn.Conv2d(in_channels, out_channels, kernel_size=kernel_2d, stride=kernel_2d)
        self.norm = nn.LayerNorm(out_channels)

    def forward(self, x: torch.Tensor, unmasked: torch.Tensor | None = None) -> torch.Tensor:
        """Project ``(B, C, Z, Y, X)`` to ``(B, out_channels, Y / ky, X / kx)``; Z = 1 uses the 2D convolution.

        With ``unmasked``, masked positions of the output are zero.
        """
        if x.shape[2] > 1:
            x = self.conv3d(x)
            b, c, d, h, w = x.shape
            x = x.reshape(b, c * d, h, w)
        else:
            x = self.conv2d(x[:, :, 0])
        if unmasked is not None:
            unmasked = upsample_mask(unmasked, x.shape)
        return masked_unpatchify(self.norm(masked_patchify(x, unmasked)), x.shape, unmasked)


class MaskedConvNeXtV2Block(nn.Module):
    """ConvNeXt-V2 block (depth-wise convolution, layer norm, GRN MLP) that skips masked positions.

    With a mask, the identity shortcut carries the *masked* input (masked positions zeroed), as the
    reference's in-place masking did; pretrained checkpoints depend on it.

    Parameters
    ----------
    in_channels : int
        Channels.
    out_channels : int or None
        Output channels; only None or ``in_channels`` (stages change the width before their blocks).
    kernel_size : int
        Depth-wise kernel size.
    stride : int
        Only 1 (stages down-sample before their blocks).
    mlp_ratio : int
        Hidden width of the MLP relative to ``in_channels``.
    drop_path : float
        Stochastic depth probability.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None = None,
        kernel_size: int = 7,
        stride: int = 1,
        mlp_ratio: int = 4,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        if out_channels not in (None, in_channels) or stride != 1:
            raise ValueError(
                f"MaskedConvNeXtV2Block keeps its width and resolution: out_channels must be None or "
                f"in_channels={in_channels} and stride 1, got out_channels={out_channels}, stride={stride}. "
                "Use MaskedConvNeXtV2Stage to change them."
            )
        self.dwconv = nn.Conv2d(
            in_channels, in_channels, kernel_size=kernel_size, padding=kernel_size // 2, groups=in_channels, bias=False
        )
        self.layernorm = nn.LayerNorm(in_channels)
        self.mlp = GlobalResponseNormMlp(
            in_features=in_channels, hidden_features=mlp_ratio * in_channels, act_layer=nn.GELU, use_conv=False
        )
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, unmasked: torch.Tensor | None = None) -> torch.Tensor:
        """Apply the block; ``unmasked`` is a boolean (B, 1, H, W) mask of visible positions, or None."""
        if unmasked is not None:
            x = x * unmasked
        y = masked_patchify(self.dwconv(x), unmasked)
        # (B, 1, L, C): the GRN normalises over all (visible) tokens of a sample.
        y = self.mlp(self.layernorm(y).unsqueeze(1)).squeeze(1)
        return x + self.drop_path(masked_unpatchify(y, x.shape, unmasked))


class MaskedConvNeXtV2Stage(nn.Module):
    """Optional down-sampling (layer norm + strided convolution) followed by masked ConvNeXt-V2 blocks.

    Parameters
    ----------
    in_channels, out_channels : int
        Input and output channels.
    kernel_size : int
        Depth-wise kernel of the blocks.
    stride : int
        Down-sampling factor (the down-sampling convolution's kernel and stride); the down-sampling layer
        exists when ``stride > 1`` or the width changes.
    num_blocks : int
        Number of blocks.
    drop_path_rates : sequence of float or None
        Stochastic depth of each block (``num_blocks`` values), or None for none.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 7,
        stride: int = 2,
        num_blocks: int = 2,
        drop_path_rates: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        drop_path_rates = [0.0] * num_blocks if drop_path_rates is None else list(drop_path_rates)
        if len(drop_path_rates) != num_blocks:
            raise ValueError(f"drop_path_rates must have num_blocks={num_blocks} entries, got {len(drop_path_rates)}.")
        if in_channels != out_channels or stride > 1:
            self.downsample = nn.Sequential(
                LayerNorm2d(in_channels), nn.Conv2d(in_channels, out_channels, kernel_size=stride, stride=stride)
            )
        else:
            self.downsample = nn.Identity()
        self.blocks = nn.ModuleList(
            MaskedConvNeXtV2Block(out_channels, kernel_size=kernel_size, drop_path=rate) for rate in drop_path_rates
        )

    def forward(self, x: torch.Tensor, unmasked: torch.Tensor | None = None) -> torch.Tensor:
        """Down-sample and apply the blocks with ``unmasked`` repeated to this scale."""
        x = self.downsample(x)
        if unmasked is not None:
            unmasked = upsample_mask(unmasked, x.shape)
        for block in self.blocks:
            x = block(x, unmasked)
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
        Stochastic depth of every block (the same rate for all, as in the reference).
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
            raise ValueError(
                f"encoder_blocks {tuple(stage_blocks)} and dims {tuple(dims)} must have one entry per stage each."
            )
        self.stem = MaskedAdaptiveProjection(
            in_channels, dims[0], stem_kernel_size[1:], stem_kernel_size[0], in_stack_depth
        )
        chs = [dims[0], *dims]
        self.stages = nn.ModuleList(
            MaskedConvNeXtV2Stage(
                chs[i], chs[i + 1], stride=1 if i == 0 else 2, num_blocks=n, drop_path_rates=[drop_path_rate] * n
            )
            for i, n in enumerate(stage_blocks)
        )
        self.total_stride = stem_kernel_size[1] * 2 ** (len(dims) - 1)
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor, mask_ratio: float = 0.0) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """Encode ``(B, C, Z, Y, X)``; return the stage features and the full-resolution mask (or None)."""
        mask = unmasked = None
        if mask_ratio > 0:
            cells = generate_mask(x.shape, self.total_stride, mask_ratio, x.device)
            unmasked = ~cells
            mask = upsample_mask(cells, x.shape)
        # As in the reference, the stem output is not masked; the first block of every stage masks its input.
        x = self.stem(x)
        features = []
        for stage in self.stages:
            x = stage(x, unmasked)
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
        Stochastic depth of every encoder block.
    stem_kernel_size : sequence of int
        (Z, Y, X) patch size of the stem; Y and X of the input must be multiples of
        ``stem_kernel_size[1] * 2**(len(dims) - 1)``. The heads up-sample by X (pixel-shuffle) or 4 (``head_conv``),
        so a patch other than (Z, 4, 4) or with Y != X predicts at another size (a warning says so).
    in_stack_depth : int
        Input (and output) Z size; Z = 1 inputs use the stem's 2D convolution.
    decoder_conv_blocks : int
        ConvNeXt blocks per decoder stage.
    pretraining : bool
        Return ``(prediction, mask)`` instead of the prediction.
    head_conv : bool
        Use the convolutional pixel-to-voxel head instead of the parameter-free pixel-shuffle head. Its input
        width is ``(in_stack_depth + 2) * in_channels * 4 * head_conv_expansion_ratio`` (the reference's
        checkpoint format; UNeXt2's uses ``out_channels``).
    head_conv_expansion_ratio : int
        Width multiplier of the convolutional head.
    head_conv_pool : bool
        Blur the convolutional head's pixel-shuffle with pad-and-pool. The pixel-shuffle head always pools,
        as in the reference.
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
        _check_fcmae_args(
            in_channels, out_channels, encoder_blocks, dims, stem_kernel_size, in_stack_depth, decoder_conv_blocks
        )
        check_positive_ints("FullyConvolutionalMAE", head_conv_expansion_ratio=head_conv_expansion_ratio)
        if head_conv and stem_kernel_size[-1] != 4:
            # Valid for the reference (it builds and runs), so a warning rather than an error.
            warnings.warn(
                "FullyConvolutionalMAE: head_conv=True up-samples by 4, so the prediction matches the input size only "
                f"with a 4-pixel stem patch; got stem_kernel_size={tuple(stem_kernel_size)}, so (Y, X) is scaled by "
                f"4 / {stem_kernel_size[-1]}. Use head_conv=False (its pixel-shuffle head follows the stem) or "
                "stem_kernel_size (Z, 4, 4).",
                stacklevel=2,
            )
        self.encoder = MaskedMultiscaleEncoder(
            in_channels=in_channels,
            stage_blocks=encoder_blocks,
            dims=dims,
            drop_path_rate=encoder_drop_path_rate,
            stem_kernel_size=stem_kernel_size,
            in_stack_depth=in_stack_depth,
        )
        xy_patch = stem_kernel_size[-1]
        decoder_channels = list(dims)[::-1]
        if head_conv:
            decoder_channels[-1] = (in_stack_depth + 2) * in_channels * 4 * head_conv_expansion_ratio
        else:
            decoder_channels[-1] = out_channels * in_stack_depth * xy_patch**2
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
            self.head = PixelToVoxelShuffleHead(decoder_channels[-1], out_channels, in_stack_depth, xy_patch, pool=True)
        self.in_stack_depth = in_stack_depth
        self.out_stack_depth = in_stack_depth
        # Reference attribute (read by inference code that pads to multiples of 2**num_blocks); same formula.
        self.num_blocks = len(dims) * int(math.log2(xy_patch))
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


def _check_fcmae_args(
    in_channels: int,
    out_channels: int,
    encoder_blocks: Sequence[int],
    dims: Sequence[int],
    stem_kernel_size: Sequence[int],
    in_stack_depth: int,
    decoder_conv_blocks: int,
) -> None:
    """Raise a ValueError naming the argument for FCMAE configurations the architecture cannot build or run."""
    model = "FullyConvolutionalMAE"
    check_positive_ints(
        model,
        in_channels=in_channels,
        out_channels=out_channels,
        in_stack_depth=in_stack_depth,
        decoder_conv_blocks=decoder_conv_blocks,
    )
    if len(dims) < 2 or len(encoder_blocks) != len(dims) or any(n < 1 for n in encoder_blocks):
        raise ValueError(
            f"{model}: encoder_blocks {tuple(encoder_blocks)} and dims {tuple(dims)} must give at least 2 stages, "
            "one positive block count and one width per stage."
        )
    # Decoder stage i takes skip features of half its input width and pixel-shuffles by 2.
    if any(int(b) != 2 * int(a) for a, b in zip(dims[:-1], dims[1:])) or dims[1] % 4:
        raise ValueError(
            f"{model}: dims={tuple(dims)} must double at every stage (the decoder takes skip features of half its "
            "input width) and dims[1:] must be multiples of 4 (pixel-shuffle), e.g. (16, 32, 64, 128)."
        )
    if len(stem_kernel_size) != 3 or min(stem_kernel_size) < 1:
        raise ValueError(f"{model}: stem_kernel_size must be 3 positive (Z, Y, X) sizes, got {stem_kernel_size}.")
    if stem_kernel_size[1] != stem_kernel_size[2]:
        # Valid for the reference (it builds and runs), so a warning rather than an error.
        warnings.warn(
            f"{model}: stem_kernel_size={tuple(stem_kernel_size)} has Y != X, but the pixel-shuffle head up-samples "
            f"both axes by X = {stem_kernel_size[2]}, so the prediction's Y size is the input's times "
            f"{stem_kernel_size[2]} / {stem_kernel_size[1]}.",
            stacklevel=3,
        )
