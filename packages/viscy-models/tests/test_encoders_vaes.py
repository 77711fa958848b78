"""Behaviour of the contrastive encoders and the VAEs: shapes, gradients, errors, documented sampling."""

import pytest
import torch

from viscy_models import BetaVae25D, BetaVaeMonai, ContrastiveEncoder, ResNet3dEncoder

# ------------------------------------------------------------------ ContrastiveEncoder


@pytest.mark.parametrize(
    ("backbone", "in_channels", "depth", "stem", "width"),
    [
        ("convnext_atto", 2, 10, (5, 4, 4), 320),
        ("convnextv2_atto", 1, 20, (5, 4, 4), 320),
        ("resnet18", 3, 8, (2, 4, 4), 512),
    ],
)
def test_contrastive_encoder_forward_backward(backbone, in_channels, depth, stem, width, no_grad_params, jitter):
    torch.manual_seed(0)
    model = ContrastiveEncoder(
        backbone, in_channels, depth, stem_kernel_size=stem, stem_stride=stem, embedding_dim=48, projection_dim=16
    )
    jitter(model)
    embedding, projection = model(torch.randn(3, in_channels, depth, 64, 64))
    # embedding_dim is the projection's hidden width; the embedding is as wide as the backbone.
    assert embedding.shape == (3, width) and model.embedding_dim == width
    assert projection.shape == (3, 16)
    assert model.projection[0].out_features == 48
    assert no_grad_params(model, embedding.square().mean() + projection.square().mean()) == set()


def test_contrastive_encoder_errors():
    with pytest.raises(ValueError, match="do not divide the encoder's 40 input channels"):
        ContrastiveEncoder("convnext_atto", 1, in_stack_depth=15, stem_kernel_size=(5, 4, 4), stem_stride=(2, 4, 4))
    with pytest.raises(ValueError, match="ConvNeXt and ResNet"):
        ContrastiveEncoder("vit_tiny_patch16_224", 1, 5)
    model = ContrastiveEncoder("convnext_atto", 1, 5)
    with pytest.raises(ValueError, match="Z = in_stack_depth = 5"):
        model(torch.randn(2, 1, 10, 64, 64))
    with pytest.raises(ValueError, match="at least 32"):
        model(torch.randn(2, 1, 5, 16, 64))


