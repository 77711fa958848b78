"""Property tests over each model's argument space.

For every model, a grid of valid argument combinations (small widths so it runs on CPU in seconds) checks
what the reference's structure implies: a parameter-count formula derived from the reference fixtures'
state_dict listings (and checked against all fourteen fixtures below), which layers exist when, output
shapes for several input sizes, and ``load_state_dict(strict=True)`` round trips between two instances.
Invalid combinations must raise a ValueError that names the argument.

Tiny timm backbones (one block per stage, widths 8-64) are registered under names containing
``convnext`` / ``resnet`` so the models accept them.
"""

import functools
import itertools
import random
from pathlib import Path

import pytest
import timm
import torch
from monai.networks.nets import ResNetFeatures, VarAutoEncoder
from timm.models import register_model

from viscy_models import (
    BetaVae25D,
    BetaVaeMonai,
    ContrastiveEncoder,
    FullyConvolutionalMAE,
    ResNet3dEncoder,
    Unet2d,
    Unet25d,
    UNeXt2,
)

FIXTURES = Path(__file__).parent / "fixtures"
TINY = dict(depths=(1, 1, 1, 1), dims=(8, 16, 32, 64))


@register_model
def convnextv2_pico8_test(pretrained=False, **kwargs):
    """ConvNeXt-V2 with one block per stage and widths 8-64 (test backbone)."""
    return timm.create_model("convnextv2_atto", pretrained=False, **{**TINY, **kwargs})


@register_model
def convnext_pico8_test(pretrained=False, **kwargs):
    """ConvNeXt (v1, layer scale) with one block per stage and widths 8-64 (test backbone)."""
    return timm.create_model("convnext_atto", pretrained=False, **{**TINY, **kwargs})


@register_model
def resnet_pico8_test(pretrained=False, **kwargs):
    """ResNet with one basic block per stage and widths 8-64 after a 64-wide stem (test backbone)."""
    return timm.create_model(
        "resnet18", pretrained=False, **{"layers": (1, 1, 1, 1), "channels": (8, 16, 32, 64)} | kwargs
    )


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """These models are tiny: one thread avoids OpenMP synchronisation costs (100x on a loaded machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def grid(axes: dict, n: int, valid=lambda c: True, seed: int = 0) -> list[dict]:
    """``n`` distinct valid combinations drawn (deterministically) from the product of ``axes``."""
    combos = [dict(zip(axes, values)) for values in itertools.product(*axes.values())]
    combos = [c for c in combos if valid(c)]
    random.Random(seed).shuffle(combos)
    assert len(combos) >= n, f"only {len(combos)} valid combinations"
    return combos[:n]


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def roundtrip(make, fill) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Build two instances, fill the first, load its state_dict into the second (strict) and compare."""
    torch.manual_seed(0)
    a = make()
    fill(a)
    torch.manual_seed(1)
    b = make()
    b.load_state_dict(a.state_dict(), strict=True)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb), ka
    return a.eval(), b.eval()


def same_forward(a, b, x, **kwargs):
    """Forward ``x`` through both models with the same global seed; assert equal outputs, return ``a``'s."""
    with torch.no_grad():
        torch.manual_seed(3)
        out_a = a(x, **kwargs)
        torch.manual_seed(3)
        out_b = b(x, **kwargs)
    flat_a = (
        out_a
        if isinstance(out_a, tuple)
        else (out_a,)
        if isinstance(out_a, torch.Tensor)
        else tuple(vars(out_a).values())
    )
    flat_b = (
        out_b
        if isinstance(out_b, tuple)
        else (out_b,)
        if isinstance(out_b, torch.Tensor)
        else tuple(vars(out_b).values())
    )
    for ta, tb in zip(flat_a, flat_b, strict=True):
        assert (ta is None and tb is None) or torch.equal(ta, tb)
        assert ta is None or not ta.is_floating_point() or ta.isfinite().all()
    return out_a


def ids(configs: list[dict]) -> list[str]:
    return ["-".join(f"{k}={v}" for k, v in c.items()).replace(" ", "") for c in configs]


# ------------------------------------------------------------------ parameter-count formulas
# Derived from the fixtures' state_dict listings; test_formulas_match_every_fixture checks them against the
# reference's num_parameters for all fourteen fixtures.


def conv(cin: int, cout: int, *kernel: int, bias: bool = True) -> int:
    k = 1
    for size in kernel:
        k *= size
    return cin * cout * k + (cout if bias else 0)


def convnext_v2_block(c: int) -> int:
    """timm ConvNeXt-V2 block (decoder): 7x7 depth-wise conv with bias, LayerNorm2d, 1x1 MLP x4 with GRN."""
    return conv(1, c, 7, 7) + 2 * c + conv(c, 4 * c, 1) + 2 * 4 * c + conv(4 * c, c, 1)


def masked_block(c: int) -> int:
    """FCMAE encoder block: bias-free depth-wise conv, LayerNorm, linear GRN MLP x4."""
    return conv(1, c, 7, 7, bias=False) + 2 * c + conv(c, 4 * c) + 2 * 4 * c + conv(4 * c, c)


def unext2_up_stage(cin: int, cout: int, blocks: int, pre_conv: bool) -> int:
    """Pixel-shuffle x2 (optional 3x3 pre-conv), concat skip of cin // 2 channels, ConvNeXt-V2 stage."""
    stage_in = cin // 4 + cin // 2
    n = conv(cin, cin, 3, 3) if pre_conv else 0
    if stage_in != cout:  # LayerNorm2d + 1x1 conv
        n += 2 * stage_in + conv(stage_in, cout, 1)
    return n + blocks * convnext_v2_block(cout)


def deconv_up_stage(cin: int, cout: int, norm: str) -> int:
    """Our working deconv stage: transposed conv to the skip width, MONAI UnetResBlock on the concat, 1x1."""
    skip = cin // 2
    norm_params = 2 * skip if norm == "batch" else 0
    res_block = conv(2 * skip, skip, 3, 3, bias=False) + conv(skip, skip, 3, 3, bias=False)
    res_block += conv(2 * skip, skip, 1, bias=False) + 3 * norm_params
    return conv(cin, skip, 2, 2) + res_block + conv(skip, cout, 1)


