import sys
import types

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from viscy_utils.evaluation.linear_classifier import (
    LinearClassifierPipeline,
    load_and_combine_datasets,
    load_pipeline,
    load_pipeline_from_wandb,
    model_name_from_config,
    predict_with_classifier,
    save_pipeline,
    save_pipeline_to_wandb,
    train_linear_classifier,
)
from viscy_utils.evaluation.linear_classifier_config import (
    LinearClassifierInferenceConfig,
    LinearClassifierTrainConfig,
)

CLASSES = np.array(["alive", "dead", "dividing"])


def _embeddings(n=90, dim=16, seed=0, wells=("A/1", "B/2")):
    """Three linearly separable classes; cell ids unique per FOV."""
    rng = np.random.default_rng(seed)
    labels = CLASSES[np.arange(n) % 3]
    centres = rng.normal(0, 1, size=(3, dim)) * 6
    x = centres[np.arange(n) % 3] + rng.normal(size=(n, dim))
    obs = pd.DataFrame(
        {"fov_name": [f"{wells[i % len(wells)]}/0" for i in range(n)], "id": np.arange(n), "t": 0, "track_id": 0}
    )
    obs.index = obs.index.astype(str)
    return ad.AnnData(X=x.astype(np.float32), obs=obs), labels


def _write_dataset(tmp_path, name, seed, unknown=0):
    adata, labels = _embeddings(seed=seed)
    labels = labels.astype(object)
    labels[:unknown] = "unknown"
    path = tmp_path / f"{name}.zarr"
    adata.write_zarr(path)
    csv = tmp_path / f"{name}.csv"
    pd.DataFrame(
        {"fov_name": "/" + adata.obs["fov_name"].astype(str), "id": adata.obs["id"], "cell_death_state": labels}
    ).to_csv(csv, index=False)
    return {"embeddings": str(path), "annotations": str(csv)}, labels


