"""Lightning engines of DynaCLR: contrastive training/prediction and the beta-VAE.

``ContrastiveModule`` trains an encoder returning ``(features, projections)`` on triplet batches
(``anchor``, ``positive`` and, for margin losses, ``negative``) produced by the DynaCLR data
modules; ``BetaVaeModule`` trains a variational auto-encoder on ``anchor`` patches.
Parameters of the wrapped network live under the ``model.`` prefix of the state dict so that
checkpoints of the reference implementation load unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Literal, TypedDict

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from pytorch_metric_learning.losses import NTXentLoss
from torch import Tensor, nn

from dynaclr.beta_vae import BetaVaeModule
from dynaclr.image_logging import image_experiments
from dynaclr.optim import build_optimizer, check_schedule

__all__ = ["BetaVaeModule", "ContrastiveModule", "ContrastivePrediction"]

_logger = logging.getLogger("lightning.pytorch")


class ContrastivePrediction(TypedDict):
    """Output of :meth:`ContrastiveModule.predict_step`.

    Attributes
    ----------
    features : Tensor
        Backbone embeddings, shape (B, F).
    projections : Tensor
        Projection-head outputs, shape (B, P).
    index : dict or list
        Tracking index of the samples (``fov_name``, ``id`` and usually every INDEX_COLUMN),
        passed through unchanged from the batch.
    """

    features: Tensor
    projections: Tensor
    index: dict | list


def ntxent_negative_metrics(anchor: Tensor, positive: Tensor) -> dict[str, Tensor]:
    """Similarity statistics of in-batch negatives as seen by an NT-Xent loss.

    Each anchor is compared with the ``2B`` embeddings ``concat(anchor, positive)`` except itself
    and its own positive, i.e. ``2B - 2`` negatives.

    Parameters
    ----------
    anchor, positive : Tensor
        Projections, shape (B, P), B >= 2.

    Returns
    -------
    dict[str, Tensor]
        Scalar tensors keyed by metric name without the stage suffix.
    """
    batch = anchor.shape[0]
    embeddings = torch.cat([anchor, positive])
    rows = torch.arange(batch, device=anchor.device)
    keep = torch.ones(batch, 2 * batch, dtype=torch.bool, device=anchor.device)
    keep[rows, rows] = False
    keep[rows, rows + batch] = False
    n_neg = 2 * batch - 2

    cos = F.normalize(anchor, dim=1) @ F.normalize(embeddings, dim=1).T
    cos_neg = cos[keep].view(batch, n_neg)
    cos_pos = F.cosine_similarity(anchor, positive, dim=1)
    dist = torch.cdist(anchor, embeddings)
    dist_neg = dist[keep].view(batch, n_neg)
    dist_pos = torch.linalg.vector_norm(anchor - positive, dim=1)
    return {
        "metrics/cosine_similarity/negative_mean": cos_neg.mean(),
        "metrics/cosine_similarity/negative_sum": cos_neg.sum(dim=1).mean(),
        "metrics/margin_positive/negative": cos_pos.mean() - cos_neg.mean(),
        "metrics/euclidean_distance/negative_mean": dist_neg.mean(),
        "metrics/euclidean_distance/negative_sum": dist_neg.sum(dim=1).mean(),
        "metrics/margin_euclidean_positive/negative": dist_neg.mean() - dist_pos.mean(),
    }


class ContrastiveModule(LightningModule):
    """Contrastive learning of cell embeddings from triplets of patches.

    Parameters
    ----------
    encoder : nn.Module
        Network mapping (B, C, Z, Y, X) to ``(features, projections)``, e.g.
        ``viscy_models.contrastive.ContrastiveEncoder``. Stored as ``model``.
    loss_function : nn.Module or None
        ``pytorch_metric_learning.losses.NTXentLoss`` (or a subclass such as
        ``dynaclr.loss.NTXentHCL``) uses in-batch negatives; any other loss is called as
        ``loss(anchor, positive, negative)``. None builds a fresh ``nn.TripletMarginLoss(margin=0.5)``.
    lr : float
        AdamW learning rate.
    schedule : {"Constant", "WarmupCosine"}
        Learning-rate schedule: constant, or linear warm-up over the first 10 % of the training
        steps followed by cosine decay to zero (stepped every optimisation step).
    log_batches_per_epoch : int
        Number of first batches per epoch contributing image samples to the TensorBoard grids.
    log_samples_per_batch : int
        Samples taken from each of those batches.
    log_embeddings : bool
        Log a 2-D UMAP of the validation features to TensorBoard at every validation epoch end
        (needs ``umap-learn``, extra ``dynaclr[eval]``).
    log_negative_metrics_every_n_epochs : int
        Cadence of the NT-Xent negative-pair metrics.
    example_input_array_shape : Sequence[int]
        Shape of the random ``example_input_array`` (TensorBoard graph, ONNX export).
    ckpt_path : str or None
        Lightning checkpoint whose ``state_dict`` is loaded (strictly) at construction.
    """

    def __init__(
        self,
        encoder: nn.Module,
        loss_function: nn.Module | None = None,
        lr: float = 1e-3,
        schedule: Literal["WarmupCosine", "Constant"] = "Constant",
        log_batches_per_epoch: int = 8,
        log_samples_per_batch: int = 1,
        log_embeddings: bool = False,
        log_negative_metrics_every_n_epochs: int = 2,
        example_input_array_shape: Sequence[int] = (1, 2, 15, 256, 256),
        ckpt_path: str | None = None,
    ) -> None:
        super().__init__()
        self.model = encoder
        self.loss_function = nn.TripletMarginLoss(margin=0.5) if loss_function is None else loss_function
        self.lr = lr
        self.schedule = check_schedule(schedule, "schedule")
        self.log_batches_per_epoch = log_batches_per_epoch
        self.log_samples_per_batch = log_samples_per_batch
        self.log_embeddings = log_embeddings
        if log_negative_metrics_every_n_epochs < 1:
            raise ValueError(
                f"log_negative_metrics_every_n_epochs must be >= 1, got {log_negative_metrics_every_n_epochs}."
            )
        self.log_negative_metrics_every_n_epochs = log_negative_metrics_every_n_epochs
        self.example_input_array_shape = tuple(example_input_array_shape)
        self.example_input_array = torch.rand(*self.example_input_array_shape)
        self.training_step_outputs: list = []
        self.validation_step_outputs: list = []
        self._val_features: list[Tensor] = []
        if ckpt_path is not None:
            state = torch.load(ckpt_path, map_location="cpu", weights_only=True)["state_dict"]
            self.load_state_dict(state)

    @property
    def uses_ntxent(self) -> bool:
        """Whether the loss is an NT-Xent loss (in-batch negatives, no ``negative`` read)."""
        return isinstance(self.loss_function, NTXentLoss)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(features, projections)`` of a (B, C, Z, Y, X) batch."""
        return self.model(x)

    def embed_views(self, views: list[Tensor]) -> list[tuple[Tensor, Tensor]]:
        """Return ``(features, projections)`` of each view of a triplet (anchor, positive[, negative]).

        An encoder with a ``forward_views`` method (e.g. ``viscy_models.contrastive.ContrastiveEncoder``)
        embeds the views together, with the same result as one forward pass per view but fewer, larger kernels;
        any other encoder is called once per view.

        Parameters
        ----------
        views : list of Tensor
            ``(B_i, C, Z, Y, X)`` batches.

        Returns
        -------
        list of tuple of Tensor
            ``(features, projections)`` per view, in order.
        """
        forward_views = getattr(self.model, "forward_views", None)
        if forward_views is None:
            return [self(view) for view in views]
        return list(forward_views(views))

    def ntxent_loss(self, first: Tensor, second: Tensor) -> Tensor:
        """NT-Xent loss where row ``i`` of ``first`` and of ``second`` form the positive pair."""
        labels = torch.arange(first.shape[0], device=first.device)
        return self.loss_function(torch.cat([first, second]), torch.cat([labels, labels]))

    # ------------------------------------------------------------------ steps
    def _shared_step(self, batch: dict, batch_idx: int, stage: str) -> Tensor:
        images = [batch["anchor"], batch["positive"]]
        if not self.uses_ntxent:
            if "negative" not in batch:
                raise KeyError(
                    f"{type(self.loss_function).__name__} needs batch['negative']; the batch has keys "
                    f"{sorted(batch)}. Use an NTXentLoss for in-batch negatives."
                )
            images.append(batch["negative"])
        (anchor_feat, anchor_proj), (_, positive_proj), *negative = self.embed_views(images)
        negative_proj = None
        if self.uses_ntxent:
            loss = self.ntxent_loss(anchor_proj, positive_proj)
        else:
            negative_proj = negative[0][1]
            loss = self.loss_function(anchor_proj, positive_proj, negative_proj)
        self._log_step(loss, anchor_proj, positive_proj, negative_proj, stage)
        self._collect_samples(images, batch_idx, stage)
        if stage == "val" and self._logs_embeddings():
            self._val_features.append(anchor_feat.detach().cpu())
        # debug-level diagnostics (no-ops unless the Lightning logger is at DEBUG, e.g. VISCY_LOG_LEVEL=DEBUG)
        self.log_feature_statistics(anchor_feat, f"{stage} anchor features")
        self.print_embedding_norms(anchor_proj, positive_proj, negative_proj, stage)
        return loss

    def _logs_embeddings(self) -> bool:
        """Whether validation features are collected for the UMAP of this epoch."""
        return self.log_embeddings and not (self._trainer is not None and self.trainer.sanity_checking)

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        """Compute and log the training loss of a triplet batch."""
        return self._shared_step(batch, batch_idx, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> Tensor:
        """Compute and log the validation loss of a triplet batch."""
        return self._shared_step(batch, batch_idx, "val")

    def predict_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> ContrastivePrediction:
        """Embed ``batch['anchor']`` and pass ``batch['index']`` through."""
        features, projections = self(batch["anchor"])
        return {"features": features, "projections": projections, "index": batch["index"]}

    def configure_optimizers(self):
        """AdamW with the configured ``schedule``."""
        return build_optimizer(self, self.lr, self.schedule)

    # ------------------------------------------------------------------ logging
    def _log_step(self, loss: Tensor, anchor: Tensor, positive: Tensor, negative: Tensor | None, stage: str) -> None:
        batch_size = anchor.shape[0]
        self.log(
            f"loss/{stage}",
            loss,
            on_step=stage == "train",
            on_epoch=True,
            prog_bar=True,
            sync_dist=True,
            batch_size=batch_size,
        )
        anchor, positive = anchor.detach(), positive.detach()
        metrics = {
            f"metrics/cosine_similarity/positive/{stage}": F.cosine_similarity(anchor, positive, dim=1).mean(),
            f"metrics/euclidean_distance/positive/{stage}": torch.linalg.vector_norm(anchor - positive, dim=1).mean(),
        }
        if negative is not None:
            negative = negative.detach()
            metrics[f"metrics/cosine_similarity_negative/{stage}"] = F.cosine_similarity(anchor, negative, dim=1).mean()
            metrics[f"metrics/euclidean_distance_negative/{stage}"] = torch.linalg.vector_norm(
                anchor - negative, dim=1
            ).mean()
        elif (
            self.uses_ntxent
            and anchor.shape[0] > 1
            and self.current_epoch % self.log_negative_metrics_every_n_epochs == 0
        ):
            metrics.update({f"{k}/{stage}": v for k, v in ntxent_negative_metrics(anchor, positive).items()})
        self.log_dict(metrics, on_step=False, on_epoch=True, sync_dist=True, batch_size=batch_size)

    def _sample_buffer(self, stage: str) -> list:
        return self.training_step_outputs if stage == "train" else self.validation_step_outputs

    def _collect_samples(self, images: list[Tensor], batch_idx: int, stage: str) -> None:
        if batch_idx >= self.log_batches_per_epoch or self.log_samples_per_batch < 1:
            return
        if not image_experiments(self):
            return
        from viscy_utils.log_images import detach_sample

        self._sample_buffer(stage).extend(detach_sample(images, self.log_samples_per_batch))

    def _log_samples(self, key: str, samples: list) -> None:
        experiments = image_experiments(self)
        if not samples or not experiments:
            return
        from viscy_utils.log_images import render_images

        grid = render_images(samples, cmaps=["gray"] * 3)
        for experiment in experiments:
            experiment.add_image(key, grid, self.current_epoch, dataformats="HWC")

    def on_train_epoch_end(self) -> None:
        """Draw the training sample grid and clear the buffer."""
        self._log_samples("train_samples", self.training_step_outputs)
        self.training_step_outputs = []

    def on_validation_epoch_end(self) -> None:
        """Draw the validation sample grid (and UMAP when enabled) and clear the buffers."""
        self._log_samples("val_samples", self.validation_step_outputs)
        self.validation_step_outputs = []
        if self._val_features and self._logs_embeddings():
            self.log_embedding_umap(torch.cat(self._val_features), "val_features")
        self._val_features = []

    def log_embedding_umap(self, embeddings: Tensor, tag: str) -> None:
        """Log a 2-D UMAP of ``embeddings`` (N, F) as a TensorBoard embedding ``<tag>_umap``."""
        experiments = image_experiments(self)
        if not experiments or embeddings.shape[0] < 4:
            return
        try:
            import umap
        except ImportError as err:
            raise ImportError('log_embeddings needs umap-learn: pip install "dynaclr[eval]"') from err
        n_neighbors = min(15, embeddings.shape[0] - 1)
        coords = umap.UMAP(n_components=2, n_neighbors=n_neighbors, random_state=42).fit_transform(
            embeddings.float().numpy()
        )
        for experiment in experiments:
            experiment.add_embedding(torch.as_tensor(coords), tag=f"{tag}_umap", global_step=self.current_epoch)

    def log_feature_statistics(self, embeddings: Tensor, prefix: str) -> None:
        """Log (at DEBUG) mean, std and norm statistics of ``embeddings`` (N, F)."""
        if not _logger.isEnabledFor(logging.DEBUG):
            return
        emb = embeddings.detach().float()
        _logger.debug(
            "%s: mean %.4f std %.4f norm mean %.4f (min %.4f, max %.4f)",
            prefix,
            emb.mean().item(),
            emb.std().item(),
            torch.linalg.vector_norm(emb, dim=1).mean().item(),
            torch.linalg.vector_norm(emb, dim=1).min().item(),
            torch.linalg.vector_norm(emb, dim=1).max().item(),
        )

    def print_embedding_norms(self, anchor: Tensor, positive: Tensor, negative: Tensor | None, phase: str) -> None:
        """Log (at DEBUG) the mean L2 norm of anchor, positive and negative embeddings."""
        if not _logger.isEnabledFor(logging.DEBUG):
            return
        norms = {
            name: torch.linalg.vector_norm(t.detach().float(), dim=1).mean().item()
            for name, t in (("anchor", anchor), ("positive", positive), ("negative", negative))
            if t is not None
        }
        _logger.debug("%s embedding norms: %s", phase, norms)
