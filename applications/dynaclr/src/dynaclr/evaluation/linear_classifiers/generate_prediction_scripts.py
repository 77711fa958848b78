"""``dynaclr generate-prediction-scripts``: predict configs and SLURM scripts for annotated datasets lacking embeddings.

The configs of a *reference* dataset (``predict_<channel>.yml`` / ``.sh`` in its prediction folder)
are copied with the dataset name replaced and the ``ckpt_path:`` line pointed at one checkpoint.
"""

from __future__ import annotations

import re
from pathlib import Path

import click

from dynaclr.evaluation.linear_classifiers.dataset_discovery import (
    _natsorted,
    build_registry,
    discover_predictions,
    registry_options,
)

__all__ = ["generate_prediction_scripts", "main"]

_CKPT_LINE = re.compile(r"^(\s*)ckpt_path:.*$", re.MULTILINE)


def _first(root: Path, pattern: str) -> Path | None:
    matches = _natsorted(root.glob(pattern))
    return matches[0] if matches else None


def generate_prediction_scripts(
    embeddings_dir: str | Path,
    datasets: list[str],
    reference_dir: str | Path,
    reference_dataset: str,
    ckpt_path: str,
    version: str,
) -> tuple[list[Path], list[dict]]:
    """Write prediction configs/scripts for ``datasets`` from a reference dataset's prediction folder.

    Parameters
    ----------
    embeddings_dir : str or Path
        Root holding one folder per dataset.
    datasets : list of str
        Datasets to prepare (usually the annotation-only ones of ``build_registry``).
    reference_dir : str or Path
        Prediction folder of the reference dataset holding ``predict_*.yml`` and ``predict_*.sh``.
    reference_dataset : str
        Name of the reference dataset (replaced by each dataset's name in the copies).
    ckpt_path : str
        Checkpoint written into every ``ckpt_path:`` line.
    version : str
        Version folder name under the model folder.

    Returns
    -------
    tuple
        ``(folders written, skipped [{dataset, reason}])``. A dataset is skipped when it has no
        ``train-test/<dataset>*.zarr``, no ``1-preprocess/label-free/3-track/<dataset>*cropped.zarr``
        or no ``*phenotyping*`` folder.
    """
    root, reference_dir = Path(embeddings_dir), Path(reference_dir)
    templates = _natsorted([*reference_dir.glob("predict_*.yml"), *reference_dir.glob("predict_*.sh")])
    if not templates:
        raise FileNotFoundError(f"No predict_*.yml/.sh templates in reference folder {reference_dir}")
    model_dir = reference_dir.parent.name
    written, skipped = [], []
    for dataset in datasets:
        base = root / dataset
        checks = (
            (f"**/train-test/{dataset}*.zarr", "No train-test zarr"),
            (f"**/1-preprocess/label-free/3-track/{dataset}*cropped.zarr", "No cropped tracking zarr"),
            ("*phenotyping*", "No phenotyping folder"),
        )
        reason = next((why for pattern, why in checks if _first(base, pattern) is None), None)
        if reason is not None:
            skipped.append({"dataset": dataset, "reason": reason})
            continue
        phenotyping = _first(base, "*phenotyping*")
        prediction = _first(phenotyping, "*prediction*") or phenotyping / "predictions"
        target = prediction / model_dir / version
        (target / "slurm_out").mkdir(parents=True, exist_ok=True)
        scripts = []
        for template in templates:
            text = template.read_text().replace(reference_dataset, dataset)
            text = _CKPT_LINE.sub(lambda m: f"{m.group(1)}ckpt_path: {ckpt_path}", text)
            out = target / template.name
            out.write_text(text)
            out.chmod(0o755)
            if out.suffix == ".sh":
                scripts.append(out.name)
        run_all = target / "run_all.sh"
        run_all.write_text('#!/bin/bash\ncd "$(dirname "$0")"\n' + "".join(f"sbatch {name}\n" for name in scripts))
        run_all.chmod(0o755)
        written.append(target)
    return written, skipped


@click.command(name="generate-prediction-scripts")
@registry_options
@click.option("--reference-dataset", required=True, help="Dataset whose predict_*.yml/.sh are copied.")
@click.option("--ckpt-path", required=True, help="Checkpoint written into the copied configs.")
def main(
    embeddings_dir: Path,
    annotations_dir: Path,
    model_name: str,
    model_version: str,
    reference_dataset: str,
    ckpt_path: str,
) -> None:
    """Write predict configs/SLURM scripts for annotated datasets lacking embeddings."""
    references = discover_predictions(embeddings_dir, model_name, model_version)
    if reference_dataset not in references:
        raise click.BadParameter(
            f"no predictions of {model_name}/{model_version} for {reference_dataset!r} (found: {sorted(references)})",
            param_hint="--reference-dataset",
        )
    _, _, annotations_only, _ = build_registry(embeddings_dir, annotations_dir, model_name, model_version)
    written, skipped = generate_prediction_scripts(
        embeddings_dir, annotations_only, references[reference_dataset], reference_dataset, ckpt_path, model_version
    )
    for target in written:
        click.echo(f"Wrote {target}")
    for entry in skipped:
        click.echo(f"Skipped {entry['dataset']}: {entry['reason']}")