def test_train_save_load_apply(tmp_path):
    ds1, _ = _write_dataset(tmp_path, "d1", seed=0, unknown=6)
    ds2, _ = _write_dataset(tmp_path, "d2", seed=0)
    ds2["include_wells"] = ["A/1"]
    adata = load_and_combine_datasets([ds1, ds2], "cell_death_state")
    assert adata.n_obs == 84 + 45
    assert "unknown" not in set(adata.obs["cell_death_state"])
    assert adata.obs_names.is_unique

    pipeline, metrics = train_linear_classifier(
        adata,
        "cell_death_state",
        use_pca=True,
        n_pca_components=4,
        classifier_params={"max_iter": 200, "class_weight": "balanced", "solver": "liblinear"},
    )
    assert metrics["train_accuracy"] > 0.95 and metrics["val_accuracy"] > 0.95
    for prefix in ("train", "val"):
        for cls in CLASSES:
            assert f"{prefix}_{cls}_f1" in metrics
        assert f"{prefix}_weighted_precision" in metrics
    assert pipeline.pca.n_components_ == 4 and pipeline.config["n_pca_components"] == 4
    # preprocessing is fitted on the training split only (80 % of cells)
    assert pipeline.scaler.n_samples_seen_ == int(round(0.8 * adata.n_obs))

    config = {"task": "cell_death_state", "input_channel": "phase", "use_pca": True, "n_pca_components": 4}
    name = model_name_from_config(config)
    assert name == "linear-classifier-cell_death_state-phase-pca4"
    files = save_pipeline(pipeline, tmp_path / "model", name, config)
    assert {f.name for f in files} == {
        f"{name}.joblib",
        f"{name}_config.json",
        f"{name}_scaler.joblib",
        f"{name}_pca.joblib",
    }
    loaded, loaded_config = load_pipeline(tmp_path / "model", name)
    assert loaded_config["input_channel"] == "phase" and loaded.task == "cell_death_state"

    new, new_labels = _embeddings(seed=0)  # same classes, fresh noise
    new.X = new.X + np.random.default_rng(5).normal(scale=0.3, size=new.X.shape).astype(np.float32)
    out = predict_with_classifier(new, loaded, "cell_death_state", artifact_metadata={"artifact_name": "m:v0"})
    assert out is new
    assert np.mean(new.obs["predicted_cell_death_state"].to_numpy() == new_labels) > 0.95
    proba = new.obsm["predicted_cell_death_state_proba"]
    assert proba.shape == (90, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert new.uns["predicted_cell_death_state_classes"] == list(CLASSES)
    assert new.uns["classifier_cell_death_state_artifact"] == "m:v0"
    np.testing.assert_array_equal(loaded.predict(new.X), pipeline.predict(new.X))
    # predictions survive a zarr round trip
    new.write_zarr(tmp_path / "pred.zarr")
    back = ad.read_zarr(tmp_path / "pred.zarr")
    assert back.obsm["predicted_cell_death_state_proba"].shape == (90, 3)


def test_no_split_and_errors():
    adata, labels = _embeddings(n=30)
    adata.obs["state"] = labels
    pipeline, metrics = train_linear_classifier(adata, "state", split_train_data=1.0)
    assert isinstance(pipeline, LinearClassifierPipeline)
    assert metrics["train_accuracy"] == 1.0
    assert not any(k.startswith("val_") for k in metrics)
    assert pipeline.pca is None and pipeline.scaler is not None
    with pytest.raises(KeyError, match="'missing'"):
        train_linear_classifier(adata, "missing")
    with pytest.raises(ValueError, match="n_pca_components"):
        train_linear_classifier(adata, "state", use_pca=True)


def test_predict_include_wells_and_no_metadata():
    adata, labels = _embeddings(n=30)
    adata.obs["state"] = labels
    pipeline, _ = train_linear_classifier(adata, "state", split_train_data=1.0)
    adata.obs["fov_name"] = ["/A/1/0", "A/10/0", "B/2/0"] * 10  # "A/10" must not match well "A/1"
    predict_with_classifier(adata, pipeline, "organelle_state_g3bp1", include_wells=["A/1"])
    predicted = adata.obs["predicted_organelle_state_g3bp1"]
    inside = np.arange(30) % 3 == 0
    assert predicted[inside].notna().all() and predicted[~inside].isna().all()
    proba = adata.obsm["predicted_organelle_state_g3bp1_proba"]
    assert np.isfinite(proba[inside]).all() and np.isnan(proba[~inside]).all()
    assert "predicted_organelle_state_g3bp1_classes" in adata.uns
    assert not any(k.startswith("classifier_") for k in adata.uns)


def test_load_and_combine_skips_and_fails(tmp_path, capsys):
    ds, _ = _write_dataset(tmp_path, "d", seed=1)
    with pytest.raises(ValueError, match="No training data loaded from any dataset!"):
        load_and_combine_datasets([ds], "infection_state")
    assert "Skipping dataset 0" in capsys.readouterr().out
    one = load_and_combine_datasets([ds], "cell_death_state")
    assert one.n_obs == 90


def _fake_wandb(store):
    """A minimal stand-in for the wandb client recording what was logged, storing files on disk."""

    class Artifact:
        def __init__(self, name, type):
            self.name, self.type, self.files = name, type, []
            self.version, self.id = "v0", "artifact-id-0"

        def add_file(self, path):
            self.files.append(path)

        def wait(self):
            target = store / self.name
            target.mkdir(parents=True, exist_ok=True)
            for f in self.files:
                (target / f.split("/")[-1]).write_bytes(open(f, "rb").read())

        def download(self):
            return str(store / self.name)

    class Run:
        def __init__(self, **kwargs):
            self.kwargs, self.summary, self.name, self.finished = kwargs, {}, kwargs.get("name"), False
            store.runs.append(self)

        def log_artifact(self, artifact):
            self.artifact = artifact

        def use_artifact(self, ref):
            self.ref = ref
            artifact = Artifact(ref.split(":")[0], "model")
            return artifact

        def finish(self):
            self.finished = True

    module = types.ModuleType("wandb")
    module.init = lambda **kwargs: Run(**kwargs)
    module.Artifact = Artifact
    return module


def test_wandb_round_trip_with_fake_client(tmp_path, monkeypatch):
    class Store(type(tmp_path)):
        runs = []

    store = Store(tmp_path / "wandb")
    monkeypatch.setitem(sys.modules, "wandb", _fake_wandb(store))
    adata, labels = _embeddings(n=30)
    adata.obs["cell_death_state"] = labels
    pipeline, metrics = train_linear_classifier(adata, "cell_death_state", split_train_data=1.0)
    config = {"task": "cell_death_state", "input_channel": "organelle", "marker": "g3bp1", "use_pca": False}
    name = save_pipeline_to_wandb(pipeline, metrics, config, "proj", tags=["a"])
    assert name == "linear-classifier-cell_death_state-organelle-g3bp1"
    run = store.runs[0]
    assert run.kwargs["job_type"] == name and run.kwargs["tags"] == ["a"] and run.finished
    assert run.summary["train_accuracy"] == 1.0 and run.summary["artifact_version"] == "v0"
    assert run.name == f"{name}-v0"
    loaded, loaded_config, meta = load_pipeline_from_wandb("proj", name)
    assert store.runs[1].kwargs["job_type"] == "inference" and store.runs[1].ref == f"{name}:latest"
    assert meta == {"artifact_name": f"{name}:v0", "artifact_id": "artifact-id-0", "artifact_version": "v0"}
    assert loaded_config["marker"] == "g3bp1"
    np.testing.assert_array_equal(loaded.predict(adata.X), pipeline.predict(adata.X))


def test_wandb_missing_names_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(ImportError, match=r'pip install "viscy-utils\[eval\]"'):
        load_pipeline_from_wandb("p", "m")


def _train_kwargs(tmp_path, **over):
    emb = tmp_path / "e.zarr"
    emb.mkdir(exist_ok=True)
    csv = tmp_path / "a.csv"
    csv.write_text("fov_name,id\n")
    kwargs = {
        "task": "cell_death_state",
        "input_channel": "phase",
        "embedding_model": "dynaclr-v1",
        "train_datasets": [{"embeddings": str(emb), "annotations": str(csv), "include_wells": ["A/1"]}],
        "wandb_project": "proj",
    }
    return kwargs | over


def test_train_config_defaults_and_validation(tmp_path):
    cfg = LinearClassifierTrainConfig(**_train_kwargs(tmp_path))
    assert (cfg.use_scaling, cfg.use_pca, cfg.max_iter, cfg.class_weight, cfg.solver) == (
        True,
        False,
        1000,
        "balanced",
        "liblinear",
    )
    assert (cfg.split_train_data, cfg.random_seed, cfg.wandb_tags, cfg.marker) == (0.8, 42, [], None)
    assert LinearClassifierTrainConfig(**_train_kwargs(tmp_path, split_train_data=1.0)).split_train_data == 1.0
    bad = {
        "n_pca_components must be specified when use_pca=True": {"use_pca": True},
        "task": {"task": "mitosis"},
        "input_channel": {"input_channel": "dapi"},
        "embedding_model must be a non-empty": {"embedding_model": "  "},
        "wandb_project must be a non-empty": {"wandb_project": ""},
        "max_iter must be positive": {"max_iter": 0},
        "split_train_data": {"split_train_data": 0.0},
        "train_datasets": {"train_datasets": []},
        "Dataset 0 must have 'embeddings' and 'annotations' keys": {"train_datasets": [{"embeddings": "x"}]},
        "Dataset 0: Embeddings file not found: /nope.zarr": {
            "train_datasets": [{"embeddings": "/nope.zarr", "annotations": "/nope.csv"}]
        },
    }
    for message, override in bad.items():
        with pytest.raises(ValidationError, match=message):
            LinearClassifierTrainConfig(**_train_kwargs(tmp_path, **override))


def test_inference_config(tmp_path):
    emb = tmp_path / "e.zarr"
    emb.mkdir()
    cfg = LinearClassifierInferenceConfig(wandb_project="p", model_name="m", embeddings_path=str(emb))
    assert (cfg.version, cfg.output_path, cfg.include_wells, cfg.overwrite, cfg.wandb_entity) == (
        "latest",
        None,
        None,
        False,
        None,
    )
    cfg = LinearClassifierInferenceConfig(
        wandb_project="p", model_name="m", embeddings_path=str(emb), include_wells=["A/1", "B/2"]
    )
    assert cfg.include_wells == ["A/1", "B/2"]
    with pytest.raises(ValidationError, match="Output file already exists"):
        LinearClassifierInferenceConfig(
            wandb_project="p", model_name="m", embeddings_path=str(emb), output_path=str(emb)
        )
    assert LinearClassifierInferenceConfig(
        wandb_project="p", model_name="m", embeddings_path=str(emb), output_path=str(emb), overwrite=True
    ).overwrite
    with pytest.raises(ValidationError, match="Embeddings file not found"):
        LinearClassifierInferenceConfig(wandb_project="p", model_name="m", embeddings_path=str(tmp_path / "no"))
