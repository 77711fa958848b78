"""Find which datasets have embeddings (predictions) and annotations, for linear-classifier work.

Expected layout (the lab's convention)::

    <embeddings_dir>/<dataset>/*phenotyping*/*prediction*/<model_name>/<version>/*<channel>*.zarr
    <annotations_dir>/<dataset>/*.csv
"""

from __future__ import annotations

from pathlib import Path

import click

from dynaclr.evaluation import require_extra

require_extra("natsort")

__all__ = [
    "CHANNELS",
    "TASKS",
    "build_registry",
    "discover_predictions",
    "find_annotation_csv",
    "find_channel_zarrs",
    "get_available_tasks",
    "main",
    "print_registry_summary",
]

CHANNELS = ["phase", "sensor", "organelle"]
TASKS = ["infection_state", "organelle_state", "cell_division_state", "cell_death_state"]


def _natsorted(paths):
    from natsort import natsorted

    return natsorted(paths, key=str)


def discover_predictions(embeddings_dir: str | Path, model_name: str, version: str) -> dict[str, Path]:
    """Map dataset name to its prediction folder ``<dataset>/*phenotyping*/*prediction*/<model_name>/<version>``.

    ``model_name`` may contain glob patterns. Datasets are natural-sorted; the first match wins.
    """
    root = Path(embeddings_dir)
    found: dict[str, Path] = {}
    for path in _natsorted(root.glob(f"*/*phenotyping*/*prediction*/{model_name}/{version}")):
        if path.is_dir():
            found.setdefault(path.relative_to(root).parts[0], path)
    return found


def find_channel_zarrs(predictions_dir: str | Path, channels: list[str] | None = None) -> dict[str, Path]:
    """Map each channel to the first natural-sorted ``*<channel>*.zarr`` in ``predictions_dir``."""
    result = {}
    for channel in channels or CHANNELS:
        matches = _natsorted(Path(predictions_dir).glob(f"*{channel}*.zarr"))
        if matches:
            result[channel] = matches[0]
    return result


def find_annotation_csv(annotations_dir: str | Path, dataset_name: str) -> Path | None:
    """Return the first (natural-sorted) ``*.csv`` in ``<annotations_dir>/<dataset_name>/``, or None."""
    matches = _natsorted(Path(annotations_dir, dataset_name).glob("*.csv"))
    return matches[0] if matches else None


def get_available_tasks(csv_path: str | Path) -> list[str]:
    """Return the TASKS that are columns of the CSV header (in TASKS order)."""
    with open(csv_path) as handle:
        header = [column.strip().strip('"') for column in handle.readline().rstrip("\r\n").split(",")]
    return [task for task in TASKS if task in header]


def build_registry(
    embeddings_dir: str | Path, annotations_dir: str | Path, model_name: str, version: str
) -> tuple[list[dict], list[dict], list[str], list[str]]:
    """Pair predictions with annotations.

    Returns
    -------
    tuple
        ``(registry, skipped, annotations_only, predictions_only)``: registry entries have keys
        ``dataset``, ``predictions_dir``, ``channel_zarrs``, ``annotations_csv``,
        ``available_tasks``; skipped entries ``{dataset, reason}``; the last two list dataset names
        having only annotations or only predictions.
    """
    predictions = discover_predictions(embeddings_dir, model_name, version)
    annotations_root = Path(annotations_dir)
    annotated = {p.name for p in annotations_root.iterdir() if p.is_dir()} if annotations_root.is_dir() else set()
    registry, skipped = [], []
    for dataset, predictions_dir in predictions.items():
        csv = find_annotation_csv(annotations_dir, dataset)
        if csv is None:
            skipped.append({"dataset": dataset, "reason": "No annotation CSV"})
            continue
        zarrs = find_channel_zarrs(predictions_dir)
        if not zarrs:
            skipped.append({"dataset": dataset, "reason": "No channel zarrs"})
            continue
        tasks = get_available_tasks(csv)
        if not tasks:
            skipped.append({"dataset": dataset, "reason": "No valid task columns in CSV"})
            continue
        registry.append(
            {
                "dataset": dataset,
                "predictions_dir": predictions_dir,
                "channel_zarrs": zarrs,
                "annotations_csv": csv,
                "available_tasks": tasks,
            }
        )
    annotations_only = [d for d in _natsorted(annotated) if d not in predictions]
    predictions_only = [d for d in predictions if d not in annotated]
    return registry, skipped, annotations_only, predictions_only


def print_registry_summary(
    registry: list[dict], skipped: list[dict], annotations_only: list[str], predictions_only: list[str]
) -> str:
    """Print (and return) the markdown tables "## Dataset Registry" and "## Gaps"."""
    from viscy_utils.cli_utils import format_markdown_table

    rows = [
        {
            "Dataset": entry["dataset"],
            "Annotations": Path(entry["annotations_csv"]).name,
            "Channels": ", ".join(entry["channel_zarrs"]),
            "Tasks": ", ".join(entry["available_tasks"]),
        }
        for entry in registry
    ]
    gaps = [{"Dataset": s["dataset"], "Status": s["reason"]} for s in skipped]
    gaps += [{"Dataset": d, "Status": "Annotations only (no predictions)"} for d in annotations_only]
    gaps += [{"Dataset": d, "Status": "Predictions only (no annotations)"} for d in predictions_only]
    headers = ["Dataset", "Annotations", "Channels", "Tasks"]
    text = format_markdown_table(rows, title="Dataset Registry", headers=headers)
    text += "\n" + format_markdown_table(gaps, title="Gaps", headers=["Dataset", "Status"])
    print(text)
    return text


def registry_options(function):
    """Click options shared by the commands that build a registry."""
    options = [
        click.option("--embeddings-dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path)),
        click.option("--annotations-dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path)),
        click.option("--model-name", required=True, help="Model folder name (glob patterns allowed)."),
        click.option("--version", "model_version", required=True, help="Model version folder, e.g. v1."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


@click.command(name="discover-datasets")
@registry_options
def main(embeddings_dir: Path, annotations_dir: Path, model_name: str, model_version: str) -> None:
    """List datasets with embeddings and annotations, and the gaps."""
    print_registry_summary(*build_registry(embeddings_dir, annotations_dir, model_name, model_version))
