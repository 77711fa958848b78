"""Run folders of the command line: resume in place, re-run after a failed start, never overwrite a finished run.

Lightning's ``SaveConfigCallback`` refuses to start whenever ``config.yaml`` exists in the log directory.
With a fixed logger ``version`` (as the shipped configs have) that blocks the documented resume
(``fit --ckpt_path last``) and every re-run after a failed start. :class:`RunFolderConfigCallback`
decides instead from what the folders hold:

- **resume** (``ckpt_path`` is ``last``/``hpc``, a checkpoint of this run's folders, or a SLURM
  requeue finds an HPC checkpoint): same folders, the config is saved again;
- **no checkpoint yet** (the previous attempt failed before saving one): same folders;
- **a checkpoint of a previous run**: the run goes to new folders (``<version>_1``,
  ``<dirpath>_1``, ...), with a warning; ``--overwrite`` deletes the previous run's checkpoints and
  logs and reuses the folders instead.

Before anything is trained, every folder the run writes to is created and checked for write access.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

__all__ = ["RunFolderConfigCallback", "check_writable", "remove_hpc_checkpoints"]

_logger = logging.getLogger(__name__)

#: files a logger leaves in its log directory; ``--overwrite`` deletes them (and nothing else there)
_LOG_FILE_PATTERNS = ("config.yaml", "hparams.yaml", "metrics.csv", "events.out.tfevents.*")


def check_writable(directory: str | Path, role: str) -> Path:
    """Create ``directory`` if needed and check that a file can be written in it.

    Parameters
    ----------
    directory : str or pathlib.Path
        The folder.
    role : str
        What the folder is for, used in the error message (e.g. ``"checkpoint directory"``).

    Returns
    -------
    pathlib.Path
        The folder.

    Raises
    ------
    PermissionError
        Naming the folder and its role when it cannot be created or written.
    """
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-test-"):
            pass
    except OSError as err:
        raise PermissionError(
            f"the {role} {directory} is not writable ({type(err).__name__}: {err}); "
            "choose a folder you can write to before starting the run"
        ) from err
    return directory


def _checkpoint_dir(trainer: Trainer, callback: ModelCheckpoint) -> Path:
    """Where ``callback`` saves, resolved the way ``ModelCheckpoint`` resolves it."""
    if callback.dirpath is not None:
        return Path(callback.dirpath)
    if trainer.loggers:
        logger = trainer.loggers[0]
        save_dir = logger.save_dir if logger.save_dir is not None else trainer.default_root_dir
        version = logger.version if isinstance(logger.version, str) else f"version_{logger.version}"
        return Path(save_dir, str(logger.name), version, "checkpoints")
    return Path(trainer.default_root_dir, "checkpoints")


def _checkpoints(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.ckpt")) if directory.is_dir() else []


def _has_fixed_version(logger: Any) -> bool:
    return getattr(logger, "_version", None) is not None and hasattr(logger, "log_dir")


@dataclass
class _Plan:
    """What rank 0 decided; applied on every rank."""

    suffix: str | None = None
    bump_logger: bool = False
    bump_dirpaths: list[int] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    message: str | None = None


class RunFolderConfigCallback(SaveConfigCallback):
    """Save the CLI config in the log directory, deciding between resume, re-run and a new run folder.

    Used by the ``viscy``/``dynaclr`` command line in place of Lightning's ``SaveConfigCallback``
    (same parameters). The decision is described in :mod:`viscy_utils.run_folder`; ``overwrite`` and
    ``ckpt_path`` are read from the parsed command line (``--overwrite``, ``--ckpt_path``).
    """

    # ------------------------------------------------------------------ decisions (rank 0)
    def _config_value(self, key: str) -> Any:
        getter = getattr(self.config, "get", None)
        return getter(key) if getter is not None else None

    def _resumes_here(self, trainer: Trainer, checkpoint_dirs: list[Path]) -> bool:
        ckpt_path = self._config_value("ckpt_path")
        if ckpt_path is None:
            root = Path(trainer.default_root_dir)
            return SLURMEnvironment.detect() and any(root.glob("hpc_ckpt_*.ckpt"))
        if str(ckpt_path) in ("last", "hpc"):
            return True
        resolved = Path(ckpt_path).resolve()
        return (
            any(resolved.parent == d.resolve() for d in checkpoint_dirs)
            or resolved.parent == Path(trainer.default_root_dir).resolve()
        )

    def _plan(self, trainer: Trainer, stage: str, log_dir: str | None) -> _Plan:
        callbacks = [cb for cb in trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint)]
        checkpoint_dirs = [_checkpoint_dir(trainer, cb) for cb in callbacks]
        plan = _Plan()
        if stage != "fit" or self._resumes_here(trainer, checkpoint_dirs):
            return plan
        previous = [p for d in checkpoint_dirs for p in _checkpoints(d)]
        if not previous:
            return plan  # nothing saved yet: a previous attempt failed before training, reuse the folders
        if self._config_value("overwrite"):
            plan.delete = [str(p) for p in previous]
            if log_dir is not None:
                plan.delete += [str(p) for pattern in _LOG_FILE_PATTERNS for p in Path(log_dir).glob(pattern)]
            plan.message = f"--overwrite: deleting the previous run's checkpoints and logs ({len(plan.delete)} files)"
            return plan
        logger = trainer.loggers[0] if trainer.loggers else None
        logger_dir = Path(logger.log_dir) if logger is not None and _has_fixed_version(logger) else None
        in_logger_dir = [cb.dirpath is None for cb in callbacks]
        plan.bump_dirpaths = [i for i, d in enumerate(checkpoint_dirs) if not in_logger_dir[i] and _checkpoints(d)]
        plan.bump_logger = logger_dir is not None and (
            (logger_dir / self.config_filename).exists()
            or any(_checkpoints(d) for d, inside in zip(checkpoint_dirs, in_logger_dir) if inside)
        )
        if logger_dir is None and any(_checkpoints(d) for d, inside in zip(checkpoint_dirs, in_logger_dir) if inside):
            raise FileExistsError(
                f"{previous[0].parent} holds checkpoints of a previous run and the logger's folder cannot be "
                "renamed. Resume the run with --ckpt_path last, replace it with --overwrite, or change the logger"
            )
        for k in range(1, 100_000):
            targets = [Path(f"{checkpoint_dirs[i]}_{k}") for i in plan.bump_dirpaths]
            if plan.bump_logger:
                targets.append(Path(f"{logger_dir}_{k}"))
            if not any(t.exists() and any(t.iterdir()) for t in targets):
                plan.suffix = f"_{k}"
                break
        renamed = [f"{checkpoint_dirs[i]}{plan.suffix}" for i in plan.bump_dirpaths]
        if plan.bump_logger:
            renamed.insert(0, f"{logger_dir}{plan.suffix}")
        plan.message = (
            f"{previous[0].parent} holds checkpoints of a previous run; this run writes to {', '.join(renamed)}. "
            "Resume the previous run with --ckpt_path last, or replace it with --overwrite"
        )
        return plan

    # ------------------------------------------------------------------ applying (every rank)
    @staticmethod
    def _apply(trainer: Trainer, plan: _Plan) -> None:
        if plan.suffix is None:
            return
        if plan.bump_logger:
            logger = trainer.loggers[0]
            logger._version = f"{logger.version}{plan.suffix}"
        callbacks = [cb for cb in trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint)]
        for i in plan.bump_dirpaths:
            callbacks[i].dirpath = f"{callbacks[i].dirpath}{plan.suffix}"

    def _check_folders(self, trainer: Trainer, stage: str) -> None:
        log_dir = _local_log_dir(trainer)
        if self.save_to_log_dir and log_dir is not None:
            check_writable(log_dir, "log directory")
        if stage == "fit":
            for callback in trainer.checkpoint_callbacks:
                if isinstance(callback, ModelCheckpoint):
                    check_writable(_checkpoint_dir(trainer, callback), "checkpoint directory")

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Decide and check the folders on rank 0, apply the decision on every rank, save the config (rank 0)."""
        if self.already_saved:
            return
        log_dir = trainer.log_dir  # a broadcast: every rank must call it
        plan, error = None, None
        if trainer.is_global_zero:
            try:
                plan = self._plan(trainer, stage, log_dir)
                if plan.message:
                    _logger.warning(plan.message)
                for path in plan.delete:
                    Path(path).unlink(missing_ok=True)
                self._apply(trainer, plan)
                self._check_folders(trainer, stage)
            except Exception as err:  # every rank must raise, or the others wait forever in a broadcast
                error = err
        plan, error = trainer.strategy.broadcast((plan, error))
        if error is not None:
            raise error
        if not trainer.is_global_zero:
            self._apply(trainer, plan)
        log_dir = trainer.log_dir
        if trainer.is_global_zero:
            if self.save_to_log_dir and log_dir is not None:
                config_path = Path(log_dir) / self.config_filename
                if stage != "fit" and config_path.exists():
                    # validate/test/predict with a training config: keep the training run's config.yaml
                    config_path = config_path.with_name(f"{config_path.stem}_{stage}{config_path.suffix}")
                self.parser.save(
                    self.config, str(config_path), skip_none=False, overwrite=True, multifile=self.multifile
                )
            self.save_config(trainer, pl_module, stage)
            self.already_saved = True
        self.already_saved = trainer.strategy.broadcast(self.already_saved)


def _local_log_dir(trainer: Trainer) -> str | None:
    """``trainer.log_dir`` without its broadcast (safe to call on one rank)."""
    if not trainer.loggers:
        return trainer.default_root_dir
    logger = trainer.loggers[0]
    return logger.log_dir if isinstance(logger, (TensorBoardLogger, CSVLogger)) else logger.save_dir


def remove_hpc_checkpoints(trainer: Trainer) -> list[Path]:
    """Delete the SLURM auto-requeue checkpoints (``hpc_ckpt_*.ckpt``) of a run that has finished.

    Left behind, they would make the next run started in the same directory under SLURM resume from
    them instead of starting.
    """
    removed = sorted(Path(trainer.default_root_dir).glob("hpc_ckpt_*.ckpt"))
    for path in removed:
        path.unlink(missing_ok=True)
    return removed
