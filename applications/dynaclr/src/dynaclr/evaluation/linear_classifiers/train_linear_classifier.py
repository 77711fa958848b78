"""``dynaclr train-linear-classifier -c config.yaml``: fit a linear classifier on annotated embeddings."""

from __future__ import annotations

from pathlib import Path

import click

from dynaclr.evaluation import require_extra
from dynaclr.evaluation.linear_classifiers._config import load_validated_config

require_extra("anndata", "sklearn", "pydantic", "wandb", "joblib")

__all__ = ["main", "metrics_tables"]


def metrics_tables(metrics: dict[str, float]) -> str:
    """Markdown section of training/validation metrics (``train_``/``val_`` prefixes stripped)."""
    from viscy_utils.cli_utils import format_markdown_table

    lines = ["## Classification Metrics", ""]
    for prefix, title in (("train_", "### Training Set"), ("val_", "### Validation Set")):
        section = {k.removeprefix(prefix): v for k, v in metrics.items() if k.startswith(prefix)}
        if section:
            lines += [title, "", format_markdown_table(section)]
    return "\n".join(lines)


@click.command(name="train-linear-classifier")
@click.option(
    "-c",
    "--config",
    "config_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Training YAML (LinearClassifierTrainConfig schema).",
)
@click.option(
    "--local-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Save the classifier files into this folder instead of logging them to Weights & Biases.",
)
def main(config_path: Path, local_dir: Path | None) -> None:
    """Train a linear classifier on cell embeddings and log it to W&B (or save it locally)."""
    from viscy_utils.cli_utils import format_markdown_table
    from viscy_utils.evaluation.linear_classifier import (
        load_and_combine_datasets,
        model_name_from_config,
        save_pipeline,
        save_pipeline_to_wandb,
        train_linear_classifier,
    )
    from viscy_utils.evaluation.linear_classifier_config import LinearClassifierTrainConfig

    config = load_validated_config(LinearClassifierTrainConfig, config_path)
    summary = {
        "task": config.task,
        "input_channel": config.input_channel,
        "marker": config.marker or "-",
        "embedding_model": config.embedding_model,
        "datasets": len(config.train_datasets),
        "use_scaling": config.use_scaling,
        "use_pca": config.use_pca,
        "split_train_data": config.split_train_data,
    }
    click.echo(format_markdown_table(summary, title="Linear Classifier Training"))
    try:
        adata = load_and_combine_datasets(config.train_datasets, config.task)
        pipeline, metrics = train_linear_classifier(
            adata,
            config.task,
            use_scaling=config.use_scaling,
            use_pca=config.use_pca,
            n_pca_components=config.n_pca_components,
            classifier_params={
                "max_iter": config.max_iter,
                "class_weight": config.class_weight,
                "solver": config.solver,
                "random_state": config.random_seed,
            },
            split_train_data=config.split_train_data,
            random_seed=config.random_seed,
        )
        click.echo(metrics_tables(metrics))
        full_config = config.model_dump()
        if local_dir is not None:
            name = model_name_from_config(full_config)
            files = save_pipeline(pipeline, local_dir, name, full_config)
            click.echo(f"Saved {name} to {local_dir} ({len(files)} files)")
        else:
            name = save_pipeline_to_wandb(
                pipeline,
                metrics,
                config=full_config,
                wandb_project=config.wandb_project,
                wandb_entity=config.wandb_entity,
                tags=config.wandb_tags,
            )
            click.echo(f"Logged {name} to W&B project {config.wandb_project}")
    except Exception as err:
        click.echo(f"Training failed: {err}", err=True)
        raise click.Abort() from err
