"""The ``dynaclr`` command: Lightning training/inference subcommands and evaluation tools.

``dynaclr fit|validate|test|predict|export|preprocess|precompute|convert_to_anndata|rechunk`` forward
every remaining argument unchanged to the shared ``viscy`` command line (:func:`viscy_utils.cli.run_cli`),
so they behave exactly like ``viscy <subcommand>``: a failed pre-flight check of the data module (see
``dynaclr check``) prints its report without a traceback (``--debug`` shows it) and exits with status 1.
``check`` and the evaluation subcommands are :class:`LazyCommand`s:
their modules (and heavy dependencies) are imported only when the command runs or its options are
shown, which keeps ``dynaclr --help`` instant.
"""

from __future__ import annotations

import importlib

import click

__all__ = ["LazyCommand", "dynaclr", "main"]

_EVAL_EXTRA = 'pip install "dynaclr[eval]"'

#: subcommands forwarded to the viscy CLI (Lightning's and ``rechunk``), with their one-line help.
LIGHTNING_SUBCOMMANDS = {
    "fit": "Train a model (Lightning fit): dynaclr fit -c fit.yml",
    "validate": "Run one validation epoch.",
    "test": "Run one test epoch.",
    "predict": "Run inference, e.g. write embeddings: dynaclr predict -c predict.yml",
    "export": "Export a checkpoint to ONNX: dynaclr export -c export_onnx.yml",
    "preprocess": "Compute normalisation statistics of an OME-Zarr plate.",
    "precompute": "Pre-normalise channels of a plate into a float16 .npy stack.",
    "convert_to_anndata": "Convert a legacy xarray embeddings store to AnnData.",
    # not a Lightning subcommand, but forwarded to the viscy CLI the same way
    "rechunk": "Copy a plate into a sharded zarr v3 plate for fast patch reads: dynaclr rechunk SRC.zarr DST.zarr",
}


class LazyCommand(click.Command):
    """A click command whose implementation is imported on first use.

    Parameters
    ----------
    name : str
        Subcommand name.
    import_path : str
        ``"package.module"`` (its ``main`` is used) or ``"package.module:attribute"``; the target
        must be a :class:`click.Command`.
    help : str, optional
        Help text shown when the target cannot be imported.
    short_help : str, optional
        One-line help shown in the group's command list.
    extra : str, optional
        Install hint printed when importing fails because a dependency is missing.
    """

    def __init__(
        self,
        name: str,
        import_path: str,
        help: str | None = None,  # noqa: A002 - click's own argument name
        short_help: str | None = None,
        extra: str = _EVAL_EXTRA,
    ) -> None:
        super().__init__(name, help=help, short_help=short_help, add_help_option=True)
        module, _, attribute = import_path.partition(":")
        self.import_path = import_path
        self._module_name = module
        self._attribute = attribute or "main"
        self._extra = extra
        self._command: click.Command | None = None
        self._import_error: ImportError | None = None

    def _load(self) -> click.Command | None:
        if self._command is None and self._import_error is None:
            try:
                target = getattr(importlib.import_module(self._module_name), self._attribute)
            except ImportError as err:
                self._import_error = err
                return None
            if not isinstance(target, click.Command):
                raise TypeError(f"{self.import_path} is a {type(target).__name__}, not a click command.")
            self._command = target
        return self._command

    def _missing_message(self) -> str:
        return (
            f"'{self.name}' needs an optional dependency that is not installed "
            f"({self._import_error}). Install it with: {self._extra}"
        )

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        """Return the target's parameters, or only ``--help`` when it cannot be imported."""
        command = self._load()
        return command.get_params(ctx) if command is not None else super().get_params(ctx)

    def format_help_text(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Write the target's help text, or the install hint when it cannot be imported."""
        command = self._load()
        if command is not None:
            command.format_help_text(ctx, formatter)
            return
        super().format_help_text(ctx, formatter)
        with formatter.indentation():
            formatter.write_paragraph()
            formatter.write_text(self._missing_message())

    def invoke(self, ctx: click.Context):
        """Run the target command with the parsed parameters."""
        command = self._load()
        if command is None:
            raise click.ClickException(self._missing_message())
        return command.invoke(ctx)


def _lightning_command(name: str, short_help: str) -> click.Command:
    """Build a pass-through command: every argument (``--help`` included) goes to the viscy Lightning CLI."""

    def run(args: tuple[str, ...]) -> None:
        from viscy_utils.cli import run_cli

        # a failed pre-flight check prints every problem and exits 1 (run_cli; --debug shows the traceback)
        run_cli([name, *args], prog="dynaclr", description="DynaCLR: contrastive learning of cell dynamics.")

    return click.Command(
        name,
        callback=run,
        params=[click.Argument(["args"], nargs=-1, type=click.UNPROCESSED)],
        help=f"{short_help}\n\nAll arguments are passed to the viscy command line; see `dynaclr {name} --help`.",
        short_help=short_help,
        add_help_option=False,
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "allow_interspersed_args": False},
    )


class _OrderedGroup(click.Group):
    """Lists commands in registration order (training first, then evaluation tools)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)


@click.group(cls=_OrderedGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120})
def dynaclr() -> None:
    """DynaCLR training, inference, evaluation and analysis tools."""


for _name, _help in LIGHTNING_SUBCOMMANDS.items():
    dynaclr.add_command(_lightning_command(_name, _help))

dynaclr.add_command(
    LazyCommand(
        "check",
        "dynaclr.check:check_command",
        short_help="Check a config and every experiment it names: dynaclr check -c fit.yml",
        extra="pip install dynaclr",
    )
)

_EVALUATION = "dynaclr.evaluation.linear_classifiers"
for _command in (
    LazyCommand(
        "train-linear-classifier",
        f"{_EVALUATION}.train_linear_classifier",
        short_help="Train a linear classifier on cell embeddings",
    ),
    LazyCommand(
        "apply-linear-classifier",
        f"{_EVALUATION}.apply_linear_classifier",
        short_help="Apply a trained linear classifier to new embeddings",
    ),
    LazyCommand(
        "discover-datasets",
        f"{_EVALUATION}.dataset_discovery",
        short_help="List datasets with embeddings and annotations, and the gaps",
    ),
    LazyCommand(
        "generate-train-config",
        f"{_EVALUATION}.generate_train_config",
        short_help="Write one linear-classifier training config per task and channel",
    ),
    LazyCommand(
        "generate-prediction-scripts",
        f"{_EVALUATION}.generate_prediction_scripts",
        short_help="Write predict configs/SLURM scripts for datasets lacking embeddings",
    ),
    LazyCommand(
        "demo",
        "dynaclr.demo.run:main",
        short_help="Quickstart: train and evaluate DynaCLR on synthetic infection time-lapses (CPU, minutes)",
    ),
):
    dynaclr.add_command(_command)


def main() -> None:
    """Console entry point of ``dynaclr``."""
    dynaclr(prog_name="dynaclr")


if __name__ == "__main__":
    main()
