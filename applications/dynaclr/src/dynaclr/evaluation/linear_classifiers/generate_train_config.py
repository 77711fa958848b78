"""``dynaclr generate-train-config``: one linear-classifier training YAML per (task, channel)."""

from __future__ import annotations

from pathlib import Path

import click
import yaml

from dynaclr.evaluation.linear_classifiers.dataset_discovery import (
    CHANNELS,
    TASKS,
    build_registry,
    print_registry_summary,
    registry_options,
)

__all__ = ["generate_train_configs", "main"]


def generate_train_configs(
    registry: list[dict],
    output_dir: str | Path,
    model_name: str,
    version: str,
    wandb_project: str,
    wandb_entity: str | None = None,
) -> list[Path]:
    """Write ``<output_dir>/<task>_<channel>.yaml`` for every (task, channel) present in the registry.

    Parameters
    ----------
    registry : list of dict
        Entries of :func:`~dynaclr.evaluation.linear_classifiers.dataset_discovery.build_registry`.
    output_dir : str or Path
        Folder for the YAML files (created).
    model_name, version : str
        Embedding model; ``embedding_model`` = ``model_name`` without ``*`` + ``-<version>``.
    wandb_project, wandb_entity : str
        Where the trained classifiers are logged.

    Returns
    -------
    list of Path
        The files written.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for task in TASKS:
        for channel in CHANNELS:
            datasets = [
                {"embeddings": str(entry["channel_zarrs"][channel]), "annotations": str(entry["annotations_csv"])}
                for entry in registry
                if task in entry["available_tasks"] and channel in entry["channel_zarrs"]
            ]
            if not datasets:
                continue
            config = {
                "task": task,
                "input_channel": channel,
                "embedding_model": f"{model_name.replace('*', '')}-{version}",
                "train_datasets": datasets,
                "use_scaling": True,
                "use_pca": False,
                "n_pca_components": None,
                "max_iter": 1000,
                "class_weight": "balanced",
                "solver": "liblinear",
                "split_train_data": 0.8,
                "random_seed": 42,
                "wandb_project": wandb_project,
                "wandb_entity": wandb_entity,
                "wandb_tags": [task, channel],
            }
            path = output_dir / f"{task}_{channel}.yaml"
            path.write_text(yaml.safe_dump(config, sort_keys=False))
            written.append(path)
    return written


@click.command(name="generate-train-config")
@registry_options
@click.option("-o", "--output-dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--wandb-project", required=True)
@click.option("--wandb-entity", default=None)
def main(
    embeddings_dir: Path,
    annotations_dir: Path,
    model_name: str,
    model_version: str,
    output_dir: Path,
    wandb_project: str,
    wandb_entity: str | None,
) -> None:
    """Write one linear-classifier training config per task and channel."""
    found = build_registry(embeddings_dir, annotations_dir, model_name, model_version)
    print_registry_summary(*found)
    for path in generate_train_configs(found[0], output_dir, model_name, model_version, wandb_project, wandb_entity):
        click.echo(f"Wrote {path}")
