"""The ``viscy`` command line: a Lightning CLI with extra subcommands.

``viscy --help`` is answered from a static table without importing Lightning (which alone takes
10-20 s to import on a small machine); every other invocation builds :class:`VisCyCLI`.

Other packages reuse the machinery for their own console scripts::

    # dynaclr/cli.py, registered as ``dynaclr = "dynaclr.cli:main"``
    from viscy_utils.cli import run_cli

    def main() -> None:
        run_cli(prog="dynaclr", description="DynaCLR: contrastive learning of cell dynamics.")
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from viscy_utils.cpu_runtime import enable_huge_page_buffers, tune_cpu_runtime

if TYPE_CHECKING:
    from viscy_utils._lightning_cli import VisCyCLI

__all__ = ["TUNE_CPU_ENV", "TUNE_CPU_FLAGS", "VisCyCLI", "enable_huge_page_buffers", "main", "run_cli"]

DESCRIPTION = "Computer vision models for single-cell phenotyping."

#: subcommand -> one-line help, in the order they are registered
SUBCOMMAND_HELP = {
    "fit": "Runs the full optimization routine.",
    "validate": "Perform one evaluation epoch over the validation set.",
    "test": "Perform one evaluation epoch over the test set.",
    "predict": "Run inference on your data.",
    "preprocess": "Compute normalisation statistics of an HCS OME-Zarr store and write them into its attributes.",
    "export": "Export a model checkpoint to ONNX.",
    "precompute": "Pre-normalise channels of an HCS store into a float16 .npy stack.",
    "convert_to_anndata": "Convert a legacy xarray embeddings zarr store to an AnnData zarr store.",
    "import-tracks": "Convert TrackMate XML, CTC res_track.txt or track tables into per-FOV tracks CSVs.",
    "import-images": "Write a TIFF / OME-TIFF time-lapse as a position of an HCS OME-Zarr plate.",
}

#: subcommands that are plain functions of their arguments (no Lightning): name -> "module:function"
TOOL_SUBCOMMANDS = {
    "import-tracks": "viscy_utils.import_commands:import_tracks",
    "import-images": "viscy_utils.import_commands:import_images",
}

#: subcommands that run without a model / without a data module
MODEL_FREE_SUBCOMMANDS = frozenset({"preprocess", "precompute", "convert_to_anndata"})
DATA_FREE_SUBCOMMANDS = frozenset({"preprocess", "precompute", "export", "convert_to_anndata"})

#: top-level options that consume the next token as their value
_OPTIONS_WITH_VALUE = frozenset({"-c", "--config"})

#: command-line switch (anywhere on the line) that opts in to :func:`~viscy_utils.cpu_runtime.tune_cpu_runtime`
TUNE_CPU_FLAGS = frozenset({"--tune_cpu", "--tune-cpu"})
#: environment variable that opts in too (``1``, ``true``, ``yes`` or ``on``)
TUNE_CPU_ENV = "VISCY_TUNE_CPU"


def split_tune_cpu(args: Sequence[str]) -> tuple[bool, list[str]]:
    """Tell whether the CPU runtime tuning was asked for; return it with the arguments minus the switch.

    The switch (:data:`TUNE_CPU_FLAGS`) may stand anywhere in ``args`` (the command line without the
    program name); :data:`TUNE_CPU_ENV` set to a true value asks for the tuning as well. The remaining
    arguments are what Lightning parses.
    """
    tokens = list(args)
    remaining = [t for t in tokens if t not in TUNE_CPU_FLAGS]
    from_env = os.environ.get(TUNE_CPU_ENV, "").strip().lower() in {"1", "true", "yes", "on"}
    return from_env or len(remaining) < len(tokens), remaining


def subcommand_from_args(args: Sequence[str]) -> str | None:
    """Return the subcommand of a command line, looking only at the subcommand position.

    Top-level options (and the value of ``-c/--config``) are skipped; the first positional token is
    the subcommand. Paths or values further on the line never change the answer.

    Parameters
    ----------
    args : sequence of str
        Command-line arguments without the program name.

    Returns
    -------
    str or None
        The subcommand, or ``None`` if the first positional token is not a known subcommand.
    """
    tokens = iter(args)
    for token in tokens:
        if token in _OPTIONS_WITH_VALUE:
            next(tokens, None)
        elif not token.startswith("-"):
            return token if token in SUBCOMMAND_HELP else None
    return None


def static_help(prog: str = "viscy", description: str = DESCRIPTION) -> str:
    """Top-level help text, produced without importing Lightning.

    Parameters
    ----------
    prog : str
        Program name shown in the usage line.
    description : str
        One-paragraph description.

    Returns
    -------
    str
        The help text.
    """
    choices = "{" + ",".join(SUBCOMMAND_HELP) + "}"
    width = max(len(name) for name in SUBCOMMAND_HELP) + 4
    lines = [
        f"usage: {prog} [-h] [-c CONFIG] [--print_config[=flags]] {choices} ...",
        "",
        description,
        "",
        "options:",
        "  -h, --help            Show this help message and exit.",
        "  -c, --config CONFIG   Path to a configuration file in json or yaml format.",
        "  --print_config[=flags]",
        "                        Print the configuration after applying all other arguments and exit.",
        "  --tune_cpu            Tune the CPU runtime for batch transforms (huge pages, heap reuse, no OpenMP",
        f"                        spinning; see viscy_utils.cpu_runtime). Off by default; {TUNE_CPU_ENV}=1 too.",
        "",
        "subcommands:",
        f"  For more details of each subcommand, add it as an argument followed by --help (e.g. {prog} fit --help).",
        "",
        f"  {choices}",
    ]
    lines += [f"    {name:<{width}}{text}" for name, text in SUBCOMMAND_HELP.items()]
    return "\n".join(lines) + "\n"


def _setup_environment(tune_cpu: bool = False) -> None:
    """Set the Lightning log level and allow TF32 matmuls; with ``tune_cpu``, first tune the CPU runtime.

    The tuning changes process-wide allocator settings and environment variables, so it happens only
    when asked for (:data:`TUNE_CPU_FLAGS`, :data:`TUNE_CPU_ENV`), before torch loads.
    """
    if tune_cpu:
        tune_cpu_runtime()
    import torch

    level = os.environ.get("VISCY_LOG_LEVEL", "INFO")
    logging.getLogger("lightning.pytorch").setLevel(int(level) if level.lstrip("-").isdigit() else level.upper())
    torch.set_float32_matmul_precision("high")


def run_cli(
    args: Sequence[str] | None = None,
    *,
    prog: str = "viscy",
    description: str = DESCRIPTION,
    trainer_class: type | None = None,
    **cli_kwargs: Any,
) -> VisCyCLI | None:
    """Run the ``viscy`` command line (or another program's built on it).

    Parameters
    ----------
    args : sequence of str, optional
        Arguments without the program name; ``sys.argv[1:]`` when ``None``.
    prog : str
        Program name shown in help and usage.
    description : str
        Description shown in help.
    trainer_class : type, optional
        Trainer class; :class:`~viscy_utils.trainer.VisCyTrainer` (or a subclass with the same extra
        subcommands) by default.
    **cli_kwargs
        Passed to :class:`VisCyCLI` (e.g. ``trainer_defaults``, ``save_config_kwargs``).

    Returns
    -------
    VisCyCLI or None
        The CLI object after the subcommand ran; ``None`` when only the top-level help was printed or
        a tool subcommand (``import-tracks``, ``import-images``) ran.
    """
    tune_cpu, tokens = split_tune_cpu(sys.argv[1:] if args is None else args)
    if args is None and len(tokens) < len(sys.argv) - 1:
        sys.argv = [sys.argv[0], *tokens]  # Lightning reads sys.argv itself; it must not see our switch
    if not tokens:
        sys.stderr.write(static_help(prog, description).split("\n", 1)[0] + f"\n{prog}: error: expected a subcommand\n")
        raise SystemExit(2)
    if tokens[0] in ("-h", "--help"):
        sys.stdout.write(static_help(prog, description))
        return None
    if tokens[0] in TOOL_SUBCOMMANDS:
        module, _, function = TOOL_SUBCOMMANDS[tokens[0]].partition(":")
        getattr(importlib.import_module(module), function)(tokens[1:], prog=f"{prog} {tokens[0]}")
        return None
    _setup_environment(tune_cpu)
    from lightning.pytorch import LightningDataModule, LightningModule

    from viscy_utils._lightning_cli import VisCyCLI
    from viscy_utils.trainer import VisCyTrainer

    parser_kwargs = {"prog": prog, "description": description, **cli_kwargs.pop("parser_kwargs", {})}
    return VisCyCLI(
        model_class=LightningModule,
        datamodule_class=LightningDataModule,
        trainer_class=trainer_class or VisCyTrainer,
        seed_everything_default=cli_kwargs.pop("seed_everything_default", 42),
        subclass_mode_model=True,
        subclass_mode_data=True,
        parser_kwargs=parser_kwargs,
        # None lets Lightning read sys.argv itself (it warns when given both)
        args=None if args is None else tokens,
        **cli_kwargs,
    )


def main() -> None:
    """Console entry point of ``viscy``."""
    run_cli()


def __getattr__(name: str) -> Any:
    # VisCyCLI subclasses LightningCLI; importing it lazily keeps `viscy --help` instant.
    if name == "VisCyCLI":
        from viscy_utils._lightning_cli import VisCyCLI

        return VisCyCLI
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":
    main()
