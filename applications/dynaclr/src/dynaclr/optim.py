"""Optimisers and learning-rate schedules of the DynaCLR engines."""

from __future__ import annotations

import logging
import math

import torch
from lightning.pytorch import LightningModule

__all__ = ["SCHEDULES", "WARMUP_FRACTION", "build_optimizer", "check_schedule"]

_logger = logging.getLogger("lightning.pytorch")

#: accepted values of the ``schedule`` / ``lr_schedule`` arguments
SCHEDULES = ("WarmupCosine", "Constant")
#: fraction of the optimisation steps spent in linear warm-up by the "WarmupCosine" schedule
WARMUP_FRACTION = 0.1


def check_schedule(value: str, argument: str) -> str:
    """Return ``value`` if it is one of :data:`SCHEDULES`; otherwise raise a ``ValueError`` naming ``argument``."""
    if value not in SCHEDULES:
        raise ValueError(f"{argument} must be one of {SCHEDULES}, got {value!r}.")
    return value


def build_optimizer(module: LightningModule, lr: float | None, schedule: str):
    """AdamW over all parameters, optionally with per-step linear warm-up then cosine decay to zero.

    Parameters
    ----------
    module : LightningModule
        The module (its trainer gives the number of optimisation steps).
    lr : float or None
        Learning rate (None: 1e-3).
    schedule : {"Constant", "WarmupCosine"}
        ``WarmupCosine`` warms up linearly over the first :data:`WARMUP_FRACTION` of the steps.

    Returns
    -------
    torch.optim.Optimizer or dict
        What ``configure_optimizers`` returns.
    """
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-3 if lr is None else lr)
    if schedule == "Constant":
        return optimizer
    total = module.trainer.estimated_stepping_batches
    if not math.isfinite(total) or total < 1:
        _logger.warning("WarmupCosine needs a finite number of training steps; using a constant learning rate.")
        return optimizer
    total = int(total)
    warmup = max(1, int(total * WARMUP_FRACTION))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
