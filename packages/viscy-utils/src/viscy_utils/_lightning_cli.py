"""``VisCyCLI``, the LightningCLI subclass behind ``viscy`` (imported lazily by :mod:`viscy_utils.cli`)."""

from __future__ import annotations

import inspect
import logging
import sys
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from jsonargparse import Namespace, lazy_instance
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger

from viscy_utils.cli import DATA_FREE_SUBCOMMANDS, MODEL_FREE_SUBCOMMANDS, subcommand_from_args

__all__ = ["VisCyCLI"]

_logger = logging.getLogger(__name__)

#: subcommands before which a data module's ``preflight_check`` runs
PREFLIGHT_SUBCOMMANDS = frozenset({"fit", "validate", "test", "predict"})


class VisCyCLI(LightningCLI):
    """Lightning CLI with the ``viscy`` defaults and the extra trainer subcommands.

    - Subcommands: ``fit``, ``validate``, ``test``, ``predict`` plus ``preprocess``, ``export``,
      ``precompute`` and ``convert_to_anndata`` (methods of the trainer class).
    - Whether the ``model`` and ``data`` groups are required is decided from the subcommand alone:
      ``preprocess``, ``precompute`` and ``convert_to_anndata`` need no model; those and ``export`` need
      no data module. The groups stay available (optional) so a training config can be reused.
    - Default logger: ``TensorBoardLogger(save_dir="", version=<YYYYmmdd-HHMMSS>, log_graph=True)``.
    - A data module with a ``preflight_check(stage[, world_size][, model])`` method is checked before the
      subcommand runs (before logs, checkpoints or ``config.yaml`` are written).
    - A checkpoint whose hyper-parameters cannot be parsed does not abort the command (Lightning
      issue #21255): the hyper-parameters are skipped with a warning.

    Parameters are those of :class:`lightning.pytorch.cli.LightningCLI`.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        cli_args = kwargs.get("args")
        if isinstance(cli_args, (Mapping, Namespace)):
            subcommand = cli_args.get("subcommand")
        else:
            subcommand = subcommand_from_args(sys.argv[1:] if cli_args is None else list(cli_args))
        self._model_required = subcommand not in MODEL_FREE_SUBCOMMANDS
        self._data_required = subcommand not in DATA_FREE_SUBCOMMANDS
        super().__init__(*args, **kwargs)

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        """Subcommands and the method arguments the CLI fills itself (not exposed as flags)."""
        return {
            **LightningCLI.subcommands(),
            "preprocess": {"model"},
            "export": {"model"},
            "precompute": {"model"},
            "convert_to_anndata": {"model"},
        }

    def add_core_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Add trainer, model and data groups; model/data are optional for subcommands that ignore them."""
        parser.add_lightning_class_args(self.trainer_class, "trainer")
        parser.set_defaults({f"trainer.{k}": v for k, v in self.trainer_defaults.items() if k != "callbacks"})
        parser.add_lightning_class_args(
            self._model_class, "model", subclass_mode=self.subclass_mode_model, required=self._model_required
        )
        parser.add_lightning_class_args(
            self._datamodule_class, "data", subclass_mode=self.subclass_mode_data, required=self._data_required
        )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Set the default TensorBoard logger (version = local start time)."""
        parser.set_defaults(
            {
                "trainer.logger": lazy_instance(
                    TensorBoardLogger,
                    save_dir="",
                    version=datetime.now().strftime("%Y%m%d-%H%M%S"),
                    log_graph=True,
                )
            }
        )

    def _run_subcommand(self, subcommand: str) -> None:
        """Run the data module's pre-flight check, then the subcommand.

        A data module may define ``preflight_check(stage[, world_size][, model])`` (the optional arguments it names
        are passed); it runs before ``fit``, ``validate``, ``test`` and ``predict`` start, so configuration errors
        surface before logs, checkpoints or the saved ``config.yaml`` exist.
        """
        check = getattr(self.datamodule, "preflight_check", None)
        if subcommand in PREFLIGHT_SUBCOMMANDS and callable(check):
            offered = {
                "world_size": int(getattr(self.trainer, "world_size", 1) or 1),
                "model": self.model,  # compared with the data (input channels, stack depth)
            }
            accepted = inspect.signature(check).parameters
            check(stage=subcommand, **{k: v for k, v in offered.items() if k in accepted})
        super()._run_subcommand(subcommand)

    def _prepare_subcommand_kwargs(self, subcommand: str) -> dict[str, Any]:
        """Pass the data module only to subcommands that use one (a reused fit config may define it)."""
        kwargs = super()._prepare_subcommand_kwargs(subcommand)
        if subcommand in DATA_FREE_SUBCOMMANDS:
            kwargs.pop("datamodule", None)
        return kwargs

    def _parse_ckpt_path(self) -> None:
        """Apply checkpoint hyper-parameters when they parse; otherwise warn and go on."""
        try:
            super()._parse_ckpt_path()
        except SystemExit:
            _logger.warning("Could not apply the hyper-parameters stored in ckpt_path; using the configuration as is.")
