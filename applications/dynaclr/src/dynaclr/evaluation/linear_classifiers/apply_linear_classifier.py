"""``dynaclr apply-linear-classifier -c config.yaml``: add a trained classifier's predictions to embeddings."""

from __future__ import annotations

import shutil
from pathlib import Path

import click

from dynaclr.evaluation import require_extra
from dynaclr.evaluation.linear_classifiers._config import load_validated_config

require_extra("anndata", "sklearn", "pydantic", "wandb", "joblib")

__all__ = ["main", "prediction_summary"]


def prediction_summary(adata, task_key: str, metadata: dict | None) -> str:
    """Markdown summary: class counts, totals and the classifier provenance."""
    from viscy_utils.cli_utils import format_markdown_table

    predicted = adata.obs[f"predicted_{task_key}"]
    counts = predicted.dropna().value_counts()
    rows = [{"Class": str(label), "Count": int(count)} for label, count in counts.items()]
    lines = [
        "## Prediction Summary",
        "",
        format_markdown_table(rows, headers=["Class", "Count"]),
        f"Total predicted: {int(predicted.notna().sum())} of {adata.n_obs}",
        f"Probabilities shape: {adata.obsm[f'predicted_{task_key}_proba'].shape}",
        f"Classes: {list(adata.uns[f'predicted_{task_key}_classes'])}",
        "",
    ]
    if metadata:
        provenance = [
            {"Key": "Artifact", "Value": metadata.get("artifact_name")},
            {"Key": "Artifact ID", "Value": metadata.get("artifact_id")},
            {"Key": "Artifact Version", "Value": metadata.get("artifact_version")},
        ]
        lines.append(format_markdown_table(provenance, title="Classifier Provenance", headers=["Key", "Value"]))
    return "\n".join(lines)


@click.command(name="apply-linear-classifier")
@click.option(
    "-c",
    "--config",
    "config_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Inference YAML (LinearClassifierInferenceConfig schema).",
)
@click.option(
    "--local-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Load the classifier 'model_name' from this folder (written by --local-dir at training) instead of W&B.",
)
def main(config_path: Path, local_dir: Path | None) -> None:
    """Apply a trained linear classifier to new embeddings."""
    import anndata

    from viscy_utils.evaluation.linear_classifier import (
        load_pipeline,
        load_pipeline_from_wandb,
        predict_with_classifier,
    )
    from viscy_utils.evaluation.linear_classifier_config import LinearClassifierInferenceConfig

    config = load_validated_config(LinearClassifierInferenceConfig, config_path)
    output = Path(config.output_path or config.embeddings_path)
    try:
        if local_dir is not None:
            pipeline, trained = load_pipeline(local_dir, config.model_name)
            metadata = {"artifact_name": config.model_name, "artifact_id": str(local_dir), "artifact_version": "local"}
        else:
            pipeline, trained, metadata = load_pipeline_from_wandb(
                config.wandb_project, config.model_name, config.version, config.wandb_entity
            )
        task_key = f"{trained['task']}_{trained['marker']}" if trained.get("marker") else trained["task"]
        adata = anndata.read_zarr(config.embeddings_path)
        predict_with_classifier(adata, pipeline, task_key, metadata, config.include_wells)
        output.parent.mkdir(parents=True, exist_ok=True)
        if output.exists():  # in place, or overwrite=true validated by the config
            shutil.rmtree(output)
        adata.write_zarr(output)
    except Exception as err:
        click.echo(f"Prediction failed: {err}", err=True)
        raise click.Abort() from err
    click.echo(prediction_summary(adata, task_key, metadata))
    click.echo(f"Wrote {output}")
