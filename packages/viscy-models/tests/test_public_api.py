"""The public API contract: import paths, constructor argument names and defaults (users' YAML configs)."""

import importlib
import inspect

import pytest

import viscy_models

REQUIRED = inspect.Parameter.empty
CONTRACT = {
    "viscy_models.vae.beta_vae_25d.BetaVae25D": {
        "backbone": "resnet50",
        "in_channels": 2,
        "in_stack_depth": 16,
        "out_stack_depth": 16,
        "latent_dim": 1024,
        "input_spatial_size": (256, 256),
        "stem_kernel_size": (2, 4, 4),
        "stem_stride": (2, 4, 4),
        "drop_path_rate": 0.0,
        "decoder_stages": 4,
        "head_expansion_ratio": 2,
        "head_pool": False,
        "upsample_mode": "pixelshuffle",
        "conv_blocks": 2,
        "norm_name": "batch",
        "upsample_pre_conv": None,
    },
    "viscy_models.vae.beta_vae_monai.BetaVaeMonai": {
        "spatial_dims": REQUIRED,
        "in_shape": REQUIRED,
        "out_channels": REQUIRED,
        "latent_size": REQUIRED,
        "channels": REQUIRED,
        "strides": REQUIRED,
        "kernel_size": 3,
        "up_kernel_size": 3,
        "num_res_units": 0,
        "use_sigmoid": False,
        "norm": "instance",
        "kwargs": REQUIRED,
    },
    "viscy_models.contrastive.encoder.ContrastiveEncoder": {
        "backbone": REQUIRED,
        "in_channels": REQUIRED,
        "in_stack_depth": REQUIRED,
        "stem_kernel_size": (5, 4, 4),
        "stem_stride": (5, 4, 4),
        "embedding_dim": 768,
        "projection_dim": 128,
        "drop_path_rate": 0.0,
        "pretrained": False,
    },
    "viscy_models.unet.fcmae.FullyConvolutionalMAE": {
        "in_channels": REQUIRED,
        "out_channels": REQUIRED,
        "encoder_blocks": (3, 3, 9, 3),
        "dims": (96, 192, 384, 768),
        "encoder_drop_path_rate": 0.0,
        "stem_kernel_size": (5, 4, 4),
        "in_stack_depth": 5,
        "decoder_conv_blocks": 1,
        "pretraining": True,
        "head_conv": False,
        "head_conv_expansion_ratio": 4,
        "head_conv_pool": True,
    },
    "viscy_models.contrastive.resnet3d.ResNet3dEncoder": {
        "backbone": REQUIRED,
        "in_channels": 1,
        "embedding_dim": 512,
        "projection_dim": 128,
        "pretrained": False,
    },
    "viscy_models.unet.unext2.UNeXt2": {
        "in_channels": 1,
        "out_channels": 1,
        "in_stack_depth": 5,
        "out_stack_depth": None,
        "backbone": "convnextv2_tiny",
        "pretrained": False,
        "stem_kernel_size": (5, 4, 4),
        "decoder_mode": "pixelshuffle",
        "decoder_conv_blocks": 2,
        "decoder_norm_layer": "instance",
        "decoder_upsample_pre_conv": False,
        "head_pool": False,
        "head_expansion_ratio": 4,
        "drop_path_rate": 0.0,
    },
    "viscy_models.unet.unet2d.Unet2d": {
        "in_channels": 1,
        "out_channels": 1,
        "kernel_size": (3, 3),
        "residual": False,
        "dropout": 0.2,
        "num_blocks": 4,
        "num_block_layers": 2,
        "num_filters": (),
        "task": "seg",
    },
    "viscy_models.unet.unet25d.Unet25d": {
        "in_channels": 1,
        "out_channels": 1,
        "in_stack_depth": 5,
        "out_stack_depth": 1,
        "xy_kernel_size": (3, 3),
        "residual": False,
        "dropout": 0.2,
        "num_blocks": 4,
        "num_block_layers": 2,
        "num_filters": (),
        "task": "seg",
    },
}


@pytest.mark.parametrize("path", sorted(CONTRACT))
def test_constructor_signature_matches_spec(path):
    module_name, cls_name = path.rsplit(".", 1)
    cls = getattr(importlib.import_module(module_name), cls_name)
    params = inspect.signature(cls.__init__).parameters
    got = {name: p.default for name, p in params.items() if name != "self"}
    assert got == CONTRACT[path]
    # Importable flat and from the subpackage, as configs name them.
    assert getattr(viscy_models, cls_name) is cls
    subpackage = importlib.import_module(module_name.rsplit(".", 1)[0])
    assert getattr(subpackage, cls_name) is cls


def test_all_lists_the_eight_models():
    assert sorted(n for n in viscy_models.__all__ if n != "__version__") == sorted(
        p.rsplit(".", 1)[1] for p in CONTRACT
    )
