"""3D ResNet encoder (MONAI) with a projection MLP for contrastive learning of volumes."""

from __future__ import annotations

import torch
from monai.networks.nets import ResNetFeatures
from torch import nn

from viscy_models.components.validation import check_positive_ints
from viscy_models.contrastive.encoder import check_encoder_input, projection_mlp

# MONAI's 3D ResNets (monai.networks.nets.ResNetFeatures).
_BACKBONES = ("resnet10", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnet200")


class ResNet3dEncoder(nn.Module):
    """MONAI 3D ResNet encoder returning ``(embedding, projection)`` for (B, C, Z, Y, X) input.

    The embedding is the global average of the last feature map.

    Parameters
    ----------
    backbone : str
        MONAI ResNet name: ``resnet10``, ``resnet18``, ``resnet34``, ``resnet50``, ...
    in_channels : int
        Input channels.
    embedding_dim : int
        Width of the backbone's last feature map (512 for resnet10/18/34, 2048 for resnet50 and deeper).
        Checked at construction (the reference failed in forward).
    projection_dim : int
        Width of the projection.
    pretrained : bool
        Load MONAI's MedicalNet weights (needs network access).
    """

    def __init__(
        self,
        backbone: str,
        in_channels: int = 1,
        embedding_dim: int = 512,
        projection_dim: int = 128,
        pretrained: bool = False,
    ) -> None:
        super().__init__()
        check_positive_ints("ResNet3dEncoder", in_channels=in_channels, projection_dim=projection_dim)
        if backbone not in _BACKBONES:
            raise ValueError(f"ResNet3dEncoder: backbone must be one of {list(_BACKBONES)}, got {backbone!r}.")
        self.encoder = ResNetFeatures(backbone, pretrained=pretrained, spatial_dims=3, in_channels=in_channels)
        width = self.encoder.layer4[-1].expansion * self.encoder.layer4[0].conv1.out_channels
        if width != embedding_dim:
            raise ValueError(
                f"ResNet3dEncoder: backbone {backbone!r} produces {width}-wide embeddings, got embedding_dim="
                f"{embedding_dim}: set embedding_dim={width}."
            )
        self.projection = projection_mlp(embedding_dim, embedding_dim, projection_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the embedding ``(B, embedding_dim)`` and the projection ``(B, projection_dim)``."""
        check_encoder_input(x, None, 1, "ResNet3dEncoder")
        embedding = self.encoder(x)[-1].mean(dim=(2, 3, 4))
        return embedding, self.projection(embedding)
