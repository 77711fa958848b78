"""Building blocks shared by the architectures: stems, decoders, heads and convolution blocks."""

from viscy_models.components.conv_block import ConvBlock2D, ConvBlock3D
from viscy_models.components.decoders import UNeXt2Decoder, UNeXt2UpStage, VaeUpStage
from viscy_models.components.heads import PixelToVoxelHead, PixelToVoxelShuffleHead
from viscy_models.components.stems import StemDepthtoChannels, UNeXt2Stem

__all__ = [
    "ConvBlock2D",
    "ConvBlock3D",
    "PixelToVoxelHead",
    "PixelToVoxelShuffleHead",
    "StemDepthtoChannels",
    "UNeXt2Decoder",
    "UNeXt2Stem",
    "UNeXt2UpStage",
    "VaeUpStage",
]
