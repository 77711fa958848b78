"""Encoders with projection heads for contrastive representation learning."""

from viscy_models.contrastive.encoder import ContrastiveEncoder
from viscy_models.contrastive.resnet3d import ResNet3dEncoder

__all__ = ["ContrastiveEncoder", "ResNet3dEncoder"]
