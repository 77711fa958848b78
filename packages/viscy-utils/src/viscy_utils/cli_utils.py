"""Helpers for command-line tools: markdown tables of metrics and YAML config loading."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["format_markdown_table", "load_config"]


def _cell(value: Any) -> str:
    """Format a table cell: floats with 3 decimals, anything else with ``str``."""
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _display(name: str) -> str:
    """Turn a snake_case key into a title-cased label."""
    return str(name).replace("_", " ").title()


def _table(headers: Sequence[str], rows: list[list[str]]) -> list[str]:
    """Markdown table lines: header row, separator (``len(header) + 3`` dashes per column), rows."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("-" * (len(h) + 3) for h in headers) + "|"]
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return lines


def format_markdown_table(
    data: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    title: str | None = None,
    headers: Sequence[str] | None = None,
) -> str:
    """Format metrics as a markdown table.

    Parameters
    ----------
    data : dict or list of dict
        A dict gives a two-column table, one row per item (keys title-cased with ``_`` as spaces).
        A non-empty list of dicts gives one row per dict, one column per key of the first dict.
        Anything else gives only the title.
    title : str, optional
        Rendered as a ``## title`` heading above the table.
    headers : list of str, optional
        Column headers; default ``["Metric", "Value"]`` for a dict and the first dict's keys for a
        list (displayed title-cased with ``_`` as spaces).

    Returns
    -------
    str
        The markdown text, ending with a newline.
    """
    lines = [f"## {title}", ""] if title else []
    if isinstance(data, Mapping):
        headers = list(headers) if headers is not None else ["Metric", "Value"]
        lines += _table(headers, [[_display(key), _cell(value)] for key, value in data.items()])
    elif isinstance(data, Sequence) and not isinstance(data, str) and len(data) > 0:
        keys = list(headers) if headers is not None else list(data[0].keys())
        lines += _table([_display(key) for key in keys], [[_cell(row.get(key, "")) for key in keys] for row in data])
    lines.append("")
    return "\n".join(lines)


def load_config(config_path: str | Path) -> Any:
    """Load a YAML configuration file.

    Parameters
    ----------
    config_path : str or pathlib.Path
        Path to the YAML file.

    Returns
    -------
    Any
        The parsed document (usually a dict; ``None`` for an empty file).

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    yaml.YAMLError
        If the file is not valid YAML.
    """
    import yaml

    config_path = Path(config_path)
    if not config_path.is_file():
        raise FileNotFoundError(f"Config file not found: {config_path}")
    with config_path.open(encoding="utf-8") as f:
        return yaml.safe_load(f)
