"""Behaviour of UNeXt2, FullyConvolutionalMAE, Unet2d and Unet25d: shapes, gradients, errors, fixed quirks."""

import pytest
import torch

from viscy_models import FullyConvolutionalMAE, Unet2d, Unet25d, UNeXt2
from viscy_models.components import UNeXt2Decoder
from viscy_models.unet.fcmae import generate_mask, upsample_mask

SMALL_FCMAE = dict(encoder_blocks=(1, 1, 1, 1), dims=(16, 32, 64, 128))


def _unet_unused(model, residual: bool) -> set[str]:
    """resid_conv is used only by residual blocks that narrow the channels (reference semantics)."""
    unused = set()
    for name, module in model.named_modules():
        if hasattr(module, "resid_conv"):
            narrowing = module.in_filters > module.out_filters
            if not (module.residual and narrowing):
                unused |= {f"{name}.resid_conv.weight", f"{name}.resid_conv.bias"}
    return unused


# ------------------------------------------------------------------ UNeXt2


@pytest.mark.parametrize(
    ("in_channels", "out_channels", "in_depth", "out_depth", "stem_kernel", "mode"),
    [
        (1, 1, 5, None, (5, 4, 4), "pixelshuffle"),
        (2, 3, 10, 3, (5, 4, 4), "pixelshuffle"),
        (1, 2, 4, 1, (2, 4, 4), "deconv"),
        (3, 1, 5, 5, (5, 4, 4), "deconv"),
    ],
)
def test_unext2_forward_backward(in_channels, out_channels, in_depth, out_depth, stem_kernel, mode, no_grad_params):
    torch.manual_seed(0)
    model = UNeXt2(
        in_channels=in_channels,
        out_channels=out_channels,
        in_stack_depth=in_depth,
        out_stack_depth=out_depth,
        backbone="convnextv2_atto",
        stem_kernel_size=stem_kernel,
        decoder_mode=mode,
        decoder_conv_blocks=1,
    )
    x = torch.randn(2, in_channels, in_depth, 64, 32)
    y = model(x)
    assert y.shape == (2, out_channels, out_depth or in_depth, 64, 32)
    assert y.isfinite().all()
    assert no_grad_params(model, y.square().mean()) == set()


def test_unext2_decoder_upsample_pre_conv_and_head_pool():
    model = UNeXt2(backbone="convnextv2_atto", decoder_upsample_pre_conv=True, head_pool=True, decoder_conv_blocks=1)
    assert any("upsample" in k for k in model.decoder.state_dict())
    assert model(torch.randn(1, 1, 5, 32, 32)).shape == (1, 1, 5, 32, 32)


def test_unext2_shape_errors():
    with pytest.raises(ValueError, match="multiple of the stem's depth kernel stem_kernel_size\\[0\\]=5"):
        UNeXt2(in_stack_depth=7, backbone="convnextv2_atto")
    with pytest.raises(ValueError, match="ConvNeXt backbone"):
        UNeXt2(backbone="resnet18")
    with pytest.raises(ValueError, match="Unknown timm backbone 'convnext_nonexistent'"):
        UNeXt2(backbone="convnext_nonexistent")
    model = UNeXt2(backbone="convnextv2_atto", decoder_conv_blocks=1)
    with pytest.raises(ValueError, match="multiples of 32"):
        model(torch.randn(1, 1, 5, 48, 64))
    with pytest.raises(ValueError, match="in_stack_depth=5"):
        model(torch.randn(1, 1, 4, 64, 64))


def test_unext2_decoder_leaves_feature_list_untouched():
    decoder = UNeXt2Decoder([64, 32, 16], "instance", "pixelshuffle", 1, [2, 2], False)
    features = [torch.randn(1, 64, 4, 4), torch.randn(1, 32, 8, 8), torch.randn(1, 16, 16, 16)]
    before = list(features)
    out = decoder(features)
    assert out.shape == (1, 16, 16, 16)
    assert len(features) == 3 and all(a is b for a, b in zip(features, before))
    with pytest.raises(ValueError, match="needs 3 feature maps, got 2"):
        decoder(features[:2])


