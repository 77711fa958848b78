"""Pure torch.nn.Module architectures for virtual staining and representation learning of cells."""

from importlib.metadata import PackageNotFoundError, version

from viscy_models.contrastive import ContrastiveEncoder, ResNet3dEncoder
from viscy_models.unet import FullyConvolutionalMAE, Unet2d, Unet25d, UNeXt2
from viscy_models.vae import BetaVae25D, BetaVaeMonai

try:
    __version__ = version("viscy-models")
except PackageNotFoundError:  # source tree without installation
    __version__ = "0.0.0"

__all__ = [
    "BetaVae25D",
    "BetaVaeMonai",
    "ContrastiveEncoder",
    "FullyConvolutionalMAE",
    "ResNet3dEncoder",
    "UNeXt2",
    "Unet25d",
    "Unet2d",
    "__version__",
]
