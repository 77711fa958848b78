"""The loggers of a LightningModule that can draw images (TensorBoard-like), for the engines' figures."""

from __future__ import annotations

from lightning.pytorch import LightningModule

__all__ = ["image_experiments"]


def image_experiments(module: LightningModule) -> list:
    """Return the experiments of the attached loggers that can draw images (TensorBoard-like).

    Image and embedding logging is optional: with a CSV/W&B logger or ``logger=False`` nothing is
    drawn instead of crashing (reference defect W14).
    """
    if module._trainer is None:
        return []
    return [lg.experiment for lg in module.loggers if hasattr(lg.experiment, "add_image")]