def test_fcmae_keeps_dtype_with_masking():
    model = FullyConvolutionalMAE(1, 1, encoder_blocks=(1, 1), dims=(8, 16)).double()
    pred, mask = model(torch.randn(1, 1, 5, 16, 16, dtype=torch.float64), mask_ratio=0.5)
    assert pred.dtype == torch.float64 and mask.dtype == torch.bool


# ------------------------------------------------------------------ FCMAE


@pytest.mark.parametrize(("in_channels", "out_channels", "depth"), [(1, 1, 5), (2, 3, 10)])
@pytest.mark.parametrize("mask_ratio", [0.0, 0.6])
def test_fcmae_forward_backward(in_channels, out_channels, depth, mask_ratio, no_grad_params):
    torch.manual_seed(0)
    model = FullyConvolutionalMAE(in_channels, out_channels, in_stack_depth=depth, **SMALL_FCMAE)
    x = torch.randn(2, in_channels, depth, 64, 96)
    pred, mask = model(x, mask_ratio=mask_ratio)
    assert pred.shape == (2, out_channels, depth, 64, 96)
    if mask_ratio == 0:
        assert mask is None
    else:
        assert mask.shape == (2, 1, 64, 96) and mask.dtype == torch.bool
    # A stack input never uses the single-slice stem convolution.
    assert no_grad_params(model, pred.square().mean()) == {"encoder.stem.conv2d.weight", "encoder.stem.conv2d.bias"}


def test_fcmae_single_slice_uses_2d_stem(no_grad_params):
    model = FullyConvolutionalMAE(1, 1, in_stack_depth=5, **SMALL_FCMAE)
    pred, _ = model(torch.randn(2, 1, 1, 64, 64))
    assert pred.shape == (2, 1, 5, 64, 64)
    assert no_grad_params(model, pred.square().mean()) == {"encoder.stem.conv3d.weight", "encoder.stem.conv3d.bias"}


def test_fcmae_finetuning_head_conv_returns_prediction_only():
    model = FullyConvolutionalMAE(2, 2, in_stack_depth=5, pretraining=False, head_conv=True, **SMALL_FCMAE)
    out = model(torch.randn(1, 2, 5, 32, 32))
    assert isinstance(out, torch.Tensor) and out.shape == (1, 2, 5, 32, 32)


@pytest.mark.parametrize("seed", range(8))
def test_generate_mask_masks_exact_fraction(seed):
    torch.manual_seed(seed)
    ratio = torch.rand(()).item() * 0.9
    mask = generate_mask((3, 1, 5, 128, 96), 32, ratio, torch.device("cpu"))
    assert mask.shape == (3, 1, 4, 3)
    assert (mask.flatten(1).sum(1) == int(12 * ratio)).all()
    full = upsample_mask(mask, (128, 96))
    assert torch.equal(full[:, :, ::32, ::32], mask)


def test_generate_mask_is_uniform_over_cells():
    torch.manual_seed(0)
    mask = generate_mask((4000, 1, 1, 64, 64), 32, 0.5, torch.device("cpu"))
    frequency = mask.float().mean(0).flatten()
    # Each of the 4 cells is masked with probability 1/2; binomial std over 4000 draws is ~0.008.
    assert (frequency - 0.5).abs().max() < 0.04


def test_fcmae_encoder_never_sees_masked_input():
    torch.manual_seed(0)
    model = FullyConvolutionalMAE(1, 1, in_stack_depth=5, **SMALL_FCMAE).eval()
    x = torch.randn(2, 1, 5, 64, 64)
    torch.manual_seed(3)
    features, mask = model.encoder(x, mask_ratio=0.5)
    x2 = torch.where(mask[:, :, None], torch.randn_like(x) * 10, x)
    torch.manual_seed(3)
    features2, mask2 = model.encoder(x2, mask_ratio=0.5)
    assert torch.equal(mask, mask2) and mask.any()
    for a, b in zip(features, features2):
        torch.testing.assert_close(a, b)
    # Without masking the change is visible.
    assert not torch.allclose(model.encoder(x)[0][-1], model.encoder(x2)[0][-1])


