"""Beta-VAE training on ``anchor`` patches, with optional KL-weight annealing."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Literal

import torch
from lightning.pytorch import LightningModule
from torch import Tensor, nn

from dynaclr.image_logging import image_experiments
from dynaclr.optim import build_optimizer, check_schedule
from dynaclr.vae_logging import BetaVaeLogger

__all__ = ["BetaVaeModule"]

_logger = logging.getLogger("lightning.pytorch")
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
        The ``{train,val}_reconstructions`` image grids show ``log_samples_per_batch`` original |
        reconstruction pairs (mid-Z) from each of the first ``log_batches_per_epoch`` batches of the
        epoch (TensorBoard-like loggers only; 0 disables them).
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
        self.lr_schedule = check_schedule(lr_schedule, "lr_schedule")
        self.log_batches_per_epoch = log_batches_per_epoch
        self.log_samples_per_batch = log_samples_per_batch
        self.example_input_array_shape = tuple(example_input_array_shape)
        self.example_input_array = torch.rand(*self.example_input_array_shape)
        self.log_enhanced_visualizations = log_enhanced_visualizations
        self.log_enhanced_visualizations_frequency = log_enhanced_visualizations_frequency
        self.vae_logger = BetaVaeLogger(latent_dim=self._latent_dim())
        self._reconstruction_samples: dict[str, list[tuple[Tensor, Tensor]]] = {}

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
        if batch_idx < self.log_batches_per_epoch and self.log_samples_per_batch > 0 and image_experiments(self):
            n = min(self.log_samples_per_batch, x.shape[0])
            pair = (x[:n].detach().cpu(), out["recon_x"][:n].detach().cpu())
            self._reconstruction_samples.setdefault(stage, []).append(pair)
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
        return build_optimizer(self, self.lr, self.lr_schedule)

    def _log_reconstructions(self, stage: str) -> None:
        pairs = self._reconstruction_samples.pop(stage, None)
        experiments = image_experiments(self)
        if not pairs or not experiments:
            return
        from viscy_utils.log_images import render_images

        original = torch.cat([p[0] for p in pairs])
        recon = torch.cat([p[1] for p in pairs])
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
