"""The ``dynaclr check`` command."""

from __future__ import annotations

import sys

import click

from dynaclr.check.config import check_config
from dynaclr.check.datamodule import _CHECKED_STAGES

__all__ = ["check_command"]


@click.command(
    "check",
    short_help="Check a config and every experiment it names before training: dynaclr check -c fit.yml",
)
@click.option(
    "-c", "--config", "config_path", required=True, type=click.Path(dir_okay=False), help="The fit/predict config."
)
@click.option(
    "--stage",
    type=click.Choice(["auto", *_CHECKED_STAGES]),
    default="auto",
    show_default=True,
    help="What the config is for; auto: predict when it has return_predictions or an embedding writer.",
)
@click.option("--debug", is_flag=True, help="Show the traceback of an unexpected failure.")
def check_command(config_path: str, stage: str, debug: bool) -> None:
    """Check a config and every experiment it names; report all problems at once.

    Opens every experiment's plate and tracking CSVs and checks what `dynaclr fit`/`predict` would otherwise
    discover late or not at all. Exit status: 0 when there is no error (warnings allowed), 1 otherwise.
    `dynaclr fit`/`validate`/`predict` run the same checks before writing anything.
    """
    try:
        report = check_config(config_path, stage, debug=debug)
    except Exception as err:
        if debug:
            raise
        click.echo(f"error: {type(err).__name__}: {err} (run with --debug for the traceback)", err=True)
        sys.exit(1)
    click.echo(report.format())
    sys.exit(1 if report.errors else 0)