def test_fcmae_errors():
    model = FullyConvolutionalMAE(1, 1, **SMALL_FCMAE)
    with pytest.raises(ValueError, match="multiples of 32"):
        model(torch.randn(1, 1, 5, 48, 64))
    with pytest.raises(ValueError, match="Z = 5"):
        model(torch.randn(1, 1, 3, 64, 64))
    with pytest.raises(ValueError, match="mask_ratio"):
        model(torch.randn(1, 1, 5, 64, 64), mask_ratio=1.0)
    with pytest.raises(ValueError, match="in_stack_depth=3 is smaller than the stem's depth kernel"):
        FullyConvolutionalMAE(1, 1, in_stack_depth=3, **SMALL_FCMAE)
    # Valid for the reference (the extra slice is ignored), so a warning, not an error.
    with pytest.warns(UserWarning, match="the last 1 slices of every stack are ignored"):
        FullyConvolutionalMAE(1, 1, in_stack_depth=6, **SMALL_FCMAE)


# ------------------------------------------------------------------ Unet2d / Unet25d


@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize(
    ("in_channels", "out_channels", "num_blocks", "filters"), [(1, 1, 4, (4, 8, 8, 16, 16)), (3, 2, 2, (8, 12, 20))]
)
def test_unet2d_forward_backward(in_channels, out_channels, num_blocks, filters, residual, no_grad_params):
    torch.manual_seed(0)
    model = Unet2d(in_channels, out_channels, residual=residual, num_blocks=num_blocks, num_filters=filters)
    x = torch.randn(2, in_channels, 1, 32, 48)
    y = model(x)
    assert y.shape == (2, out_channels, 1, 32, 48)
    # 4-D input is accepted and gives the same 5-D output.
    torch.testing.assert_close(model.eval()(x[:, :, 0]), model(x))
    model.train()
    assert no_grad_params(model, model(x).square().mean()) == _unet_unused(model, residual)


def test_unet2d_dropout_is_honoured_in_training():
    torch.manual_seed(0)
    model = Unet2d(dropout=0.5, num_blocks=2)
    x = torch.randn(2, 1, 1, 16, 16)
    model.train()
    assert not torch.equal(model(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))


@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize(("in_channels", "out_channels", "in_depth", "out_depth"), [(1, 1, 5, 1), (2, 3, 7, 3)])
def test_unet25d_forward_backward(in_channels, out_channels, in_depth, out_depth, residual, no_grad_params):
    torch.manual_seed(0)
    model = Unet25d(in_channels, out_channels, in_depth, out_depth, residual=residual, num_blocks=2)
    y = model(torch.randn(2, in_channels, in_depth, 16, 24))
    assert y.shape == (2, out_channels, out_depth, 16, 24)
    assert no_grad_params(model, y.square().mean()) == _unet_unused(model, residual)


def test_unet_shape_errors():
    with pytest.raises(ValueError, match="multiples of 16"):
        Unet2d()(torch.randn(1, 1, 1, 24, 32))
    with pytest.raises(ValueError, match="single Z slice"):
        Unet2d()(torch.randn(1, 1, 3, 32, 32))
    with pytest.raises(ValueError, match="num_filters must be num_blocks \\+ 1 = 5"):
        Unet2d(num_filters=(8, 16))
    with pytest.raises(ValueError, match="in_stack_depth=5"):
        Unet25d()(torch.randn(1, 1, 4, 32, 32))
    with pytest.raises(ValueError, match="multiples of 4"):
        Unet25d(num_blocks=2)(torch.randn(1, 1, 5, 30, 32))
    with pytest.raises(ValueError, match="out_stack_depth"):
        Unet25d(in_stack_depth=3, out_stack_depth=4)
