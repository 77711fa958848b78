"""U-Net family for virtual staining: UNeXt2, FCMAE and the 2D / 2.5D U-Nets."""

from viscy_models.unet.fcmae import FullyConvolutionalMAE
from viscy_models.unet.unet2d import Unet2d
from viscy_models.unet.unet25d import Unet25d
from viscy_models.unet.unext2 import UNeXt2

__all__ = ["FullyConvolutionalMAE", "UNeXt2", "Unet25d", "Unet2d"]
