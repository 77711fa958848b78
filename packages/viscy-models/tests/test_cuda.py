"""Device-agnostic forward: every model runs on CUDA and agrees with its CPU twin (skipped without a GPU)."""

import pytest
import torch

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

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

CASES = {
    "UNeXt2": (lambda: UNeXt2(backbone="convnextv2_atto", decoder_conv_blocks=1), (2, 1, 5, 64, 64)),
    "FCMAE": (
        lambda: FullyConvolutionalMAE(1, 1, encoder_blocks=(1, 1, 1, 1), dims=(16, 32, 64, 128)),
        (2, 1, 5, 64, 64),
    ),
    "Unet2d": (lambda: Unet2d(residual=True), (2, 1, 1, 32, 32)),
    "Unet25d": (lambda: Unet25d(residual=True, num_blocks=2), (2, 1, 5, 32, 32)),
    "ContrastiveEncoder": (lambda: ContrastiveEncoder("convnext_atto", 1, 10), (2, 1, 10, 64, 64)),
    "ResNet3dEncoder": (lambda: ResNet3dEncoder("resnet10"), (2, 1, 8, 32, 32)),
    "BetaVaeMonai": (lambda: BetaVaeMonai(2, (1, 16, 16), 1, 4, (4, 8), (2, 2)), (2, 1, 16, 16)),
}


def _tensors(out):
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, tuple):
        return [t for t in out if t is not None]
    return list(vars(out).values())


@pytest.fixture
def full_precision_cuda():
    """cuDNN convolutions default to TF32 (10-bit mantissa, ~1e-3 error): compare against CPU in true float32."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.mark.parametrize("name", sorted(CASES))
def test_cuda_matches_cpu(name, full_precision_cuda):
    build, shape = CASES[name]
    torch.manual_seed(0)
    model = build().eval()
    x = torch.randn(shape)
    with torch.no_grad():
        cpu = _tensors(model(x))
        gpu = _tensors(model.cuda()(x.cuda()))
    for a, b in zip(cpu, gpu):
        assert b.device.type == "cuda"
        torch.testing.assert_close(b.cpu(), a, rtol=1e-3, atol=1e-3)


def test_cuda_random_paths_stay_on_device():
    fcmae = FullyConvolutionalMAE(1, 1, encoder_blocks=(1, 1), dims=(8, 16)).cuda()
    pred, mask = fcmae(torch.randn(2, 1, 5, 16, 16, device="cuda"), mask_ratio=0.5)
    assert pred.is_cuda and mask.is_cuda
    vae = BetaVae25D("resnet18", 1, 8, 8, latent_dim=16, input_spatial_size=(64, 64), conv_blocks=1).cuda()
    out = vae(torch.randn(2, 1, 8, 64, 64, device="cuda"))
    assert out.z.is_cuda and out.recon_x.is_cuda
