"""Loading and validating the YAML configs of the linear-classifier commands."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import click

ConfigT = TypeVar("ConfigT")


def load_validated_config(config_cls: type[ConfigT], config_path: Path) -> ConfigT:
    """Read ``config_path`` and validate it as ``config_cls``; on failure print why and abort the command.

    Parameters
    ----------
    config_cls : type
        A pydantic model (``LinearClassifierTrainConfig`` or ``LinearClassifierInferenceConfig``).
    config_path : pathlib.Path
        YAML file.

    Returns
    -------
    ConfigT
        The validated configuration.

    Raises
    ------
    click.Abort
        If the file does not validate (the validation message goes to stderr).
    """
    from pydantic import ValidationError

    from viscy_utils.cli_utils import load_config

    try:
        return config_cls(**(load_config(config_path) or {}))
    except (ValidationError, TypeError) as err:
        click.echo(f"Invalid configuration {config_path}:\n{err}", err=True)
        raise click.Abort() from err