def voxel_head(cin: int, out_channels: int, depth: int, ratio: int) -> int:
    """Pixel-shuffle x2, 3x3x3 MONAI conv (instance norm without affine, PReLU), 1x1x1 conv, shuffle x2."""
    mid = out_channels * ratio * 4
    return conv(cin // 4 // (depth + 2), mid, 3, 3, 3) + 1 + conv(mid, out_channels * 4, 1)


def residual_unit(cin: int, cout: int, norm: str) -> int:
    """MONAI ResidualUnit (2 subunits of 3x3 conv, norm, PReLU; 1x1 residual conv when widths differ)."""
    norm_params = 2 * cout if norm == "batch" else 0  # MONAI's instance norm has no affine parameters
    n = conv(cin, cout, 3, 3) + norm_params + 1 + conv(cout, cout, 3, 3) + norm_params + 1
    return n + (conv(cin, cout, 1) if cin != cout else 0)


def projection(cin: int, hidden: int, cout: int) -> int:
    return conv(cin, hidden) + 2 * hidden + conv(hidden, cout) + 2 * cout


@functools.cache
def timm_backbone(name: str, features_only: bool) -> tuple[int, int, tuple[int, ...], int]:
    """(parameters, first-conv parameters, feature widths, stem width) of a timm backbone."""
    model = timm.create_model(name, features_only=True) if features_only else timm.create_model(name, num_classes=0)
    first = (
        model.stem_0 if features_only and "convnext" in name else model.stem[0] if "convnext" in name else model.conv1
    )
    widths = tuple(model.feature_info.channels()) if features_only else (model.num_features,)
    return n_params(model), n_params(first), widths, first.out_channels


def unet_block(cin: int, cout: int, kernel: int, layers: int, norm: bool = True) -> int:
    """ConvBlock: ``layers`` convs (first cin -> cout), a BatchNorm per conv, the 1x1 resid_conv (always)."""
    return (
        conv(cin, cout, kernel)
        + (layers - 1) * conv(cout, cout, kernel)
        + (2 * cout * layers if norm else 0)
        + conv(cin, cout, 1)
    )


def unet_filters(kw: dict) -> list[int]:
    return list(kw.get("num_filters", ())) or [16 * 2**i for i in range(kw.get("num_blocks", 4) + 1)]


def unet2d_params(kw: dict) -> int:
    f, layers = unet_filters(kw), kw.get("num_block_layers", 2)
    k = kw.get("kernel_size", (3, 3))
    k = k[0] * k[1]
    down = [kw.get("in_channels", 1), *f]
    n = sum(unet_block(down[i], down[i + 1], k, layers) for i in range(len(f) - 1))
    n += unet_block(f[-2], f[-1], k, layers)
    n += sum(unet_block(f[-(i + 1)] + f[-(i + 2)], down[-(i + 2)], k, layers) for i in range(len(f) - 1))
    return n + unet_block(f[0], kw.get("out_channels", 1), k, 1, norm=False)  # terminal: no norm


def unet25d_params(kw: dict) -> int:
    f, layers = unet_filters(kw), kw.get("num_block_layers", 2)
    ky, kx = kw.get("xy_kernel_size", (3, 3))
    dz = 1 + kw.get("in_stack_depth", 5) - kw.get("out_stack_depth", 1)
    down = [kw.get("in_channels", 1), *f]
    n = sum(unet_block(down[i], down[i + 1], 3 * ky * kx, layers) for i in range(len(f) - 1))
    n += conv(f[-2], f[-1], dz)  # bottleneck: a plain depth-compressing conv
    n += sum(unet_block(f[-(i + 1)] + f[-(i + 2)], down[-(i + 2)], ky * kx, layers) for i in range(len(f) - 1))
    n += sum(conv(c, c, dz) for c in f[:-1])  # skip compressions
    # Terminal: (1, 3, 3) kernel whatever xy_kernel_size; batch norm only for segmentation.
    return n + unet_block(f[0], kw.get("out_channels", 1), 9, 1, norm=kw.get("task", "seg") == "seg")


def unext2_params(kw: dict) -> int:
    backbone = kw.get("backbone", "convnextv2_tiny")
    total, first, widths, _ = timm_backbone(backbone, True)
    in_ch, out_ch = kw.get("in_channels", 1), kw.get("out_channels", 1)
    depth = kw.get("in_stack_depth", 5)
    out_depth = kw.get("out_stack_depth") or depth
    kz, ky, kx = kw.get("stem_kernel_size", (5, 4, 4))
    ratio = kw.get("head_expansion_ratio", 4)
    n = total - first + conv(in_ch, widths[0] // (depth // kz), kz, ky, kx)
    dec = list(widths[::-1])
    dec[-1] = (out_depth + 2) * out_ch * 4 * ratio
    for i in range(len(dec) - 1):
        if kw.get("decoder_mode", "pixelshuffle") == "pixelshuffle":
            n += unext2_up_stage(
                dec[i], dec[i + 1], kw.get("decoder_conv_blocks", 2), kw.get("decoder_upsample_pre_conv", False)
            )
        else:
            n += deconv_up_stage(dec[i], dec[i + 1], kw.get("decoder_norm_layer", "instance"))
    return n + voxel_head(dec[-1], out_ch, out_depth, ratio)


def fcmae_params(kw: dict) -> int:
    in_ch, out_ch = kw["in_channels"], kw["out_channels"]
    dims, blocks = kw.get("dims", (96, 192, 384, 768)), kw.get("encoder_blocks", (3, 3, 9, 3))
    kz, k, _ = kw.get("stem_kernel_size", (5, 4, 4))
    depth = kw.get("in_stack_depth", 5)
    ratio = kw.get("head_conv_expansion_ratio", 4)
    n = conv(in_ch, dims[0] // (depth // kz), kz, k, k) + conv(in_ch, dims[0], k, k) + 2 * dims[0]
    for i, (c, b) in enumerate(zip(dims, blocks)):
        if i:  # LayerNorm2d + 2x2 stride-2 conv
            n += 2 * dims[i - 1] + conv(dims[i - 1], c, 2, 2)
        n += b * masked_block(c)
    dec = list(dims[::-1])
    head_conv = kw.get("head_conv", False)
    # The convolutional head's width follows in_channels (reference checkpoint format).
    dec[-1] = (depth + 2) * in_ch * 4 * ratio if head_conv else out_ch * depth * k**2
    n += sum(unext2_up_stage(dec[i], dec[i + 1], kw.get("decoder_conv_blocks", 1), False) for i in range(len(dec) - 1))
    return n + (voxel_head(dec[-1], out_ch, depth, ratio) if head_conv else 0)


def contrastive_params(kw: dict) -> int:
    total, first, (features,), stem_width = timm_backbone(kw["backbone"], False)
    kz, ky, kx = kw.get("stem_kernel_size", (5, 4, 4))
    sz = kw.get("stem_stride", (5, 4, 4))[0]
    slices = (kw["in_stack_depth"] - kz) // sz + 1
    stem = conv(kw["in_channels"], stem_width // slices, kz, ky, kx)
    return total - first + stem + projection(features, kw.get("embedding_dim", 768), kw.get("projection_dim", 128))


def resnet3d_params(kw: dict) -> int:
    encoder = _monai_resnet(kw["backbone"], kw.get("in_channels", 1))
    e = kw.get("embedding_dim", 512)
    return encoder + projection(e, e, kw.get("projection_dim", 128))


@functools.cache
def _monai_resnet(name: str, in_channels: int) -> int:
    with torch.device("meta"):
        return n_params(ResNetFeatures(name, pretrained=False, spatial_dims=3, in_channels=in_channels))


def vae25d_feature_size(kw: dict) -> tuple[int, int]:
    _, _, widths, _ = timm_backbone(kw.get("backbone", "resnet50"), True)
    reduction = 8 if len(widths) == 4 else 16  # ConvNeXt: 3 stride-2 stages; ResNet: max-pool + 3
    sy, sx = kw.get("stem_stride", (2, 4, 4))[1:]
    y, x = kw.get("input_spatial_size", (256, 256))
    return y // sy // reduction, x // sx // reduction


def vae25d_params(kw: dict) -> int:
    backbone = kw.get("backbone", "resnet50")
    total, first, widths, _ = timm_backbone(backbone, True)
    in_ch, latent = kw.get("in_channels", 2), kw.get("latent_dim", 1024)
    depth, out_depth = kw.get("in_stack_depth", 16), kw.get("out_stack_depth", 16)
    kz, ky, kx = kw.get("stem_kernel_size", (2, 4, 4))
    sz = kw.get("stem_stride", (2, 4, 4))[0]
    stages, ratio = kw.get("decoder_stages", 4), kw.get("head_expansion_ratio", 2)
    norm, mode = kw.get("norm_name", "batch"), kw.get("upsample_mode", "pixelshuffle")
    h, w = vae25d_feature_size(kw)
    c_last = widths[-1]
    n = total - first + conv(in_ch, widths[0] // ((depth - kz) // sz + 1), kz, ky, kx)
    # Encoder: the last feature map is flattened into fc; then mean and log-variance heads.
    n += conv(c_last * h * w, latent) + 2 * conv(latent, latent)
    # Decoder: z -> (latent // h**2, h, h) (square, from Y), 1x1 to the backbone width.
    maps = latent // (h * h)
    n += conv(latent, maps * h * h) + conv(maps, c_last, 1)
    dec = [c_last // 2**i for i in range(stages)] + [(out_depth + 2) * in_ch * 4 * ratio]
    for cin, cout in zip(dec[:-1], dec[1:]):
        if mode == "deconv":  # bias-free transposed conv, one residual unit, 1x1 conv (conv_blocks unused)
            n += conv(cin, cout, 2, 2, bias=False) + residual_unit(cout, cout, norm) + conv(cout, cout, 1)
            continue
        n += conv(cin, cin, 3, 3) if kw.get("upsample_pre_conv") else 0
        widths_in = [cin // 4] + [cout] * (kw.get("conv_blocks", 2) - 1)
        n += sum(residual_unit(a, cout, norm) for a in widths_in)
    return n + voxel_head(dec[-1], in_ch, out_depth, ratio)


def monai_vae_params(kw: dict) -> int:
    monai_kw = dict(kw)
    monai_kw.setdefault("norm", "instance")
    return n_params(VarAutoEncoder(**monai_kw))


FORMULAS = {
    "BetaVae25D": vae25d_params,
    "BetaVaeMonai": monai_vae_params,
    "ContrastiveEncoder": contrastive_params,
    "FullyConvolutionalMAE": fcmae_params,
    "ResNet3dEncoder": resnet3d_params,
    "UNeXt2": unext2_params,
    "Unet25d": unet25d_params,
    "Unet2d": unet2d_params,
}


@pytest.mark.parametrize(
    "fixture", sorted(p.relative_to(FIXTURES).with_suffix("").as_posix() for p in FIXTURES.rglob("*.json"))
)
def test_formulas_match_every_fixture(fixture, ref):
    """The formulas below reproduce the reference's parameter counts for all fourteen fixtures."""
    meta, _, kwargs = ref.load(fixture)
    assert FORMULAS[meta["model"]](kwargs) == meta["num_parameters"]


def fast_fill(model: torch.nn.Module) -> None:
    """Deterministic non-trivial values for every floating-point entry (running variances positive)."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for key, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                value = torch.rand(tensor.shape, generator=generator) * 0.2 - 0.1
                tensor.copy_(value + 1.0 if key.endswith("running_var") else value)


# ------------------------------------------------------------------ Unet2d


def _unet_filters(cfg: dict) -> tuple[int, ...]:
    # Non-doubling, odd widths catch any hidden "double the width" assumption.
    return () if cfg["num_filters"] == "default" else tuple(4 + 3 * i for i in range(cfg["num_blocks"] + 1))


UNET2D = grid(
    dict(
        in_channels=[1, 3],
        out_channels=[1, 2],
        kernel_size=[(3, 3), (5, 3)],
        residual=[False, True],
        num_blocks=[1, 2, 3],
        num_block_layers=[1, 2, 3],
        num_filters=["default", "custom"],
        task=["seg", "reg"],
        dropout=[0.0, 0.3],
    ),
    24,
)


@pytest.mark.parametrize("cfg", UNET2D, ids=ids(UNET2D))
def test_unet2d_argument_space(cfg):
    kw = cfg | {"num_filters": _unet_filters(cfg)}
    a, b = roundtrip(lambda: Unet2d(**kw), fast_fill)
    assert n_params(a) == unet2d_params(kw)
    sd = a.state_dict()
    blocks = ["bottom_transition_block"] + [
        f"{p}_conv_block_{i}" for p in ("down", "up") for i in range(cfg["num_blocks"])
    ]
    for block in blocks:  # every block: num_block_layers convs and norms, and the 1x1 resid_conv even if unused
        assert f"{block}.resid_conv.weight" in sd
        assert sum(k.startswith(f"{block}.Conv2d_") and k.endswith("weight") for k in sd) == cfg["num_block_layers"]
        assert sum(k.startswith(f"{block}.batch_norm_") and k.endswith("weight") for k in sd) == cfg["num_block_layers"]
    # The terminal block never has a norm; its kernel is kernel_size.
    assert not any(k.startswith("terminal_block.batch_norm") for k in sd)
    assert sd["terminal_block.Conv2d_0.weight"].shape[-2:] == cfg["kernel_size"]
    step = 2 ** cfg["num_blocks"]
    for y, x in [(step, 2 * step), (3 * step, step)]:
        inp = torch.randn(2, cfg["in_channels"], 1, y, x)
        out = same_forward(a, b, inp)
        assert out.shape == (2, cfg["out_channels"], 1, y, x)
        with torch.no_grad():
            torch.testing.assert_close(a(inp[:, :, 0]), out)  # (B, C, Y, X) input gives the same 5-D output
        if cfg["task"] == "seg":  # terminal ReLU; "reg" is linear
            assert (out >= 0).all()


# ------------------------------------------------------------------ Unet25d

UNET25D = grid(
    dict(
        in_channels=[1, 2],
        out_channels=[1, 3],
        depths=[(3, 1), (5, 1), (5, 3), (5, 5), (7, 2)],
        xy_kernel_size=[(3, 3), (5, 5), (3, 5)],
        residual=[False, True],
        num_blocks=[1, 2, 3],
        num_block_layers=[1, 2, 3],
        num_filters=["default", "custom"],
        task=["seg", "reg"],
        dropout=[0.0, 0.5],
    ),
    24,
)


@pytest.mark.parametrize("cfg", UNET25D, ids=ids(UNET25D))
def test_unet25d_argument_space(cfg):
    (in_depth, out_depth), kw = cfg["depths"], {k: v for k, v in cfg.items() if k != "depths"}
    kw |= {"num_filters": _unet_filters(cfg), "in_stack_depth": in_depth, "out_stack_depth": out_depth}
    a, b = roundtrip(lambda: Unet25d(**kw), fast_fill)
    assert n_params(a) == unet25d_params(kw)
    sd = a.state_dict()
    dz = 1 + in_depth - out_depth
    assert [k for k in sd if k.startswith("skip_conv_layer_") and k.endswith("weight")] == [
        f"skip_conv_layer_{i}.weight" for i in range(cfg["num_blocks"])
    ]
    assert sd["skip_conv_layer_0.weight"].shape[-3:] == (dz, 1, 1)
    assert sd["bottom_transition_block.weight"].shape[-3:] == (dz, 1, 1)
    ky, kx = cfg["xy_kernel_size"]
    assert sd["down_conv_block_0.Conv3d_0.weight"].shape[-3:] == (3, ky, kx)
    assert sd["up_conv_block_0.Conv3d_0.weight"].shape[-3:] == (1, ky, kx)
    # Terminal: (1, 3, 3) whatever xy_kernel_size; a batch norm only for segmentation.
    assert sd["terminal_block.Conv3d_0.weight"].shape[-3:] == (1, 3, 3)
    assert ("terminal_block.batch_norm_0.weight" in sd) == (cfg["task"] == "seg")
    step = 2 ** cfg["num_blocks"]
    for y, x in [(step, 2 * step), (2 * step, 3 * step)]:
        out = same_forward(a, b, torch.randn(2, cfg["in_channels"], in_depth, y, x))
        assert out.shape == (2, cfg["out_channels"], out_depth, y, x)


# ------------------------------------------------------------------ UNeXt2

UNEXT2 = grid(
    dict(
        backbone=["convnextv2_pico8_test", "convnext_pico8_test"],
        in_channels=[1, 2],
        out_channels=[1, 3],
        stem=[(5, (5, 4, 4)), (10, (5, 4, 4)), (4, (2, 4, 4)), (8, (2, 4, 4)), (1, (1, 4, 4))],
        out_stack_depth=[None, 1, 3],
        decoder_mode=["pixelshuffle", "deconv"],
        decoder_conv_blocks=[1, 2],
        decoder_upsample_pre_conv=[False, True],
        head_pool=[False, True],
        head_expansion_ratio=[1, 2, 4],
    ),
    24,
)


@pytest.mark.parametrize("cfg", UNEXT2, ids=ids(UNEXT2))
def test_unext2_argument_space(cfg):
    (depth, stem), kw = cfg["stem"], {k: v for k, v in cfg.items() if k != "stem"}
    kw |= {"in_stack_depth": depth, "stem_kernel_size": stem}
    a, b = roundtrip(lambda: UNeXt2(**kw), fast_fill)
    assert n_params(a) == unext2_params(kw)
    sd = a.state_dict()
    assert "encoder_stages.stem_1.weight" in sd and not any(k.startswith("encoder_stages.stem_0") for k in sd)
    assert any(".upsample.pixelshuffle.conv_block." in k for k in sd) == (
        cfg["decoder_upsample_pre_conv"] and cfg["decoder_mode"] == "pixelshuffle"
    )
    out_depth = cfg["out_stack_depth"] or depth
    for y, x in [(32, 64), (64, 32)]:
        out = same_forward(a, b, torch.randn(2, cfg["in_channels"], depth, y, x))
        assert out.shape == (2, cfg["out_channels"], out_depth, y, x)


# ------------------------------------------------------------------ FullyConvolutionalMAE

FCMAE = grid(
    dict(
        in_channels=[1, 2],
        out_channels=[1, 2],
        arch=[((1, 1), (8, 16)), ((1, 1, 1), (8, 16, 32)), ((1, 2, 1, 1), (8, 16, 32, 64)), ((2, 1, 1), (4, 8, 16))],
        stem=[(5, (5, 4, 4)), (10, (5, 4, 4)), (1, (1, 4, 4)), (3, (3, 2, 2))],
        decoder_conv_blocks=[1, 2],
        pretraining=[True, False],
        head_conv=[False, True],
        head_conv_expansion_ratio=[1, 4],
        head_conv_pool=[True, False],
    ),
    24,
    # The convolutional head up-samples by 4, so it needs a 4-pixel stem patch (ValueError otherwise).
    valid=lambda c: not c["head_conv"] or c["stem"][1][1] == 4,
)


@pytest.mark.parametrize("cfg", FCMAE, ids=ids(FCMAE))
def test_fcmae_argument_space(cfg):
    (blocks, dims), (depth, stem) = cfg["arch"], cfg["stem"]
    kw = {k: v for k, v in cfg.items() if k not in ("arch", "stem")}
    kw |= {"encoder_blocks": blocks, "dims": dims, "in_stack_depth": depth, "stem_kernel_size": stem}
    a, b = roundtrip(lambda: FullyConvolutionalMAE(**kw), fast_fill)
    assert n_params(a) == fcmae_params(kw)
    sd = a.state_dict()
    assert [k for k in sd if k.endswith(".downsample.1.weight") and k.startswith("encoder")] == [
        f"encoder.stages.{i}.downsample.1.weight" for i in range(1, len(dims))
    ]
    assert any(k.startswith("head.") for k in sd) == cfg["head_conv"]  # the pixel-shuffle head has no parameters
    stride = stem[1] * 2 ** (len(dims) - 1)
    assert a.encoder.total_stride == stride
    for (y, x), z, ratio in [((stride, 2 * stride), depth, 0.0), ((2 * stride, stride), 1, 0.5)]:
        out = same_forward(a, b, torch.randn(2, cfg["in_channels"], z, y, x), mask_ratio=ratio)
        prediction, mask = out if cfg["pretraining"] else (out, "not returned")
        assert prediction.shape == (2, cfg["out_channels"], depth, y, x)
        if not cfg["pretraining"]:
            continue
        if ratio == 0:
            assert mask is None
        else:
            cells = (y // stride) * (x // stride)
            assert mask.shape == (2, 1, y, x) and mask.dtype == torch.bool
            assert (mask.flatten(1).float().mean(1) == int(cells * ratio) / cells).all()


# ------------------------------------------------------------------ ContrastiveEncoder

CONTRASTIVE = grid(
    dict(
        backbone=["convnextv2_pico8_test", "convnext_pico8_test", "resnet_pico8_test"],
        in_channels=[1, 3],
        stem=[
            (5, (5, 4, 4), (5, 4, 4)),
            (10, (5, 4, 4), (5, 4, 4)),
            (4, (2, 4, 4), (2, 4, 4)),
            (5, (3, 4, 4), (2, 4, 4)),
            (6, (3, 2, 2), (3, 2, 2)),
            (1, (1, 4, 4), (1, 4, 4)),
        ],
        embedding_dim=[16, 40],
        projection_dim=[8, 12],
    ),
    24,
)


@pytest.mark.parametrize("cfg", CONTRASTIVE, ids=ids(CONTRASTIVE))
def test_contrastive_encoder_argument_space(cfg):
    (depth, kernel, stride), kw = cfg["stem"], {k: v for k, v in cfg.items() if k != "stem"}
    kw |= {"in_stack_depth": depth, "stem_kernel_size": kernel, "stem_stride": stride}
    a, b = roundtrip(lambda: ContrastiveEncoder(**kw), fast_fill)
    assert n_params(a) == contrastive_params(kw)
    sd = a.state_dict()
    weights = [k for k in sd if k.startswith("projection.") and k.endswith("weight")]
    assert weights == [f"projection.{i}.weight" for i in (0, 1, 3, 4)]  # Linear, BatchNorm1d, ReLU, Linear, BN
    width = 64  # the tiny backbones' feature width; embedding_dim is only the projection's hidden width
    assert sd["projection.0.weight"].shape == (cfg["embedding_dim"], width)
    total = stride[1] * (8 if "convnext" in cfg["backbone"] else 16)
    for y, x in [(total, total), (2 * total, 3 * total)]:
        embedding, projected = same_forward(a, b, torch.randn(2, cfg["in_channels"], depth, y, x))
        assert embedding.shape == (2, width) and projected.shape == (2, cfg["projection_dim"])


# ------------------------------------------------------------------ ResNet3dEncoder

RESNET3D = grid(
    dict(
        backbone=["resnet10", "resnet18", "resnet34", "resnet50"],
        in_channels=[1, 2, 3],
        projection_dim=[8, 32, 128],
    ),
    20,
)


@pytest.mark.parametrize("cfg", RESNET3D, ids=ids(RESNET3D))
def test_resnet3d_encoder_argument_space(cfg):
    width = 2048 if cfg["backbone"] == "resnet50" else 512
    kw = cfg | {"embedding_dim": width}

    def make():  # skip the (slow, irrelevant) random initialisation of up to 46M parameters
        with torch.device("meta"):
            model = ResNet3dEncoder(**kw)
        return model.to_empty(device="cpu")

    a, b = roundtrip(make, fast_fill)
    assert n_params(a) == resnet3d_params(kw)
    assert a.state_dict()["projection.0.weight"].shape == (width, width)
    for shape in [(8, 16, 16), (12, 24, 20)]:
        embedding, projected = same_forward(a, b, torch.randn(2, cfg["in_channels"], *shape))
        assert embedding.shape == (2, width) and projected.shape == (2, cfg["projection_dim"])


# ------------------------------------------------------------------ BetaVae25D

VAE25D_SIZES = {
    "resnet_pico8_test": [(64, 64), (128, 64), (64, 128), (192, 64)],
    "convnextv2_pico8_test": [(32, 32), (64, 32), (32, 96), (80, 48)],  # 80, 48: not multiples, still valid
}
VAE25D = grid(
    dict(
        backbone=list(VAE25D_SIZES),
        in_channels=[1, 2],
        stem=[(4, (2, 4, 4)), (8, (4, 4, 4)), (6, (3, 4, 4)), (2, (1, 4, 4))],
        out_stack_depth=[1, 3],
        latent_dim=[16, 36],
        size=[0, 1, 2, 3],
        decoder_stages=[2, 3, 4],
        head_expansion_ratio=[1, 2],
        head_pool=[False, True],
        upsample_mode=["pixelshuffle", "deconv"],
        conv_blocks=[1, 2],
        norm_name=["batch", "instance"],
        upsample_pre_conv=[None, "default"],
    ),
    24,
)


@pytest.mark.parametrize("cfg", VAE25D, ids=ids(VAE25D))
def test_beta_vae_25d_argument_space(cfg):
    (depth, stem), kw = cfg["stem"], {k: v for k, v in cfg.items() if k not in ("stem", "size")}
    size = VAE25D_SIZES[cfg["backbone"]][cfg["size"]]
    kw |= {"in_stack_depth": depth, "stem_kernel_size": stem, "stem_stride": stem, "input_spatial_size": size}
    a, b = roundtrip(lambda: BetaVae25D(**kw), fast_fill)
    assert n_params(a) == vae25d_params(kw)
    h, w = vae25d_feature_size(kw)
    sd = a.state_dict()
    assert sd["encoder.fc.weight"].shape == (cfg["latent_dim"], 64 * h * w)  # flattened, not pooled
    assert sd["decoder.latent_proj.weight"].shape[:2] == (64, cfg["latent_dim"] // (h * h))
    out = same_forward(a, b, torch.randn(2, cfg["in_channels"], depth, *size))
    assert list(vars(out)) == ["recon_x", "mean", "logvar", "z"]
    side = h * 2 ** cfg["decoder_stages"] * 4  # square, from the Y size (reference behaviour)
    assert out.recon_x.shape == (2, cfg["in_channels"], cfg["out_stack_depth"], side, side)
    assert out.mean.shape == out.logvar.shape == out.z.shape == (2, cfg["latent_dim"])
    with pytest.raises(ValueError, match="input_spatial_size"):
        a(torch.randn(2, cfg["in_channels"], depth, size[0] * 2, size[1]))


# ------------------------------------------------------------------ BetaVaeMonai

MONAI_VAE = grid(
    dict(
        shape=[(2, (1, 16, 16)), (2, (2, 16, 24)), (3, (1, 8, 16, 16)), (2, (3, 32, 32))],
        levels=[((4,), (2,)), ((4, 8), (2, 2)), ((4, 8, 8), (2, 2, 1)), ((8, 16), (2, 2))],
        out_channels=[1, 2],
        latent_size=[4, 8],
        num_res_units=[0, 1, 2],
        kernel_size=[3, 5],
        use_sigmoid=[False, True],
        norm=["batch", "instance"],
    ),
    24,
)


@pytest.mark.parametrize("cfg", MONAI_VAE, ids=ids(MONAI_VAE))
def test_beta_vae_monai_argument_space(cfg):
    (dims, in_shape), (channels, strides) = cfg["shape"], cfg["levels"]
    kw = {k: v for k, v in cfg.items() if k not in ("shape", "levels")}
    kw |= {"spatial_dims": dims, "in_shape": in_shape, "channels": channels, "strides": strides}
    a, b = roundtrip(lambda: BetaVaeMonai(**kw), fast_fill)
    # A thin wrapper: MONAI's VarAutoEncoder layout under "model.".
    monai_keys = [f"model.{k}" for k in VarAutoEncoder(**kw).state_dict()]
    assert list(a.state_dict()) == monai_keys and n_params(a) == monai_vae_params(kw)
    out = same_forward(a, b, torch.randn(3, *in_shape))
    assert out.recon_x.shape == (3, cfg["out_channels"], *in_shape[1:])
    assert out.mean.shape == out.z.shape == (3, cfg["latent_size"])
    torch.testing.assert_close(out.z, out.mean + torch.exp(0.5 * out.logvar))  # eval: no noise
    if cfg["use_sigmoid"]:
        assert ((out.recon_x >= 0) & (out.recon_x <= 1)).all()


# ------------------------------------------------------------------ invalid combinations

CNX, RES = "convnextv2_pico8_test", "resnet_pico8_test"
VAE = dict(backbone=RES, in_channels=1, in_stack_depth=4, out_stack_depth=4, latent_dim=16, input_spatial_size=(64, 64))
INVALID = {
    # Unet2d
    "unet2d-num_filters-length": (
        lambda: Unet2d(num_blocks=2, num_filters=(8, 16)),
        r"num_filters.*num_blocks \+ 1 = 3",
    ),
    "unet2d-even-kernel": (lambda: Unet2d(kernel_size=(4, 3)), r"kernel_size must be 2 odd.*\(4, 3\)"),
    "unet2d-kernel-length": (lambda: Unet2d(kernel_size=(3, 3, 3)), r"kernel_size must be 2 odd"),
    "unet2d-task": (lambda: Unet2d(task="cls"), r"task must be one of \['seg', 'reg'\], got 'cls'"),
    "unet2d-num_blocks": (lambda: Unet2d(num_blocks=0), r"num_blocks must be an integer >= 1, got 0"),
    "unet2d-num_block_layers": (lambda: Unet2d(num_block_layers=0), r"num_block_layers must be an integer >= 1"),
    "unet2d-dropout": (lambda: Unet2d(dropout=1.0), r"dropout must be in \[0, 1\), got 1.0"),
    "unet2d-in_channels": (lambda: Unet2d(in_channels=0), r"in_channels must be an integer >= 1, got 0"),
    # Unet25d
    "unet25d-out_stack_depth": (lambda: Unet25d(in_stack_depth=3, out_stack_depth=4), r"out_stack_depth.*got 4"),
    "unet25d-xy_kernel_size": (lambda: Unet25d(xy_kernel_size=(2, 3)), r"xy_kernel_size must be 2 odd"),
    "unet25d-dropout": (lambda: Unet25d(dropout=0.6), r"dropout must be in \[0, 0.5\].*0.6"),
    "unet25d-num_filters": (lambda: Unet25d(num_filters=(4, 8, 0, 8, 8)), r"num_filters.*positive"),
    "unet25d-task": (lambda: Unet25d(task="regression"), r"task must be one of"),
    # UNeXt2
    "unext2-depth-not-multiple": (
        lambda: UNeXt2(backbone=CNX, in_stack_depth=7),
        r"in_stack_depth=7 must be a multiple",
    ),
    "unext2-stem-slices": (
        lambda: UNeXt2(backbone=CNX, in_stack_depth=15),  # 3 slices do not divide the stem width 8
        r"in_stack_depth // stem_kernel_size\[0\] = 15 // 5 = 3",
    ),
    "unext2-backbone": (lambda: UNeXt2(backbone="resnet18"), r"ConvNeXt backbone, got backbone='resnet18'"),
    "unext2-backbone-widths": (lambda: UNeXt2(backbone="test_convnext"), r"backbone='test_convnext'.*double"),
    "unext2-decoder_mode": (lambda: UNeXt2(backbone=CNX, decoder_mode="bilinear"), r"decoder_mode must be one of"),
    "unext2-decoder_conv_blocks": (lambda: UNeXt2(backbone=CNX, decoder_conv_blocks=0), r"decoder_conv_blocks must"),
    "unext2-out_stack_depth": (lambda: UNeXt2(backbone=CNX, out_stack_depth=0), r"out_stack_depth must be"),
    # FullyConvolutionalMAE
    "fcmae-lengths": (lambda: FullyConvolutionalMAE(1, 1, encoder_blocks=(1, 1), dims=(8, 16, 32)), r"encoder_blocks"),
    "fcmae-one-stage": (lambda: FullyConvolutionalMAE(1, 1, encoder_blocks=(1,), dims=(8,)), r"at least 2 stages"),
    "fcmae-dims": (lambda: FullyConvolutionalMAE(1, 1, encoder_blocks=(1, 1), dims=(8, 24)), r"dims=\(8, 24\).*double"),
    "fcmae-depth": (
        lambda: FullyConvolutionalMAE(1, 1, encoder_blocks=(1, 1), dims=(8, 16), in_stack_depth=3),
        r"in_stack_depth=3 is smaller than the stem's depth kernel stem_kernel_size\[0\]=5",
    ),
    "fcmae-dims0-slices": (
        lambda: FullyConvolutionalMAE(1, 1, encoder_blocks=(1, 1), dims=(6, 12), in_stack_depth=20),
        r"dims\[0\]=6 must be a multiple of in_stack_depth // stem_kernel_size\[0\] = 4",
    ),
    "fcmae-decoder_conv_blocks": (
        lambda: FullyConvolutionalMAE(1, 1, (1, 1), (8, 16), decoder_conv_blocks=0),
        r"decoder_conv_blocks must be an integer >= 1",
    ),
    # ContrastiveEncoder
    "contrastive-stem-slices": (
        lambda: ContrastiveEncoder(CNX, 1, in_stack_depth=15),
        r"3 slices from in_stack_depth=15.*do not divide the encoder's 8 input channels",
    ),
    "contrastive-depth": (lambda: ContrastiveEncoder(CNX, 1, in_stack_depth=3), r"in_stack_depth=3 is smaller"),
    "contrastive-backbone": (lambda: ContrastiveEncoder("vit_tiny_patch16_224", 1, 5), r"backbone='vit_tiny"),
    "contrastive-deep-stem": (lambda: ContrastiveEncoder("resnet18d", 1, 5), r"backbone='resnet18d'.*multi-layer stem"),
    "contrastive-stem-length": (lambda: ContrastiveEncoder(CNX, 1, 5, stem_kernel_size=(5, 4)), r"stem_kernel_size"),
    "contrastive-projection_dim": (lambda: ContrastiveEncoder(CNX, 1, 5, projection_dim=0), r"projection_dim must be"),
    "contrastive-unknown": (lambda: ContrastiveEncoder("convnext_nonexistent", 1, 5), r"'convnext_nonexistent'"),
    # ResNet3dEncoder
    "resnet3d-embedding_dim": (lambda: ResNet3dEncoder("resnet10", embedding_dim=2048), r"set embedding_dim=512"),
    "resnet3d-backbone": (lambda: ResNet3dEncoder("resnet11"), r"backbone must be one of .*got 'resnet11'"),
    "resnet3d-in_channels": (lambda: ResNet3dEncoder("resnet10", in_channels=0), r"in_channels must be"),
    # BetaVae25D
    "vae25d-input_spatial_size": (
        lambda: BetaVae25D(**VAE | {"input_spatial_size": (96, 64)}),
        r"input_spatial_size=\(96, 64\).*multiples of 64",
    ),
    "vae25d-latent_dim": (
        lambda: BetaVae25D(**VAE | {"latent_dim": 3, "input_spatial_size": (128, 128)}),
        r"latent_dim=3 is smaller than the \(2, 2\) = 4 cells",
    ),
    "vae25d-decoder_stages": (lambda: BetaVae25D(**VAE | {"decoder_stages": 6}), r"decoder_stages=6"),
    "vae25d-upsample_mode": (lambda: BetaVae25D(**VAE | {"upsample_mode": "nearest"}), r"upsample_mode must be one"),
    "vae25d-norm_name": (lambda: BetaVae25D(**VAE | {"norm_name": "group"}), r"norm_name must be one of"),
    "vae25d-backbone": (lambda: BetaVae25D(**VAE | {"backbone": "vit_tiny_patch16_224"}), r"backbone='vit_tiny"),
    "vae25d-stem-slices": (
        lambda: BetaVae25D(**VAE | {"in_stack_depth": 6, "stem_kernel_size": (2, 4, 4), "stem_stride": (2, 4, 4)}),
        r"3 slices from in_stack_depth=6",
    ),
    "vae25d-conv_blocks": (lambda: BetaVae25D(**VAE | {"conv_blocks": 0}), r"conv_blocks must be an integer"),
    # BetaVaeMonai
    "monai-norm": (lambda: BetaVaeMonai(2, (1, 16, 16), 1, 4, (4, 8), (2, 2), norm="group"), r"norm must be one of"),
    "monai-lengths": (
        lambda: BetaVaeMonai(2, (1, 16, 16), 1, 4, (4, 8), (2,)),
        r"channels \(4, 8\) and strides \(2,\)",
    ),
    "monai-in_shape": (lambda: BetaVaeMonai(2, (16, 16), 1, 4, (4, 8), (2, 2)), r"in_shape must be \(C, \*spatial\)"),
    "monai-spatial_dims": (lambda: BetaVaeMonai(4, (1, 8, 8, 8, 8), 1, 4, (4,), (2,)), r"spatial_dims must be one of"),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_combinations_name_the_argument(case):
    make, message = INVALID[case]
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize(
    "make",
    [
        lambda: ContrastiveEncoder(CNX, 1, in_stack_depth=7, stem_kernel_size=(5, 4, 4), stem_stride=(5, 4, 4)),
        lambda: BetaVae25D(**VAE | {"in_stack_depth": 5, "stem_kernel_size": (2, 4, 4), "stem_stride": (2, 4, 4)}),
        lambda: FullyConvolutionalMAE(1, 1, encoder_blocks=(1, 1), dims=(8, 16), in_stack_depth=7),
    ],
    ids=["contrastive", "vae25d", "fcmae"],
)
def test_stem_that_ignores_slices_warns(make):
    """The reference accepts a depth its stem does not cover (checkpoints exist), so this warns, not raises."""
    with pytest.warns(UserWarning, match="slices of every stack are ignored"):
        make()


def test_reference_valid_output_size_changes_warn():
    """Configurations the reference runs although the prediction is not at the input size: warn, keep working."""
    with pytest.warns(UserWarning, match=r"times \(4 / 2, 4 / 2\)"):
        unext2 = UNeXt2(backbone=CNX, stem_kernel_size=(5, 2, 2))
    assert unext2.eval()(torch.randn(1, 1, 5, 32, 48)).shape == (1, 1, 5, 64, 96)
    with pytest.warns(UserWarning, match="head_conv=True up-samples by 4"):
        fcmae = FullyConvolutionalMAE(1, 1, (1, 1), (8, 16), stem_kernel_size=(5, 2, 2), head_conv=True)
    prediction, _ = fcmae.eval()(torch.randn(1, 1, 5, 16, 16))
    assert prediction.shape == (1, 1, 5, 32, 32)
    with pytest.warns(UserWarning, match="has Y != X"):
        fcmae = FullyConvolutionalMAE(1, 1, (1, 1), (8, 16), stem_kernel_size=(5, 4, 2))
    prediction, _ = fcmae.eval()(torch.randn(1, 1, 5, 32, 16))
    assert prediction.shape == (1, 1, 5, 16, 16)  # the reference's size: Y scaled by 2 / 4


def test_beta_vae_25d_accepts_every_size_the_reference_runs():
    """ConvNeXt halves by flooring, so a non-multiple size can still give the feature map the reference sized fc
    for ((80 / 4) // 8 = 2 and 20 -> 10 -> 5 -> 2); a ResNet (rounding up) cannot (96 / 4 = 24 -> ... -> 2 != 1)."""
    vae = BetaVae25D(**VAE | {"backbone": CNX, "input_spatial_size": (80, 48)})
    assert vae.encoder.feature_size == (2, 1) and vae.encoder.fc.in_features == 64 * 2
    with torch.no_grad():
        out = vae.eval()(torch.randn(1, 1, 4, 80, 48))
    assert out.recon_x.shape == (1, 1, 4, 2 * 16 * 4, 2 * 16 * 4)
    with pytest.raises(ValueError, match=r"input_spatial_size=\(96, 64\)"):
        BetaVae25D(**VAE | {"input_spatial_size": (96, 64)})


def test_forward_rejects_wrong_inputs():
    cases = [
        (Unet2d(num_blocks=2, kernel_size=3), torch.randn(1, 1, 1, 10, 16), r"multiples of 4, got \(10, 16\)"),
        (Unet25d(num_blocks=1), torch.randn(1, 1, 4, 8, 8), r"in_stack_depth=5"),
        (UNeXt2(backbone=CNX), torch.randn(1, 1, 5, 48, 64), r"multiples of 32"),
        (FullyConvolutionalMAE(1, 1, (1, 1), (8, 16)), torch.randn(1, 1, 5, 12, 8), r"multiples of 8"),
        (ContrastiveEncoder(CNX, 1, 5), torch.randn(2, 1, 5, 16, 64), r"at least 32"),
        (ResNet3dEncoder("resnet10"), torch.randn(2, 1, 16, 16), r"\(B, C, Z, Y, X\)"),
        (BetaVaeMonai(2, (1, 16, 16), 1, 4, (4,), (2,)), torch.randn(2, 1, 8, 8), r"in_shape"),
    ]
    for model, x, message in cases:
        with pytest.raises(ValueError, match=message):
            model.eval()(x)
