"""Cross-modal contrastive learning: one encoder per channel, aligned with NT-Xent.

Channel 0 of every patch is the *source* modality and channel 1 the *target* modality. The two
encoders learn to map the same cell's source and target views close together.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from pytorch_metric_learning.losses import NTXentLoss
from torch import Tensor, nn

from dynaclr.engine import ContrastiveModule, ContrastivePrediction

__all__ = ["JointContrastiveModule", "JointEncoders", "MultiModalContrastiveModule"]

_ARMS = {"source": slice(0, 1), "target": slice(1, 2)}


class JointEncoders(nn.Module):
    """Pair of encoders, each returning ``(features, projections)``.

    Parameters
    ----------
    source_encoder, target_encoder : nn.Module
        Encoders of the source (channel 0) and target (channel 1) modality.
    """

    def __init__(self, source_encoder: nn.Module, target_encoder: nn.Module) -> None:
        super().__init__()
        self.source_encoder = source_encoder
        self.target_encoder = target_encoder

    def forward(self, source: Tensor, target: Tensor) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
        """Return ``(source_encoder(source), target_encoder(target))``."""
        return self.source_encoder(source), self.target_encoder(target)

    def forward_features(self, source: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """Return the backbone features of both modalities."""
        (source_features, _), (target_features, _) = self(source, target)
        return source_features, target_features

    def forward_projections(self, source: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """Return the projections of both modalities."""
        (_, source_projections), (_, target_projections) = self(source, target)
        return source_projections, target_projections


class JointContrastiveModule(ContrastiveModule):
    """Contrastive alignment of two modalities with an NT-Xent loss.

    Parameters
    ----------
    encoder : JointEncoders
        The source/target encoder pair (stored as ``model``).
    loss_function : NTXentLoss or None
        ``pytorch_metric_learning.losses.NTXentLoss`` or a subclass (e.g. ``dynaclr.loss.NTXentHCL``);
        None builds ``NTXentLoss()``. The reference defaulted to ``TripletMarginLoss``, which cannot
        be called on (embeddings, labels); other losses are rejected here with a ``TypeError``.
    lr : float
        AdamW learning rate.
    schedule : {"Constant", "WarmupCosine"}
        Learning-rate schedule.
    log_batches_per_epoch, log_samples_per_batch : int
        Image-sample logging (see :class:`~dynaclr.engine.ContrastiveModule`).
    log_embeddings : bool
        Log a UMAP of validation source features.
    embedding_log_frequency : int
        With ``log_embeddings``, draw the UMAP every this many epochs (epochs 0, n, 2n, ...).
    example_input_array_shape : Sequence[int]
        Shape of each of the two identical example inputs (one channel per modality).
    prediction_arm : {"source", "target"}
        Encoder used for prediction: ``source`` on channel 0 or ``target`` on channel 1.
    """

    def __init__(
        self,
        encoder: JointEncoders,
        loss_function: nn.Module | None = None,
        lr: float = 1e-3,
        schedule: Literal["WarmupCosine", "Constant"] = "Constant",
        log_batches_per_epoch: int = 8,
        log_samples_per_batch: int = 1,
        log_embeddings: bool = False,
        embedding_log_frequency: int = 10,
        example_input_array_shape: Sequence[int] = (1, 2, 15, 256, 256),
        prediction_arm: Literal["source", "target"] = "source",
    ) -> None:
        loss_function = NTXentLoss() if loss_function is None else loss_function
        if not isinstance(loss_function, NTXentLoss):
            raise TypeError(
                f"JointContrastiveModule needs an NTXentLoss (or subclass such as NTXentHCL), got "
                f"{type(loss_function).__name__}."
            )
        super().__init__(
            encoder=encoder,
            loss_function=loss_function,
            lr=lr,
            schedule=schedule,
            log_batches_per_epoch=log_batches_per_epoch,
            log_samples_per_batch=log_samples_per_batch,
            log_embeddings=log_embeddings,
            example_input_array_shape=example_input_array_shape,
        )
        if embedding_log_frequency < 1:
            raise ValueError(f"embedding_log_frequency must be >= 1, got {embedding_log_frequency}.")
        self.embedding_log_frequency = embedding_log_frequency
        self.prediction_arm = prediction_arm
        example = torch.rand(*self.example_input_array_shape)
        self.example_input_array = (example, example.clone())
        self._predict_encoder: nn.Module | None = None
        self._predict_channels: slice | None = None

    def forward(self, source: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """Return the projections ``(source_projections, target_projections)``."""
        return self.model.forward_projections(source, target)

    def _shared_step(self, batch: dict, batch_idx: int, stage: str) -> Tensor:
        anchor_img, positive_img = batch["anchor"], batch["positive"]
        src, tgt = _ARMS["source"], _ARMS["target"]
        (anchor_src_feat, anchor_src_proj), (_, anchor_tgt_proj) = self.model(anchor_img[:, src], anchor_img[:, tgt])
        (_, positive_src_proj), (_, positive_tgt_proj) = self.model(positive_img[:, src], positive_img[:, tgt])
        loss = self.ntxent_loss(anchor_src_proj, anchor_tgt_proj) + self.ntxent_loss(
            positive_tgt_proj, positive_src_proj
        )
        self._log_step(loss, anchor_src_proj, anchor_tgt_proj, None, stage)
        self._collect_samples([anchor_img, positive_img], batch_idx, stage)
        if stage == "val" and self._logs_embeddings():
            self._val_features.append(anchor_src_feat.detach().cpu())
        return loss

    def _logs_embeddings(self) -> bool:
        """UMAP of the validation features only every ``embedding_log_frequency`` epochs."""
        return super()._logs_embeddings() and self.current_epoch % self.embedding_log_frequency == 0

    def on_predict_start(self) -> None:
        """Select the prediction encoder and its channel."""
        if self.prediction_arm not in _ARMS:
            raise ValueError("Invalid prediction arm.")
        self._predict_encoder = getattr(self.model, f"{self.prediction_arm}_encoder")
        self._predict_channels = _ARMS[self.prediction_arm]

    def predict_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> ContrastivePrediction:
        """Embed one channel of ``batch['anchor']`` with the selected arm's encoder."""
        if self._predict_encoder is None:
            self.on_predict_start()
        features, projections = self._predict_encoder(batch["anchor"][:, self._predict_channels])
        return {"features": features, "projections": projections, "index": batch["index"]}


MultiModalContrastiveModule = JointContrastiveModule
"""Alias of :class:`JointContrastiveModule` (the name used by the planning documents)."""
