"""Lightning engines of DynaCLR: contrastive training/prediction and the beta-VAE.

``ContrastiveModule`` trains an encoder returning ``(features, projections)`` on triplet batches
(``anchor``, ``positive`` and, for margin losses, ``negative``) produced by the DynaCLR data
modules; ``BetaVaeModule`` trains a variational auto-encoder on ``anchor`` patches.
Parameters of the wrapped network live under the ``model.`` prefix of the state dict so that
checkpoints of the reference implementation load unchanged.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Literal, TypedDict

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from pytorch_metric_learning.losses import NTXentLoss
from torch import Tensor, nn

from dynaclr.vae_logging import BetaVaeLogger

__all__ = ["BetaVaeModule", "ContrastiveModule", "ContrastivePrediction"]

_logger = logging.getLogger("lightning.pytorch")

_SCHEDULES = ("WarmupCosine", "Constant")
# Fraction of the optimisation steps spent in linear warm-up by the "WarmupCosine" schedule.
_WARMUP_FRACTION = 0.1


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


def _tensorboard_experiments(module: LightningModule) -> list:
    """Return the experiments of the attached loggers that can draw images (TensorBoard-like).

    Image and embedding logging is optional: with a CSV/W&B logger or ``logger=False`` nothing is
    drawn instead of crashing (reference defect W14).
    """
    if module._trainer is None:
        return []
    return [lg.experiment for lg in module.loggers if hasattr(lg.experiment, "add_image")]


def _build_optimizer(module: LightningModule, lr: float | None, schedule: str):
    """AdamW over all parameters, optionally with per-step linear warm-up then cosine decay."""
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-3 if lr is None else lr)
    if schedule == "Constant":
        return optimizer
    total = module.trainer.estimated_stepping_batches
    if not math.isfinite(total) or total < 1:
        _logger.warning("WarmupCosine needs a finite number of training steps; using a constant learning rate.")
        return optimizer
    total = int(total)
    warmup = max(1, int(total * _WARMUP_FRACTION))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def _check_schedule(value: str, argument: str) -> str:
    if value not in _SCHEDULES:
        raise ValueError(f"{argument} must be one of {_SCHEDULES}, got {value!r}.")
    return value


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
        self.schedule = _check_schedule(schedule, "schedule")
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

    def ntxent_loss(self, first: Tensor, second: Tensor) -> Tensor:
        """NT-Xent loss where row ``i`` of ``first`` and of ``second`` form the positive pair."""
        labels = torch.arange(first.shape[0], device=first.device)
        return self.loss_function(torch.cat([first, second]), torch.cat([labels, labels]))

    # ------------------------------------------------------------------ steps
    def _shared_step(self, batch: dict, batch_idx: int, stage: str) -> Tensor:
        anchor_img, positive_img = batch["anchor"], batch["positive"]
        anchor_feat, anchor_proj = self(anchor_img)
        _, positive_proj = self(positive_img)
        images = [anchor_img, positive_img]
        negative_proj = None
        if self.uses_ntxent:
            loss = self.ntxent_loss(anchor_proj, positive_proj)
        else:
            if "negative" not in batch:
                raise KeyError(
                    f"{type(self.loss_function).__name__} needs batch['negative']; the batch has keys "
                    f"{sorted(batch)}. Use an NTXentLoss for in-batch negatives."
                )
            negative_img = batch["negative"]
            _, negative_proj = self(negative_img)
            images.append(negative_img)
            loss = self.loss_function(anchor_proj, positive_proj, negative_proj)
        self._log_step(loss, anchor_proj, positive_proj, negative_proj, stage)
        self._collect_samples(images, batch_idx, stage)
        if stage == "val" and self.log_embeddings:
            self._val_features.append(anchor_feat.detach().cpu())
        return loss

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
        return _build_optimizer(self, self.lr, self.schedule)

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
        if not _tensorboard_experiments(self):
            return
        from viscy_utils.log_images import detach_sample

        self._sample_buffer(stage).extend(detach_sample(images, self.log_samples_per_batch))

    def _log_samples(self, key: str, samples: list) -> None:
        experiments = _tensorboard_experiments(self)
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
        if self.log_embeddings and self._val_features and not self.trainer.sanity_checking:
            self.log_embedding_umap(torch.cat(self._val_features), "val_features")
        self._val_features = []

    def log_embedding_umap(self, embeddings: Tensor, tag: str) -> None:
        """Log a 2-D UMAP of ``embeddings`` (N, F) as a TensorBoard embedding ``<tag>_umap``."""
        experiments = _tensorboard_experiments(self)
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


# ====================================================================== beta-VAE
_BETA_SCHEDULES = ("linear", "cosine", "warmup")


class BetaVaeModule(LightningModule):
    """Beta-VAE training on ``anchor`` patches with optional beta annealing.

    Parameters
    ----------
    vae : nn.Module
        Network returning an object with attributes ``recon_x``, ``mean``, ``logvar`` and ``z``
        (``viscy_models.vae.BetaVae25D`` / ``BetaVaeMonai``). Stored as ``model``.
    loss_function : nn.Module or None
        Reconstruction loss; None builds ``nn.MSELoss(reduction="sum")``. ``MSELoss`` is rescaled to
        a per-sample sum (``sum`` divided by batch size, ``mean`` multiplied by elements per sample).
    beta : float
        Final KL weight.
    beta_schedule : {"linear", "cosine", "warmup"} or None
        Annealing from ``beta_min`` to ``beta`` over ``beta_warmup_epochs`` epochs; None keeps ``beta``.
    beta_min : float
        Starting KL weight of the schedules.
    beta_warmup_epochs : int
        Length of the annealing.
    lr : float
        AdamW learning rate.
    lr_schedule : {"Constant", "WarmupCosine"}
        Learning-rate schedule (see :class:`ContrastiveModule`).
    log_batches_per_epoch, log_samples_per_batch : int
        Kept for configuration compatibility; reconstructions of the first batch are drawn.
    example_input_array_shape : Sequence[int]
        Shape of the random ``example_input_array``.
    log_enhanced_visualizations : bool
        Draw latent traversals/interpolations at validation epoch end.
    log_enhanced_visualizations_frequency : int
        Epoch cadence of those visualisations.
    """

    def __init__(
        self,
        vae: nn.Module,
        loss_function: nn.Module | None = None,
        beta: float = 1.0,
        beta_schedule: Literal["linear", "cosine", "warmup"] | None = None,
        beta_min: float = 0.1,
        beta_warmup_epochs: int = 50,
        lr: float = 1e-5,
        lr_schedule: Literal["WarmupCosine", "Constant"] = "Constant",
        log_batches_per_epoch: int = 8,
        log_samples_per_batch: int = 1,
        example_input_array_shape: Sequence[int] = (1, 2, 30, 256, 256),
        log_enhanced_visualizations: bool = False,
        log_enhanced_visualizations_frequency: int = 30,
    ) -> None:
        super().__init__()
        if beta_schedule is not None and beta_schedule not in _BETA_SCHEDULES:
            raise ValueError(f"beta_schedule must be one of {_BETA_SCHEDULES} or None, got {beta_schedule!r}.")
        if beta_schedule is not None and beta_warmup_epochs < 1:
            raise ValueError(f"beta_warmup_epochs must be >= 1 with a beta_schedule, got {beta_warmup_epochs}.")
        self.model = vae
        self.loss_function = nn.MSELoss(reduction="sum") if loss_function is None else loss_function
        self.beta = beta
        self.beta_schedule = beta_schedule
        self.beta_min = beta_min
        self.beta_warmup_epochs = beta_warmup_epochs
        self.lr = lr
        self.lr_schedule = _check_schedule(lr_schedule, "lr_schedule")
        self.log_batches_per_epoch = log_batches_per_epoch
        self.log_samples_per_batch = log_samples_per_batch
        self.example_input_array_shape = tuple(example_input_array_shape)
        self.example_input_array = torch.rand(*self.example_input_array_shape)
        self.log_enhanced_visualizations = log_enhanced_visualizations
        self.log_enhanced_visualizations_frequency = log_enhanced_visualizations_frequency
        self.vae_logger = BetaVaeLogger(latent_dim=self._latent_dim())
        self._reconstruction_samples: dict[str, tuple[Tensor, Tensor]] = {}

    def _latent_dim(self) -> int:
        for owner, name in ((self.model, "latent_dim"), (self.model, "latent_size")):
            if isinstance(getattr(owner, name, None), int):
                return getattr(owner, name)
        encoder = getattr(self.model, "encoder", None)
        if isinstance(getattr(encoder, "latent_dim", None), int):
            return encoder.latent_dim
        _logger.warning("Could not find the latent size of %s; assuming 128.", type(self.model).__name__)
        return 128

    def setup(self, stage: str) -> None:
        """Move the logger's buffers to the module's device."""
        self.vae_logger.setup(self.device)

    def get_current_beta(self) -> float:
        """KL weight at the current epoch (floored at 1e-15)."""
        epoch, w = self.current_epoch, self.beta_warmup_epochs
        beta = self.beta
        if self.beta_schedule is not None and epoch < w:
            if self.beta_schedule == "linear":
                beta = self.beta_min + (self.beta - self.beta_min) * epoch / w
            elif self.beta_schedule == "cosine":
                beta = self.beta_min + (self.beta - self.beta_min) * 0.5 * (1 + math.cos(math.pi * (1 - epoch / w)))
            else:
                beta = self.beta_min
        return max(beta, 1e-15)

    def _is_2d_vae_on_5d(self, x: Tensor) -> bool:
        return getattr(self.model, "spatial_dims", None) == 2 and x.ndim == 5 and x.shape[2] == 1

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """Encode/decode ``x`` and return the reconstruction, latents and the three loss terms."""
        squeeze = self._is_2d_vae_on_5d(x)
        out = self.model(x.squeeze(2) if squeeze else x)
        recon_x = out.recon_x.unsqueeze(2) if squeeze else out.recon_x
        if recon_x.shape != x.shape:
            raise ValueError(
                f"{type(self.model).__name__} reconstructs shape {tuple(recon_x.shape)} from input "
                f"{tuple(x.shape)}; the shapes must match."
            )
        recon_loss = self.loss_function(recon_x, x)
        if isinstance(self.loss_function, nn.MSELoss):
            if self.loss_function.reduction == "sum":
                recon_loss = recon_loss / x.shape[0]
            elif self.loss_function.reduction == "mean":
                recon_loss = recon_loss * x[0].numel()
        # One clamped log-variance for every KL term (the reference mixed clamped and raw values).
        logvar = out.logvar.clamp(-20, 20)
        mean = out.mean
        kl = (-0.5 * (1 + logvar - mean.pow(2) - logvar.exp()).flatten(1).sum(1)).mean()
        total = recon_loss + self.get_current_beta() * kl
        return {
            "recon_x": recon_x,
            "z": out.z,
            "mu": mean,
            "logvar": out.logvar,
            "recon_loss": recon_loss,
            "kl_loss": kl,
            "total_loss": total,
        }

    def _shared_step(self, batch: dict, batch_idx: int, stage: str) -> Tensor:
        x = batch["anchor"]
        out = self(x)
        self.log(
            f"loss/{stage}",
            out["total_loss"],
            on_step=stage == "train",
            on_epoch=True,
            prog_bar=True,
            sync_dist=True,
            batch_size=x.shape[0],
        )
        self.vae_logger.log_enhanced_metrics(self, out, batch, stage=stage)
        if batch_idx == 0:
            n = min(4, x.shape[0])
            self._reconstruction_samples[stage] = (x[:n].detach(), out["recon_x"][:n].detach())
        return out["total_loss"]

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        """Return the total loss of ``batch['anchor']``."""
        return self._shared_step(batch, batch_idx, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> Tensor:
        """Return the total validation loss of ``batch['anchor']``."""
        return self._shared_step(batch, batch_idx, "val")

    def predict_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> dict:
        """Return ``latent``, ``reconstruction`` and the passed-through ``index``."""
        out = self(batch["anchor"])
        return {"latent": out["z"], "reconstruction": out["recon_x"], "index": batch["index"]}

    def on_before_optimizer_step(self, optimizer) -> None:
        """Log gradient and parameter norms once gradients exist (after backward)."""
        self.vae_logger.log_gradient_diagnostics(self)

    def configure_optimizers(self):
        """AdamW with the configured ``lr_schedule``."""
        return _build_optimizer(self, self.lr, self.lr_schedule)

    def _log_reconstructions(self, stage: str) -> None:
        pair = self._reconstruction_samples.pop(stage, None)
        experiments = _tensorboard_experiments(self)
        if pair is None or not experiments:
            return
        from viscy_utils.log_images import render_images

        original, recon = pair
        mid = original.shape[2] // 2
        rows = [
            [original[i, :, mid].float().cpu().numpy(), recon[i, :, mid].float().cpu().numpy()]
            for i in range(original.shape[0])
        ]
        grid = render_images(rows, cmaps=["gray", "gray"])
        for experiment in experiments:
            experiment.add_image(f"{stage}_reconstructions", grid, self.current_epoch, dataformats="HWC")

    def on_train_epoch_end(self) -> None:
        """Draw the training reconstructions."""
        self._log_reconstructions("train")

    def on_validation_epoch_end(self) -> None:
        """Draw validation reconstructions, latent histograms and optional latent visualisations."""
        self._log_reconstructions("val")
        epoch = self.current_epoch
        latents = self.vae_logger.latents.get("val")
        if latents is not None and epoch % 10 == 0:
            self.vae_logger.log_latent_histograms(self, latents, stage="val")
        if (
            self.log_enhanced_visualizations
            and epoch > 0
            and epoch % self.log_enhanced_visualizations_frequency == 0
            and not self.trainer.sanity_checking
        ):
            self.vae_logger.log_latent_traversal(self)
            self.vae_logger.log_latent_interpolation(self)
            self.vae_logger.log_factor_traversal_matrix(self)