def _backbone_calls(model: ContrastiveEncoder) -> list:
    calls = []
    model.encoder.register_forward_hook(lambda module, args, output: calls.append(args[0].shape[0]))
    return calls


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("backbone", ["convnext_atto", "convnextv2_atto"])
def test_forward_views_equals_one_forward_per_view(backbone, seed):
    """Layer-norm backbones: one backbone pass for all views; outputs and gradients as separate calls give."""
    torch.manual_seed(seed)
    model = ContrastiveEncoder(backbone, 2, 3, stem_kernel_size=(3, 4, 4), stem_stride=(3, 4, 4))
    sizes = torch.randint(2, 6, (int(torch.randint(2, 4, ())),)).tolist()
    views = [torch.randn(n, 2, 3, 32, 32) for n in sizes]
    calls = _backbone_calls(model)
    together = model.forward_views(views)
    assert calls == [sum(sizes)]
    loss = sum((e.square().mean() + p.square().mean()) * (i + 1) for i, (e, p) in enumerate(together))
    loss.backward()
    joint = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    separate = [model(view) for view in views]
    assert calls[1:] == sizes
    for (e1, p1), (e2, p2) in zip(together, separate, strict=True):
        torch.testing.assert_close(e1, e2, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(p1, p2, rtol=1e-4, atol=1e-4)
    sum((e.square().mean() + p.square().mean()) * (i + 1) for i, (e, p) in enumerate(separate)).backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(joint[name], p.grad, rtol=1e-3, atol=1e-5, msg=name)
    # the projection head's batch norms saw each view alone, as separate calls
    assert model.projection[1].num_batches_tracked == 2 * len(sizes)


def test_forward_views_keeps_batch_norm_backbones_per_view_in_training():
    torch.manual_seed(0)
    model = ContrastiveEncoder("resnet18", 2, 4, stem_kernel_size=(2, 4, 4), stem_stride=(2, 4, 4))
    calls = _backbone_calls(model)
    views = [torch.randn(3, 2, 4, 64, 64), 2 + torch.randn(3, 2, 4, 64, 64)]
    model.forward_views(views)
    assert calls == [3, 3]  # each view's own batch statistics
    model.eval()  # running statistics: samples are independent, one pass
    with torch.no_grad():
        together = model.forward_views(views)
        separate = [model(view) for view in views]
    assert calls[2:] == [6, 3, 3]
    for (e1, p1), (e2, p2) in zip(together, separate, strict=True):
        torch.testing.assert_close(e1, e2, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(p1, p2, rtol=1e-4, atol=1e-5)
    # views of different sizes cannot be concatenated; wrong depth is named as in forward
    convnext = ContrastiveEncoder("convnext_atto", 2, 3, stem_kernel_size=(3, 4, 4), stem_stride=(3, 4, 4))
    shapes = [e.shape for e, _ in convnext.forward_views([torch.randn(2, 2, 3, 32, 32), torch.randn(2, 2, 3, 64, 64)])]
    assert shapes == [(2, 320), (2, 320)]
    with pytest.raises(ValueError, match="Z = in_stack_depth = 3"):
        convnext.forward_views([torch.randn(2, 2, 5, 32, 32), torch.randn(2, 2, 5, 32, 32)])


# ------------------------------------------------------------------ ResNet3dEncoder


@pytest.mark.parametrize(("backbone", "in_channels", "width"), [("resnet10", 1, 512), ("resnet18", 2, 512)])
def test_resnet3d_encoder_forward_backward(backbone, in_channels, width, no_grad_params):
    torch.manual_seed(0)
    model = ResNet3dEncoder(backbone, in_channels=in_channels, embedding_dim=width, projection_dim=32)
    embedding, projection = model(torch.randn(2, in_channels, 8, 32, 32))
    assert embedding.shape == (2, width) and projection.shape == (2, 32)
    assert no_grad_params(model, embedding.square().mean() + projection.square().mean()) == set()


def test_resnet3d_encoder_checks_embedding_dim():
    with pytest.raises(ValueError, match="set embedding_dim=512"):
        ResNet3dEncoder("resnet18", embedding_dim=2048)
    with pytest.raises(ValueError, match="B, C, Z, Y, X"):
        ResNet3dEncoder("resnet10")(torch.randn(2, 1, 32, 32))


# ------------------------------------------------------------------ BetaVae25D


@pytest.mark.parametrize(
    ("backbone", "in_channels", "in_depth", "out_depth", "size", "stages", "out_size", "mode"),
    [
        ("resnet18", 1, 8, 8, 64, 4, 64, "pixelshuffle"),
        ("resnet18", 2, 4, 6, 128, 4, 128, "deconv"),
        ("convnextv2_atto", 1, 8, 4, 64, 3, 64, "pixelshuffle"),
        # The reference's default 4 stages with a ConvNeXt return twice the input size.
        ("convnextv2_atto", 1, 8, 4, 64, 4, 128, "pixelshuffle"),
    ],
)
def test_beta_vae_25d_forward_backward(
    backbone, in_channels, in_depth, out_depth, size, stages, out_size, mode, no_grad_params, jitter
):
    torch.manual_seed(0)
    model = BetaVae25D(
        backbone=backbone,
        in_channels=in_channels,
        in_stack_depth=in_depth,
        out_stack_depth=out_depth,
        latent_dim=32,
        input_spatial_size=(size, size),
        decoder_stages=stages,
        conv_blocks=1,
        upsample_mode=mode,
    )
    jitter(model)
    out = model(torch.randn(2, in_channels, in_depth, size, size))
    assert list(vars(out)) == ["recon_x", "mean", "logvar", "z"]
    assert out.recon_x.shape == (2, in_channels, out_depth, out_size, out_size)
    assert out.mean.shape == out.logvar.shape == out.z.shape == (2, 32)
    loss = out.recon_x.square().mean() + out.mean.square().mean() + out.logvar.exp().mean()
    assert no_grad_params(model, loss) == set()


def test_beta_vae_25d_samples_in_eval_mode():
    torch.manual_seed(0)
    model = BetaVae25D("resnet18", 1, 8, 8, latent_dim=16, input_spatial_size=(64, 64), conv_blocks=1).eval()
    x = torch.randn(1, 1, 8, 64, 64)
    with torch.no_grad():
        torch.manual_seed(5)
        a = model(x)
        torch.manual_seed(5)
        b = model(x)
        c = model(x)
    assert torch.equal(a.z, b.z) and torch.equal(a.recon_x, b.recon_x)
    assert torch.equal(a.mean, c.mean) and not torch.equal(a.z, c.z)


def test_beta_vae_25d_errors():
    with pytest.raises(ValueError, match=r"input_spatial_size=\(96, 96\).*multiples of 64"):
        BetaVae25D("resnet18", 1, 8, 8, latent_dim=16, input_spatial_size=(96, 96))
    model = BetaVae25D("resnet18", 1, 8, 8, latent_dim=16, input_spatial_size=(64, 64), conv_blocks=1)
    with pytest.raises(ValueError, match="in_stack_depth=8"):
        model(torch.randn(1, 1, 6, 64, 64))


# ------------------------------------------------------------------ BetaVaeMonai


@pytest.mark.parametrize(
    ("dims", "in_shape", "res_units"), [(2, (2, 32, 32), 0), (2, (1, 16, 24), 2), (3, (1, 8, 16, 16), 1)]
)
def test_beta_vae_monai_forward_backward(dims, in_shape, res_units, no_grad_params):
    torch.manual_seed(0)
    model = BetaVaeMonai(dims, in_shape, in_shape[0], 8, channels=(4, 8), strides=(2, 2), num_res_units=res_units)
    out = model(torch.randn(3, *in_shape))
    assert out.recon_x.shape == (3, *in_shape)
    assert out.z.shape == (3, 8)
    assert no_grad_params(model, out.recon_x.square().mean() + out.logvar.exp().mean()) == set()


def test_beta_vae_monai_eval_latent_is_mean_plus_std():
    torch.manual_seed(0)
    model = BetaVaeMonai(2, (1, 16, 16), 1, 4, channels=(4, 8), strides=(2, 2)).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 1, 16, 16))
    torch.testing.assert_close(out.z, out.mean + torch.exp(0.5 * out.logvar))
    with pytest.raises(ValueError, match="in_shape"):
        model(torch.randn(2, 1, 8, 8))
