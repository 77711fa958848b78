"""Contrastive encoder (3D stem, 2D timm ConvNeXt or ResNet backbone) and the projection MLP of both encoders."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from viscy_models.components.backbones import create_timm_backbone
from viscy_models.components.stems import StemDepthtoChannels
from viscy_models.components.validation import check_positive_ints


def projection_mlp(in_dims: int, hidden_dims: int, out_dims: int) -> nn.Sequential:
    """Two-layer MLP with batch norm (SimCLR-style projection head).

    Parameters
    ----------
    in_dims : int
        Width of the embedding.
    hidden_dims : int
        Hidden width.
    out_dims : int
        Width of the projection.

    Returns
    -------
    torch.nn.Sequential
        ``Linear, BatchNorm1d, ReLU, Linear, BatchNorm1d`` (state_dict keys ``0``, ``1``, ``3``, ``4``).
    """
    return nn.Sequential(
        nn.Linear(in_dims, hidden_dims),
        nn.BatchNorm1d(hidden_dims),
        nn.ReLU(inplace=True),
        nn.Linear(hidden_dims, out_dims),
        nn.BatchNorm1d(out_dims),
    )


class ContrastiveEncoder(nn.Module):
    """Encoder for contrastive learning of (B, C, Z, Y, X) cell patches; returns ``(embedding, projection)``.

    A 3D stem folds Z into channels, a timm classification backbone (without its classifier) pools the
    features into the embedding, and an MLP projects it for the contrastive loss.

    Parameters
    ----------
    backbone : str
        timm model: a ConvNeXt (``convnext_tiny``, ``convnextv2_tiny``) or a ResNet (``resnet50``).
    in_channels : int
        Input channels.
    in_stack_depth : int
        Input Z size.
    stem_kernel_size, stem_stride : tuple of int
        (Z, Y, X) kernel and stride of the stem; the stem's output depth must divide the backbone's stem
        width (96 for ConvNeXt-tiny, 64 for ResNet-50).
    embedding_dim : int
        Hidden width of the projection MLP. As in the reference, it does *not* set the embedding width,
        which is the backbone's feature width (``self.embedding_dim``: 768 for ConvNeXt-tiny, 2048 for
        ResNet-50).
    projection_dim : int
        Width of the projection.
    drop_path_rate : float
        Stochastic depth of the backbone.
    pretrained : bool
        Load timm's ImageNet weights (needs network access).
    """

    def __init__(
        self,
        backbone: str,
        in_channels: int,
        in_stack_depth: int,
        stem_kernel_size: tuple[int, int, int] = (5, 4, 4),
        stem_stride: tuple[int, int, int] = (5, 4, 4),
        embedding_dim: int = 768,
        projection_dim: int = 128,
        drop_path_rate: float = 0.0,
        pretrained: bool = False,
    ) -> None:
        super().__init__()
        model = "ContrastiveEncoder"
        check_positive_ints(
            model,
            in_channels=in_channels,
            in_stack_depth=in_stack_depth,
            embedding_dim=embedding_dim,
            projection_dim=projection_dim,
        )
        if "convnext" not in backbone and "resnet" not in backbone:
            raise ValueError(
                f"ContrastiveEncoder supports timm ConvNeXt and ResNet backbones, got backbone={backbone!r}."
            )
        encoder = create_timm_backbone(backbone, pretrained=pretrained, num_classes=0, drop_path_rate=drop_path_rate)
        first_conv = encoder.stem[0] if "convnext" in backbone else encoder.conv1
        if not isinstance(first_conv, nn.Conv2d):
            raise ValueError(
                f"ContrastiveEncoder replaces the backbone's first convolution with its 3D stem; backbone={backbone!r} "
                "starts with a multi-layer stem instead (for example a ResNet-D): use a plain timm ConvNeXt or ResNet."
            )
        if "convnext" in backbone:
            in_channels_encoder = encoder.stem[0].out_channels
            # The 2D patchify convolution is replaced by the 3D stem; its layer norm stays.
            encoder.stem[0] = nn.Identity()
            # ConvNeXt: the stem's stride, then three stride-2 stages.
            self.total_stride = stem_stride[1] * 8
        else:
            in_channels_encoder = encoder.conv1.out_channels
            encoder.conv1 = nn.Identity()
            # ResNet: the stem's stride, the max-pool and three stride-2 stages.
            self.total_stride = stem_stride[1] * 16
        self.stem = StemDepthtoChannels(in_channels, in_stack_depth, in_channels_encoder, stem_kernel_size, stem_stride)
        self.encoder = encoder
        self.embedding_dim = encoder.num_features
        self.projection = projection_mlp(encoder.num_features, embedding_dim, projection_dim)
        self.in_stack_depth = in_stack_depth

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the pooled embedding ``(B, num_features)`` and the projection ``(B, projection_dim)``."""
        check_encoder_input(x, self.in_stack_depth, self.total_stride, "ContrastiveEncoder")
        embedding = self.encoder(self.stem(x))
        return embedding, self.projection(embedding)

    def forward_views(self, views: Sequence[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Embed several batches (e.g. anchors and positives) exactly as one :meth:`forward` per batch would.

        When every sample's embedding depends on that sample alone (ConvNeXt's layer norms; a ResNet's batch
        norms only in eval mode), the stem and backbone run once on the concatenated batches: fewer, larger
        kernels, about 20 % faster on CPU for small patches. The projection head always runs per batch, so that
        its batch norms see each batch's own statistics, as separate calls give.

        Parameters
        ----------
        views : sequence of torch.Tensor
            ``(B_i, C, Z, Y, X)`` batches.

        Returns
        -------
        list of tuple of torch.Tensor
            ``(embedding, projection)`` per batch, in order.
        """
        views = list(views)
        if len(views) < 2 or len({v.shape[1:] for v in views}) > 1 or _uses_batch_statistics(self.encoder):
            return [self(view) for view in views]
        for view in views:
            check_encoder_input(view, self.in_stack_depth, self.total_stride, "ContrastiveEncoder")
        embeddings = self.encoder(self.stem(torch.cat(views))).split([v.shape[0] for v in views])
        return [(embedding, self.projection(embedding)) for embedding in embeddings]


def _uses_batch_statistics(module: nn.Module) -> bool:
    """Whether a sample's output depends on the other samples of its batch (batch norm on batch statistics)."""
    return any(
        isinstance(m, nn.modules.batchnorm._BatchNorm) and (m.training or m.running_mean is None)
        for m in module.modules()
    )


def check_encoder_input(x: torch.Tensor, in_stack_depth: int | None, total_stride: int, model: str) -> None:
    """Raise a ValueError naming the expected shape unless ``x`` is a valid (B, C, Z, Y, X) encoder input.

    Parameters
    ----------
    x : torch.Tensor
        Input batch.
    in_stack_depth : int or None
        Required Z size, or None for any.
    total_stride : int
        Total down-sampling; Y and X must be at least this large.
    model : str
        Model name for the message.
    """
    if x.ndim != 5:
        raise ValueError(f"{model} expects (B, C, Z, Y, X) input, got shape {tuple(x.shape)}.")
    if in_stack_depth is not None and x.shape[2] != in_stack_depth:
        raise ValueError(f"{model} expects Z = in_stack_depth = {in_stack_depth}, got shape {tuple(x.shape)}.")
    if min(x.shape[-2:]) < total_stride:
        raise ValueError(
            f"{model} down-samples Y and X by {total_stride}: they must be at least {total_stride}, "
            f"got shape {tuple(x.shape)}."
        )
