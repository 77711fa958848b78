"""Linear classifiers on embeddings: train, evaluate, save (locally or to W&B), load and apply.

Preprocessing (standardisation, PCA) is fitted on the training split only, so validation metrics
are not inflated by information from the validation cells.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from viscy_utils.evaluation._inputs import to_dense
from viscy_utils.evaluation._optional import require
from viscy_utils.evaluation.annotation import load_annotation_anndata

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = [
    "LinearClassifierPipeline",
    "load_and_combine_datasets",
    "load_pipeline",
    "load_pipeline_from_wandb",
    "model_name_from_config",
    "predict_with_classifier",
    "save_pipeline",
    "save_pipeline_to_wandb",
    "train_linear_classifier",
]

#: label that marks cells annotators could not classify; dropped from training data
UNKNOWN_LABEL = "unknown"


class LinearClassifierPipeline:
    """A fitted classifier with its optional scaler and PCA.

    Parameters
    ----------
    classifier : sklearn.linear_model.LogisticRegression
        Fitted classifier.
    scaler : sklearn.preprocessing.StandardScaler or None
        Fitted scaler applied first.
    pca : sklearn.decomposition.PCA or None
        Fitted PCA applied after the scaler.
    config : dict
        Training configuration (task, use_scaling, use_pca, n_pca_components, classifier_params,
        split_train_data, random_seed, ...).
    task : str
        Annotation column the classifier predicts.
    """

    def __init__(self, classifier: Any, scaler: Any, pca: Any, config: dict, task: str):
        self.classifier = classifier
        self.scaler = scaler
        self.pca = pca
        self.config = config
        self.task = task

    @property
    def classes_(self) -> np.ndarray:
        """Class labels in the column order of :meth:`predict_proba`."""
        return self.classifier.classes_

    def transform(self, X: np.ndarray) -> np.ndarray:  # noqa: N803 (sklearn convention)
        """Apply the scaler then the PCA (each when present)."""
        X = to_dense(X)  # noqa: N806
        if self.scaler is not None:
            X = self.scaler.transform(X)  # noqa: N806
        if self.pca is not None:
            X = self.pca.transform(X)  # noqa: N806
        return X

    def predict(self, X: np.ndarray) -> np.ndarray:  # noqa: N803
        """Predict class labels of embeddings ``X`` (n_samples, n_features)."""
        return self.classifier.predict(self.transform(X))

    def predict_proba(self, X: np.ndarray) -> np.ndarray:  # noqa: N803
        """Predict class probabilities, shape (n_samples, n_classes)."""
        return self.classifier.predict_proba(self.transform(X))


def _well_mask(fov_names: pd.Series, include_wells: list[str] | None) -> np.ndarray:
    """Rows whose FOV (``row/col/fov``) lies in one of ``include_wells`` (``row/col``); all when None."""
    if include_wells is None:
        return np.ones(len(fov_names), dtype=bool)
    prefixes = tuple(f"{well.strip('/')}/" for well in include_wells)
    return fov_names.astype(str).str.strip("/").str.startswith(prefixes).to_numpy()


def load_and_combine_datasets(datasets: list[dict], task: str) -> AnnData:
    """Load annotated embeddings of several datasets into one AnnData.

    Parameters
    ----------
    datasets : list of dict
        Entries with ``embeddings`` (AnnData zarr path), ``annotations`` (CSV path) and optional
        ``include_wells`` (list of ``"A/1"``-style wells).
    task : str
        Annotation column; rows labelled ``"unknown"`` or missing are dropped. A dataset whose CSV
        lacks the column is skipped with a message.

    Returns
    -------
    AnnData
        The single dataset, or the outer concatenation of several.
    """
    anndata = require("anndata", "anndata", "load_and_combine_datasets")
    loaded = []
    for i, dataset in enumerate(datasets):
        adata = anndata.read_zarr(dataset["embeddings"])
        try:
            load_annotation_anndata(adata, str(dataset["annotations"]), task)
        except KeyError as err:
            print(f"Skipping dataset {i} ({dataset['embeddings']}): {err}")
            continue
        keep = _well_mask(adata.obs["fov_name"], dataset.get("include_wells"))
        labels = adata.obs[task]
        keep = keep & labels.notna().to_numpy() & (labels.astype(str) != UNKNOWN_LABEL).to_numpy()
        adata = adata[keep].copy()
        if adata.n_obs == 0:
            print(f"Skipping dataset {i} ({dataset['embeddings']}): no annotated cells for {task!r}")
            continue
        counts = adata.obs[task].value_counts().to_dict()
        print(f"Dataset {i} ({dataset['embeddings']}): {adata.n_obs} cells, classes {counts}")
        loaded.append(adata)
    if not loaded:
        raise ValueError("No training data loaded from any dataset!")
    if len(loaded) == 1:
        return loaded[0]
    return anndata.concat(loaded, join="outer", index_unique="-")


def _report_metrics(y_true: np.ndarray, y_pred: np.ndarray, prefix: str) -> dict[str, float]:
    metrics = require("sklearn.metrics", "eval", "train_linear_classifier")
    report = metrics.classification_report(y_true, y_pred, output_dict=True, zero_division=0)
    out = {f"{prefix}_accuracy": float(metrics.accuracy_score(y_true, y_pred))}
    for name in ("precision", "recall", "f1"):
        out[f"{prefix}_weighted_{name}"] = float(report["weighted avg"][f"{name}-score" if name == "f1" else name])
    for cls in np.unique(y_true):
        for name in ("precision", "recall", "f1"):
            out[f"{prefix}_{cls}_{name}"] = float(report[str(cls)][f"{name}-score" if name == "f1" else name])
    return out


def train_linear_classifier(
    adata: AnnData,
    task: str,
    use_scaling: bool = True,
    use_pca: bool = False,
    n_pca_components: int | None = None,
    classifier_params: dict | None = None,
    split_train_data: float = 0.8,
    random_seed: int = 42,
) -> tuple[LinearClassifierPipeline, dict[str, float]]:
    """Train a logistic-regression classifier on embeddings ``adata.X`` against ``adata.obs[task]``.

    Parameters
    ----------
    adata : AnnData
        Embeddings with labels in ``obs[task]``.
    task : str
        Label column.
    use_scaling : bool
        Standardise features (fitted on the training split).
    use_pca : bool
        Reduce to ``n_pca_components`` with PCA (fitted on the training split).
    n_pca_components : int, optional
        PCA size; required when ``use_pca``.
    classifier_params : dict, optional
        ``LogisticRegression`` arguments (e.g. ``max_iter``, ``class_weight``, ``solver``).
    split_train_data : float
        Training fraction of a stratified split; 1.0 trains on all cells (no validation metrics).
    random_seed : int
        Seed of the split.

    Returns
    -------
    tuple
        The pipeline and metrics: ``train_accuracy``, ``train_weighted_{precision,recall,f1}``,
        ``train_<class>_{precision,recall,f1}`` and the same with ``val_`` when there is a split.
    """
    linear_model = require("sklearn.linear_model", "eval", "train_linear_classifier")
    model_selection = require("sklearn.model_selection", "eval", "train_linear_classifier")
    if task not in adata.obs.columns:
        raise KeyError(f"adata.obs has no label column {task!r} (columns: {list(adata.obs.columns)})")
    if use_pca and not n_pca_components:
        raise ValueError("n_pca_components must be specified when use_pca=True")
    if not 0 < split_train_data <= 1:
        raise ValueError(f"split_train_data must be in (0, 1], got {split_train_data}")
    X = to_dense(adata.X)  # noqa: N806
    y = adata.obs[task].astype(str).to_numpy()
    if split_train_data < 1:
        X_train, X_val, y_train, y_val = model_selection.train_test_split(  # noqa: N806
            X, y, train_size=split_train_data, random_state=random_seed, stratify=y
        )
    else:
        X_train, X_val, y_train, y_val = X, None, y, None  # noqa: N806
    scaler = pca = None
    if use_scaling:
        scaler = require("sklearn.preprocessing", "eval").StandardScaler().fit(X_train)
    if use_pca:
        decomposition = require("sklearn.decomposition", "eval")
        pca = decomposition.PCA(n_components=n_pca_components, random_state=random_seed)
        pca.fit(scaler.transform(X_train) if scaler is not None else X_train)
    config = {
        "task": task,
        "use_scaling": use_scaling,
        "use_pca": use_pca,
        "n_pca_components": n_pca_components,
        "classifier_params": dict(classifier_params or {}),
        "split_train_data": split_train_data,
        "random_seed": random_seed,
    }
    pipeline = LinearClassifierPipeline(None, scaler, pca, config, task)
    pipeline.classifier = linear_model.LogisticRegression(**config["classifier_params"])
    if config["classifier_params"].get("solver") == "liblinear" and len(np.unique(y_train)) > 2:
        # liblinear is binary; it used to do one-vs-rest implicitly, recent scikit-learn requires the wrapper
        multiclass = require("sklearn.multiclass", "eval", "train_linear_classifier")
        pipeline.classifier = multiclass.OneVsRestClassifier(pipeline.classifier)
    pipeline.classifier.fit(pipeline.transform(X_train), y_train)
    metrics = _report_metrics(y_train, pipeline.predict(X_train), "train")
    if X_val is not None:
        metrics |= _report_metrics(y_val, pipeline.predict(X_val), "val")
    return pipeline, metrics


def predict_with_classifier(
    adata: AnnData,
    pipeline: LinearClassifierPipeline,
    task: str,
    artifact_metadata: dict | None = None,
    include_wells: list[str] | None = None,
) -> AnnData:
    """Classify embeddings and store the predictions in ``adata`` (modified in place).

    Parameters
    ----------
    adata : AnnData
        Embeddings (``X``) with ``obs["fov_name"]`` when ``include_wells`` is given.
    pipeline : LinearClassifierPipeline
        Trained pipeline.
    task : str
        Name used for the outputs: ``obs["predicted_<task>"]`` (NaN outside the wells),
        ``obsm["predicted_<task>_proba"]`` (NaN rows outside the wells) and
        ``uns["predicted_<task>_classes"]``.
    artifact_metadata : dict, optional
        ``artifact_name``, ``artifact_id``, ``artifact_version``, stored in
        ``uns["classifier_<task>_artifact" | "_id" | "_version"]``.
    include_wells : list of str, optional
        Only classify cells of these wells (``"A/1"``).

    Returns
    -------
    AnnData
        ``adata``.
    """
    mask = _well_mask(adata.obs["fov_name"], include_wells) if include_wells is not None else None
    rows = np.flatnonzero(mask) if mask is not None else np.arange(adata.n_obs)
    classes = list(pipeline.classes_)
    predictions = np.full(adata.n_obs, np.nan, dtype=object)
    probabilities = np.full((adata.n_obs, len(classes)), np.nan)
    if rows.size:
        X = to_dense(adata.X[rows])  # noqa: N806
        probabilities[rows] = pipeline.predict_proba(X)
        predictions[rows] = np.asarray(classes, dtype=object)[probabilities[rows].argmax(axis=1)]
    adata.obs[f"predicted_{task}"] = predictions
    adata.obsm[f"predicted_{task}_proba"] = probabilities
    adata.uns[f"predicted_{task}_classes"] = [str(c) for c in classes]
    if artifact_metadata is not None:
        adata.uns[f"classifier_{task}_artifact"] = artifact_metadata.get("artifact_name")
        adata.uns[f"classifier_{task}_id"] = artifact_metadata.get("artifact_id")
        adata.uns[f"classifier_{task}_version"] = artifact_metadata.get("artifact_version")
    return adata


def model_name_from_config(config: dict) -> str:
    """Return ``linear-classifier-<task>-<input_channel>[-<marker>][-pca<n>]`` for a training config."""
    name = f"linear-classifier-{config['task']}-{config['input_channel']}"
    if config.get("marker"):
        name += f"-{config['marker']}"
    if config.get("use_pca") and config.get("n_pca_components"):
        name += f"-pca{config['n_pca_components']}"
    return name


def save_pipeline(
    pipeline: LinearClassifierPipeline, directory: str | Path, model_name: str, config: dict
) -> list[Path]:
    """Write ``<name>.joblib``, ``<name>_config.json`` and optional ``_scaler``/``_pca`` joblib files.

    Returns
    -------
    list of Path
        The files written.
    """
    joblib = require("joblib", "eval", "save_pipeline")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    files = [directory / f"{model_name}.joblib", directory / f"{model_name}_config.json"]
    joblib.dump(pipeline.classifier, files[0])
    files[1].write_text(json.dumps({**pipeline.config, **config}, indent=2, default=str))
    for part in ("scaler", "pca"):
        if getattr(pipeline, part) is not None:
            files.append(directory / f"{model_name}_{part}.joblib")
            joblib.dump(getattr(pipeline, part), files[-1])
    return files


def load_pipeline(directory: str | Path, model_name: str) -> tuple[LinearClassifierPipeline, dict]:
    """Read a pipeline written by :func:`save_pipeline`; return it and its configuration."""
    joblib = require("joblib", "eval", "load_pipeline")
    directory = Path(directory)
    classifier_path = directory / f"{model_name}.joblib"
    if not classifier_path.exists():
        raise FileNotFoundError(f"No classifier {classifier_path.name} in {directory}")
    config = json.loads((directory / f"{model_name}_config.json").read_text())
    parts = {}
    for part in ("scaler", "pca"):
        path = directory / f"{model_name}_{part}.joblib"
        parts[part] = joblib.load(path) if path.exists() else None
    pipeline = LinearClassifierPipeline(
        joblib.load(classifier_path), parts["scaler"], parts["pca"], config, config["task"]
    )
    return pipeline, config


def save_pipeline_to_wandb(
    pipeline: LinearClassifierPipeline,
    metrics: dict,
    config: dict,
    wandb_project: str,
    wandb_entity: str | None = None,
    tags: list[str] | None = None,
) -> str:
    """Log the pipeline as a W&B ``model`` artifact and the metrics to the run summary.

    Parameters
    ----------
    pipeline : LinearClassifierPipeline
        Trained pipeline.
    metrics : dict
        Metrics written to the run summary.
    config : dict
        Full training configuration (``task``, ``input_channel``, optional ``marker``, ``use_pca``,
        ``n_pca_components``...), logged with the run and saved next to the model.
    wandb_project, wandb_entity, tags
        W&B destination and run tags.

    Returns
    -------
    str
        The model (artifact) name, ``linear-classifier-<task>-<channel>[-<marker>][-pca<n>]``.
    """
    wandb = require("wandb", "eval", "save_pipeline_to_wandb")
    model_name = model_name_from_config(config)
    job_type = f"linear-classifier-{config['task']}-{config['input_channel']}"
    if config.get("marker"):
        job_type += f"-{config['marker']}"
    run = wandb.init(
        project=wandb_project,
        entity=wandb_entity,
        job_type=job_type,
        name=model_name,
        group=model_name,
        config=config,
        tags=tags or [],
    )
    try:
        run.summary.update(metrics)
        artifact = wandb.Artifact(model_name, type="model")
        with tempfile.TemporaryDirectory() as tmp:
            for path in save_pipeline(pipeline, tmp, model_name, config):
                artifact.add_file(str(path))
            run.log_artifact(artifact)
            artifact.wait()
        run.summary["artifact_version"] = artifact.version
        run.name = f"{model_name}-{artifact.version}"
    finally:
        run.finish()
    return model_name


def load_pipeline_from_wandb(
    wandb_project: str, model_name: str, version: str = "latest", wandb_entity: str | None = None
) -> tuple[LinearClassifierPipeline, dict, dict]:
    """Download a pipeline logged by :func:`save_pipeline_to_wandb`.

    Returns
    -------
    tuple
        ``(pipeline, config, artifact_metadata)``; the metadata has ``artifact_name``
        (``<model_name>:<resolved version>``), ``artifact_id`` and ``artifact_version``.
    """
    wandb = require("wandb", "eval", "load_pipeline_from_wandb")
    run = wandb.init(project=wandb_project, entity=wandb_entity, job_type="inference")
    try:
        artifact = run.use_artifact(f"{model_name}:{version}")
        directory = artifact.download()
        pipeline, config = load_pipeline(directory, model_name)
    finally:
        run.finish()
    metadata = {
        "artifact_name": f"{model_name}:{artifact.version}",
        "artifact_id": artifact.id,
        "artifact_version": artifact.version,
    }
    return pipeline, config, metadata
