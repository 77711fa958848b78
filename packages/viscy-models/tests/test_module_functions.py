"""Module-level names of the reference modules stay importable from the same module, and behave as there."""

import importlib
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from viscy_models.contrastive.encoder import projection_mlp
from viscy_models.unet.fcmae import (
    MaskedAdaptiveProjection,
    MaskedConvNeXtV2Block,
    MaskedConvNeXtV2Stage,
    MaskedMultiscaleEncoder,
    generate_mask,
    masked_patchify,
    masked_unpatchify,
    upsample_mask,
)
from viscy_models.vae.beta_vae_25d import VaeDecoder, VaeEncoder

# Module-level functions and classes users import from the model modules (the reference's names).
REFERENCE_NAMES = {
    "viscy_models.unet.fcmae": [
        "FullyConvolutionalMAE",
        "MaskedAdaptiveProjection",
        "MaskedConvNeXtV2Block",
        "MaskedConvNeXtV2Stage",
        "MaskedMultiscaleEncoder",
        "PixelToVoxelHead",
        "PixelToVoxelShuffleHead",
        "UNeXt2Decoder",
        "generate_mask",
        "masked_patchify",
        "masked_unpatchify",
        "upsample_mask",
    ],
    "viscy_models.unet.unext2": ["UNeXt2", "UNeXt2Decoder", "UNeXt2Stem", "PixelToVoxelHead"],
    "viscy_models.unet.unet2d": ["Unet2d", "ConvBlock2D"],
    "viscy_models.unet.unet25d": ["Unet25d", "ConvBlock3D"],
    "viscy_models.contrastive.encoder": ["ContrastiveEncoder", "projection_mlp", "StemDepthtoChannels"],
    "viscy_models.contrastive.resnet3d": ["ResNet3dEncoder", "projection_mlp"],
    "viscy_models.vae.beta_vae_25d": [
        "BetaVae25D",
        "VaeDecoder",
        "VaeEncoder",
        "VaeUpStage",
        "PixelToVoxelHead",
        "StemDepthtoChannels",
    ],
    "viscy_models.vae.beta_vae_monai": ["BetaVaeMonai"],
}


@pytest.mark.parametrize("module", sorted(REFERENCE_NAMES))
def test_reference_names_are_importable_from_their_module(module):
    mod = importlib.import_module(module)
    missing = [name for name in REFERENCE_NAMES[module] if not callable(getattr(mod, name, None))]
    assert not missing


# ------------------------------------------------------------------ fcmae: masks and token (un)patchify


def _mask(keep_rows: list[list[list[bool]]]) -> torch.Tensor:
    return torch.tensor(keep_rows)[:, None]


def test_masked_patchify_without_mask_is_channel_last_row_major():
    features = torch.arange(2 * 3 * 2 * 4, dtype=torch.float32).reshape(2, 3, 2, 4)
    tokens = masked_patchify(features)
    assert tokens.shape == (2, 8, 3)
    # Token i of sample b is the channel vector at (row, col) = divmod(i, W).
    assert torch.equal(tokens[1, 5], features[1, :, 1, 1])
    assert torch.equal(tokens, features.flatten(2).transpose(1, 2))
    assert torch.equal(masked_unpatchify(tokens, features.shape), features)


def test_masked_patchify_keeps_only_visible_positions_in_order():
    features = torch.arange(2 * 2 * 2 * 2, dtype=torch.float32).reshape(2, 2, 2, 2)
    unmasked = _mask([[[True, False], [False, True]], [[False, True], [True, False]]])
    tokens = masked_patchify(features, unmasked)
    assert tokens.shape == (2, 2, 2)
    assert torch.equal(tokens[0], torch.stack([features[0, :, 0, 0], features[0, :, 1, 1]]))
    assert torch.equal(tokens[1], torch.stack([features[1, :, 0, 1], features[1, :, 1, 0]]))
    restored = masked_unpatchify(tokens, features.shape, unmasked)
    # Visible positions come back, hidden ones are zero.
    assert torch.equal(restored, features * unmasked)
    assert restored.dtype == features.dtype


def test_masked_unpatchify_scatters_new_token_values():
    unmasked = _mask([[[True, True, False]]])
    tokens = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])  # (B=1, L=2, C=2)
    out = masked_unpatchify(tokens, (1, 2, 1, 3), unmasked)
    assert torch.equal(out, torch.tensor([[[[1.0, 3.0, 0.0]], [[2.0, 4.0, 0.0]]]]))


@pytest.mark.parametrize("ratio", [0.0, 0.25, 0.5, 0.9])
def test_generate_mask_counts_shape_and_seed(ratio):
    target = torch.Size((3, 2, 5, 96, 64))
    torch.manual_seed(7)
    mask = generate_mask(target, 32, ratio, "cpu")
    assert mask.shape == (3, 1, 3, 2) and mask.dtype == torch.bool
    assert mask.flatten(1).sum(1).tolist() == [int(6 * ratio)] * 3
    torch.manual_seed(7)
    assert torch.equal(generate_mask(tuple(target), 32, ratio, torch.device("cpu")), mask)
    # The mask is the argsort rank of one torch.rand(B, cells) draw (the reference's draw, so seeds reproduce).
    torch.manual_seed(7)
    ranks = torch.rand(3, 6).argsort(1)
    assert torch.equal(mask.flatten(1), ranks < int(6 * ratio))


