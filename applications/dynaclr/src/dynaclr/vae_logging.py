"""Diagnostics and TensorBoard visualisations of the beta-VAE engine.

Scalars are logged through ``LightningModule.log`` at epoch level (accumulated on the device, no
per-step host synchronisation); images and histograms go to TensorBoard-like loggers only and are
skipped for other loggers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from lightning.pytorch import LightningModule
from torch import Tensor

__all__ = ["BetaVaeLogger"]

_logger = logging.getLogger("lightning.pytorch")


def _image_experiments(module: LightningModule) -> list:
    if module._trainer is None:
        return []
    return [lg.experiment for lg in module.loggers if hasattr(lg.experiment, "add_image")]


def _group_norm(tensors: list[Tensor], device: torch.device) -> Tensor:
    """L2 norm of the concatenation of ``tensors`` (0 when empty)."""
    if not tensors:
        return torch.zeros((), device=device)
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(tensors)).float())


def _decoded_images(decoded) -> Tensor:
    """Mid-Z, first-channel (N, Y, X) images of a decoder output (tensor, tuple or namespace)."""
    if hasattr(decoded, "recon_x"):
        decoded = decoded.recon_x
    elif isinstance(decoded, tuple | list):
        decoded = decoded[0]
    images = decoded[:, 0]
    if images.ndim == 4:
        images = images[:, images.shape[1] // 2]
    return images.detach().float()


def _tile(rows: list[Tensor]) -> Tensor:
    """Stack rows of (N, Y, X) images into one (1, H, W) image scaled to [0, 1]."""
    grid = torch.cat([torch.cat(list(row), dim=1) for row in rows], dim=0)
    lo, hi = grid.min(), grid.max()
    return ((grid - lo) / (hi - lo).clamp_min(1e-12))[None].cpu()


class BetaVaeLogger:
    """Metric and visualisation helper of :class:`dynaclr.engine.BetaVaeModule`.

    Parameters
    ----------
    latent_dim : int
        Size of the latent space (used for the utilisation metric and traversals).
    """

    def __init__(self, latent_dim: int = 128) -> None:
        self.latent_dim = latent_dim
        self.device = torch.device("cpu")
        self.latents: dict[str, Tensor] = {}

    def setup(self, device: torch.device | str) -> None:
        """Record the device on which latent codes are generated."""
        self.device = torch.device(device)

    # ------------------------------------------------------------------ scalars
    def log_enhanced_metrics(
        self, lightning_module: LightningModule, model_output: dict, batch: dict, stage: str = "train"
    ) -> None:
        """Log losses, beta, NaN/Inf checks and latent statistics at epoch level.

        Parameters
        ----------
        lightning_module : LightningModule
            The module whose ``log_dict`` is used (and ``get_current_beta`` when present).
        model_output : dict
            Output of ``BetaVaeModule.forward``.
        batch : dict
            The batch (``anchor`` is checked for NaN).
        stage : str
            ``"train"`` or ``"val"``.
        """
        recon, mu = model_output["recon_x"].detach(), model_output["mu"].detach().flatten(1).float()
        self.latents[stage] = mu
        beta = lightning_module.get_current_beta() if hasattr(lightning_module, "get_current_beta") else 1.0
        var = mu.var(dim=0, correction=1 if mu.shape[0] > 1 else 0)
        active = (var > 0.01).sum().float()
        metrics = {
            f"loss/{stage}/total": model_output["total_loss"].detach(),
            f"loss/{stage}/reconstruction": model_output["recon_loss"].detach(),
            f"loss/{stage}/kl": model_output["kl_loss"].detach(),
            f"beta/{stage}": torch.tensor(float(beta), device=mu.device),
            "diagnostics/recon_has_nan": recon.isnan().any().float(),
            "diagnostics/recon_has_inf": recon.isinf().any().float(),
            "diagnostics/input_has_nan": batch["anchor"].isnan().any().float(),
            "diagnostics/latent_has_nan": mu.isnan().any().float(),
            "diagnostics/recon_max_val": recon.abs().max().float(),
            "diagnostics/recon_min_val": recon.min().float(),
            f"latent_statistics/mean_avg/{stage}": mu.mean(),
            f"latent_statistics/std_avg/{stage}": var.sqrt().mean(),
            f"latent_statistics/mean_max/{stage}": mu.mean(dim=0).abs().max(),
            f"latent_statistics/std_max/{stage}": var.sqrt().max(),
            f"latent_statistics/active_dims/{stage}": active,
            f"latent_statistics/effective_dim/{stage}": var.sum().pow(2) / var.pow(2).sum().clamp_min(1e-12),
            f"latent_statistics/utilization/{stage}": active / self.latent_dim,
        }
        lightning_module.log_dict(metrics, on_step=False, on_epoch=True, sync_dist=True, batch_size=mu.shape[0])

    def log_gradient_diagnostics(self, lightning_module: LightningModule) -> None:
        """Log gradient and parameter norms of the ``encoder`` and ``decoder`` parameter groups.

        Call after backward (``on_before_optimizer_step``) so gradients are current.
        """
        groups: dict[str, tuple[list[Tensor], list[Tensor]]] = {"encoder": ([], []), "decoder": ([], [])}
        for name, param in lightning_module.named_parameters():
            for group, (grads, params) in groups.items():
                if group in name:
                    params.append(param.detach())
                    if param.grad is not None:
                        grads.append(param.grad.detach())
        device = lightning_module.device
        metrics = {}
        for group, (grads, params) in groups.items():
            metrics[f"diagnostics/{group}_grad_norm"] = _group_norm(grads, device)
            metrics[f"diagnostics/{group}_param_norm"] = _group_norm(params, device)
        lightning_module.log_dict(metrics, on_step=False, on_epoch=True, sync_dist=True)

    def log_beta_schedule(
        self, lightning_module: LightningModule, beta_schedule: Callable[[int], float] | None = None
    ) -> float:
        """Log ``beta_schedule`` (the value at the current epoch) and return it.

        The default schedule is 0.1 for the first 10 % of ``max_epochs``, rises linearly to 4.0 by
        50 %, then stays at 4.0.
        """
        epoch = lightning_module.current_epoch
        if beta_schedule is None:
            max_epochs = max(1, lightning_module.trainer.max_epochs or 1)
            start, end = 0.1 * max_epochs, 0.5 * max_epochs
            if epoch < start:
                beta = 0.1
            elif epoch < end:
                beta = 0.1 + (4.0 - 0.1) * (epoch - start) / (end - start)
            else:
                beta = 4.0
        else:
            beta = float(beta_schedule(epoch))
        lightning_module.log("beta_schedule", beta, on_step=False, on_epoch=True)
        return beta

    # ------------------------------------------------------------------ TensorBoard pictures
    def log_latent_histograms(self, lightning_module: LightningModule, latents: Tensor, stage: str = "val") -> None:
        """Histogram of each of the first 16 latent dimensions (``latent_distributions/dim_<i>_<stage>``)."""
        for experiment in _image_experiments(lightning_module):
            for i in range(min(16, latents.shape[1])):
                experiment.add_histogram(
                    f"latent_distributions/dim_{i}_{stage}", latents[:, i].float().cpu(), lightning_module.current_epoch
                )

    def _decode(self, lightning_module: LightningModule, z: Tensor) -> Tensor:
        with torch.no_grad():
            return _decoded_images(lightning_module.model.decoder(z))

    def _draw(self, lightning_module: LightningModule, tag: str, draw: Callable[[], list[Tensor]]) -> None:
        experiments = _image_experiments(lightning_module)
        if not experiments:
            return
        try:
            image = _tile(draw())
        except Exception as err:  # visual diagnostics must never stop training
            _logger.warning("Could not draw %s: %s", tag, err)
            return
        for experiment in experiments:
            experiment.add_image(tag, image, lightning_module.current_epoch, dataformats="CHW")

    def log_latent_traversal(
        self,
        lightning_module: LightningModule,
        n_dims: int = 8,
        n_steps: int = 11,
        range_vals: tuple[float, float] = (-3, 3),
    ) -> None:
        """Decode a zero code with one dimension swept over ``range_vals`` (``latent_traversal/dim_<d>``)."""
        values = torch.linspace(*range_vals, n_steps, device=self.device)
        for d in range(min(n_dims, self.latent_dim)):

            def draw(d=d):
                z = torch.zeros(n_steps, self.latent_dim, device=self.device)
                z[:, d] = values
                return [self._decode(lightning_module, z)]

            self._draw(lightning_module, f"latent_traversal/dim_{d}", draw)

    def log_latent_interpolation(self, lightning_module: LightningModule, n_pairs: int = 3, n_steps: int = 11) -> None:
        """Decode straight lines between pairs of validation latents (``latent_interpolation/pair_<i>``)."""
        latents = self.latents.get("val")
        if latents is None or latents.shape[0] < 2:
            generator = torch.Generator().manual_seed(0)
            latents = torch.randn(2 * n_pairs, self.latent_dim, generator=generator)
        latents = latents.to(self.device)
        weights = torch.linspace(0, 1, n_steps, device=self.device)[:, None]
        for i in range(min(n_pairs, latents.shape[0] // 2)):

            def draw(i=i):
                start, end = latents[2 * i], latents[2 * i + 1]
                return [self._decode(lightning_module, (1 - weights) * start + weights * end)]

            self._draw(lightning_module, f"latent_interpolation/pair_{i}", draw)

    def log_factor_traversal_matrix(self, lightning_module: LightningModule, n_dims: int = 8, n_steps: int = 7) -> None:
        """One image: rows sweep each of the first ``n_dims`` dimensions over [-3, 3] (``factor_traversal_matrix``)."""
        n_dims = min(n_dims, self.latent_dim)

        def draw():
            z = torch.zeros(n_dims, n_steps, self.latent_dim, device=self.device)
            dims = torch.arange(n_dims, device=self.device)
            z[dims, :, dims] = torch.linspace(-3, 3, n_steps, device=self.device)
            images = self._decode(lightning_module, z.flatten(0, 1))
            return list(images.view(n_dims, n_steps, *images.shape[1:]))

        self._draw(lightning_module, "factor_traversal_matrix", draw)
