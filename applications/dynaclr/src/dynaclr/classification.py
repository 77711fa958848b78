"""Binary classification fine-tuning of a contrastive encoder's backbone, and its CSV writer."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.callbacks import BasePredictionWriter
from torch import Tensor, nn
from torchmetrics.functional.classification import binary_accuracy, binary_f1_score

from dynaclr.image_logging import image_experiments

__all__ = ["ClassificationModule", "ClassificationPredictionWriter"]


def _replace_classifier(backbone: nn.Module) -> None:
    """Replace the backbone's final classifier (``head.fc`` or ``fc``) by a 1-logit linear layer.

    The input width is read from the backbone (timm's ``num_features``, or the existing linear
    layer) instead of the reference's hard-coded 768, so any timm backbone works.
    """
    owner = backbone.head if hasattr(getattr(backbone, "head", None), "fc") else backbone
    if not hasattr(owner, "fc"):
        raise TypeError(
            f"{type(backbone).__name__} has neither 'head.fc' nor 'fc'; cannot attach a classification layer."
        )
    width = getattr(backbone, "num_features", None)
    if not isinstance(width, int):
        if not isinstance(owner.fc, nn.Linear):
            raise TypeError(
                f"Cannot infer the feature width of {type(backbone).__name__}: no 'num_features' and its fc "
                f"is {type(owner.fc).__name__}."
            )
        width = owner.fc.in_features
    owner.fc = nn.Linear(width, 1)


class ClassificationModule(LightningModule):
    """Binary classifier built on a contrastive encoder's stem and backbone.

    Parameters
    ----------
    encoder : nn.Module
        A ``viscy_models.contrastive.ContrastiveEncoder`` (anything with ``stem`` and ``encoder``
        attributes); its stem is kept as ``stem`` and its backbone as ``backbone`` with the final
        classifier replaced by a one-logit linear layer.
    lr : float or None
        AdamW learning rate (None: AdamW's default 1e-3).
    loss : nn.Module or None
        Loss on (logits, float targets); None builds ``BCEWithLogitsLoss(pos_weight=1.0)``.
    example_input_array_shape : Sequence[int]
        Shape of the random ``example_input_array``.
    """

    def __init__(
        self,
        encoder: nn.Module,
        lr: float | None,
        loss: nn.Module | None = None,
        example_input_array_shape: Sequence[int] = (2, 1, 15, 160, 160),
    ) -> None:
        super().__init__()
        self.stem = encoder.stem
        self.backbone = encoder.encoder
        _replace_classifier(self.backbone)
        self.loss = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(1.0)) if loss is None else loss
        self.lr = lr
        self.example_input_array = torch.rand(*example_input_array_shape)
        self._example_images: dict[str, list[np.ndarray]] = {"train": [], "val": []}

    def forward(self, x: Tensor) -> Tensor:
        """Return logits (B, 1)."""
        return self.backbone(self.stem(x))

    def _fit_step(self, batch, batch_idx: int, stage: str) -> Tensor:
        x, y = batch
        logits = self(x)
        target = y.to(logits.dtype).view_as(logits)
        loss = self.loss(logits, target)
        self.log(f"loss/{stage}", loss, on_step=stage == "train", on_epoch=True, sync_dist=True)
        probs = torch.sigmoid(logits.detach()).flatten()
        labels = target.detach().flatten().round().long()
        self.log_dict(
            {
                f"metric/accuracy/{stage}": binary_accuracy(probs, labels),
                f"metric/f1_score/{stage}": binary_f1_score(probs, labels),
            },
            on_step=False,
            on_epoch=True,
            sync_dist=True,
        )
        if batch_idx < 4 and image_experiments(self):
            self._example_images[stage].append(x[0, 0, x.shape[2] // 2].detach().float().cpu().numpy())
        return loss

    def training_step(self, batch, batch_idx: int) -> Tensor:
        """Return the loss of an ``(x, y)`` batch."""
        return self._fit_step(batch, batch_idx, "train")

    def validation_step(self, batch, batch_idx: int) -> Tensor:
        """Return the validation loss of an ``(x, y)`` batch."""
        return self._fit_step(batch, batch_idx, "val")

    def predict_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> dict:
        """Return the ``indices`` dict of an ``(x, y, indices)`` batch with ``label`` and ``prediction``."""
        x, y, indices = batch
        return {**indices, "label": y, "prediction": torch.sigmoid(self(x))}

    def _log_examples(self, stage: str) -> None:
        images, self._example_images[stage] = self._example_images[stage], []
        if not images:
            return
        grid = np.concatenate([(im - im.min()) / max(float(np.ptp(im)), 1e-12) for im in images], axis=1)
        for experiment in image_experiments(self):
            experiment.add_image(f"{stage}/examples", grid[None], self.current_epoch, dataformats="CHW")

    def on_train_epoch_end(self) -> None:
        """Draw the training examples."""
        self._log_examples("train")

    def on_validation_epoch_end(self) -> None:
        """Draw the validation examples."""
        self._log_examples("val")

    def configure_optimizers(self):
        """AdamW at ``lr``."""
        return torch.optim.AdamW(self.parameters(), lr=1e-3 if self.lr is None else self.lr)


def _to_column(value) -> np.ndarray | list:
    if isinstance(value, Tensor):
        return value.detach().cpu().numpy().reshape(-1)
    return value


class ClassificationPredictionWriter(BasePredictionWriter):
    """Write :class:`ClassificationModule` predictions to one CSV at the end of prediction.

    Parameters
    ----------
    output_path : str or Path
        CSV file to create; it must not exist yet.
    """

    def __init__(self, output_path: str | os.PathLike) -> None:
        super().__init__(write_interval="epoch")
        self.output_path = Path(output_path)
        if self.output_path.exists():
            raise FileExistsError(f"Output path {self.output_path} already exists.")

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices) -> None:
        """Concatenate the per-batch prediction dicts and write the CSV (no index)."""
        frames = [pd.DataFrame({k: _to_column(v) for k, v in batch.items()}) for batch in predictions]
        table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        self.output_path.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(self.output_path, index=False)