def test_upsample_mask_accepts_full_shapes_and_sizes():
    mask = _mask([[[True, False], [False, False]]])
    full = upsample_mask(mask, torch.Size((1, 7, 4, 6)))
    assert full.shape == (1, 1, 4, 6)
    assert torch.equal(upsample_mask(mask, (4, 6)), full)
    assert full[0, 0, :2, :3].all() and not full[0, 0, 2:].any() and not full[0, 0, :, 3:].any()
    assert upsample_mask(mask, (2, 2)) is mask
    with pytest.raises(ValueError, match=r"\(5, 6\) is not a multiple of the mask size \(2, 2\)"):
        upsample_mask(mask, (5, 6))


def test_masked_modules_hide_masked_positions():
    torch.manual_seed(0)
    stem = MaskedAdaptiveProjection(1, 8, kernel_size_2d=(4, 4), kernel_depth=5, in_stack_depth=5)
    unmasked = _mask([[[True, False], [True, True]]])
    out = stem(torch.randn(1, 1, 5, 8, 8), unmasked)
    assert out.shape == (1, 8, 2, 2) and not out[0, :, 0, 1].any() and out[0, :, 0, 0].any()
    block = MaskedConvNeXtV2Block(8)
    x = torch.randn(1, 8, 2, 2)
    y = block(x, unmasked)
    assert not y[0, :, 0, 1].any()
    # A masked block never sees masked inputs.
    x2 = x.clone()
    x2[0, :, 0, 1] = 100.0
    torch.testing.assert_close(block(x2, unmasked), y)
    stage = MaskedConvNeXtV2Stage(8, 16, kernel_size=7, stride=2, num_blocks=2)
    assert stage(torch.randn(1, 8, 4, 4), unmasked).shape == (1, 16, 2, 2)
    with pytest.raises(ValueError, match="drop_path_rates must have num_blocks=2 entries"):
        MaskedConvNeXtV2Stage(8, 16, num_blocks=2, drop_path_rates=[0.1])
    with pytest.raises(ValueError, match="out_channels must be None or in_channels=8"):
        MaskedConvNeXtV2Block(8, out_channels=16)
    encoder = MaskedMultiscaleEncoder(1, stage_blocks=(1, 1), dims=(8, 16))
    features, mask = encoder(torch.randn(2, 1, 5, 16, 16), mask_ratio=0.5)
    assert [f.shape for f in features] == [(2, 8, 4, 4), (2, 16, 2, 2)]
    assert mask.shape == (2, 1, 16, 16) and mask.float().mean().item() == 0.5


# ------------------------------------------------------------------ contrastive.encoder.projection_mlp


def test_projection_mlp_layers_and_values():
    torch.manual_seed(0)
    mlp = projection_mlp(6, 5, 3)
    assert [type(m) for m in mlp] == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear, nn.BatchNorm1d]
    assert [tuple(mlp[i].weight.shape) for i in (0, 3)] == [(5, 6), (3, 5)]
    for bn in (mlp[1], mlp[4]):
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
    mlp.eval()
    x = torch.randn(4, 6)

    def bn(layer, v):
        return (v - layer.running_mean) / torch.sqrt(layer.running_var + layer.eps) * layer.weight + layer.bias

    expected = bn(mlp[4], mlp[3](torch.relu(bn(mlp[1], mlp[0](x)))))
    with torch.no_grad():
        torch.testing.assert_close(mlp(x), expected)


# ------------------------------------------------------------------ vae.beta_vae_25d encoder and decoder


def test_vae_encoder_and_decoder_follow_the_reference_interface():
    torch.manual_seed(0)
    encoder = VaeEncoder(
        "resnet18", in_channels=1, in_stack_depth=4, latent_dim=16, input_spatial_size=(64, 128)
    ).eval()
    with torch.no_grad():
        out = encoder(torch.randn(2, 1, 4, 64, 128))
    assert isinstance(out, SimpleNamespace) and list(vars(out)) == ["mean", "log_covariance", "z"]
    assert out.mean.shape == out.log_covariance.shape == out.z.shape == (2, 16)
    assert encoder.feature_size == (1, 2) and encoder.fc.in_features == 512 * 2
    decoder = VaeDecoder(
        decoder_channels=(64, 32, 40), latent_dim=16, out_channels=1, out_stack_depth=3, encoder_spatial_size=2
    )
    assert decoder.latent_reshape.out_features == 16 and decoder.latent_proj.in_channels == 4
    # Two x2 stages from 2x2 cells, then the head's x4: 32x32.
    assert decoder(torch.randn(2, 16)).shape == (2, 1, 3, 32, 32)
    with pytest.raises(ValueError, match="strides=\\(2,\\) must give one up-sampling factor per stage \\(2\\)"):
        VaeDecoder(decoder_channels=(64, 32, 16), latent_dim=16, out_channels=1, strides=(2,), encoder_spatial_size=2)
