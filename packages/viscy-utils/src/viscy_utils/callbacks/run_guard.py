"""A callback that stops runs which would otherwise end as a success after doing nothing or being stopped."""

from __future__ import annotations

from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities.exceptions import SIGTERMException

from viscy_utils.run_folder import remove_hpc_checkpoints

__all__ = ["EmptyEpochError", "RunGuard"]


class EmptyEpochError(RuntimeError):
    """A training run (or one of its epochs) processed no batch."""


class RunGuard(Callback):
    """Fail loudly instead of finishing a run that trained nothing or was asked to stop.

    - A training epoch that ends without a single batch raises :class:`EmptyEpochError` before any
      checkpoint of that epoch is saved (checkpoint callbacks run after every other callback), and so
      does ``fit`` when the training loader has no batch at all (Lightning only logs
      "No training batches" and returns).
    - Lightning stops ``fit`` and ``validate`` at the next batch after a SIGTERM, but ``predict`` and
      ``test`` run to the end; this stops them at the next batch too, so a prediction interrupted by
      the scheduler never writes its output as if it had completed.

    - A ``fit`` that finishes deletes the SLURM auto-requeue checkpoints (``hpc_ckpt_*.ckpt``) of
      ``default_root_dir``: left there, the next run started in that directory would resume from them.

    The ``viscy``/``dynaclr`` command line adds this callback to every trainer it builds.
    """

    @staticmethod
    def _training_requested(trainer: Trainer) -> bool:
        return trainer.limit_train_batches != 0 and not trainer.received_sigterm

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Raise if the epoch that ends ran no training batch."""
        progress = trainer.fit_loop.epoch_loop.batch_progress.current
        if progress.ready == 0 and self._training_requested(trainer):
            raise EmptyEpochError(
                f"epoch {trainer.current_epoch} ended without a single training batch; the training "
                "dataloader stopped early or is empty"
            )

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Raise if ``fit`` ended without any training batch; else drop the SLURM requeue checkpoints."""
        if trainer.fit_loop.max_batches == 0 and self._training_requested(trainer):
            raise EmptyEpochError(
                "fit ran no training step: the training dataloader has no batch (fewer samples than batch_size "
                "with drop_last, or every sample filtered out)"
            )
        if trainer.is_global_zero:
            remove_hpc_checkpoints(trainer)

    @staticmethod
    def _stop_on_sigterm(trainer: Trainer) -> None:
        if trainer.received_sigterm:
            raise SIGTERMException

    def on_predict_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any, **kwargs: Any) -> None:
        """Stop prediction after a SIGTERM."""
        self._stop_on_sigterm(trainer)

    def on_test_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any, **kwargs: Any) -> None:
        """Stop testing after a SIGTERM."""
        self._stop_on_sigterm(trainer)
