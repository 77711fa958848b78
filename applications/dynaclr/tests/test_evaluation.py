import os

import anndata
import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from dynaclr.cli import dynaclr as dynaclr_group


def write_embeddings(path, n=60, seed=0, shift=3.0):
    rng = np.random.default_rng(seed)
    labels = np.array(["infected", "uninfected"])[np.arange(n) % 2]
    features = rng.normal(size=(n, 6)).astype(np.float32)
    features[:, 0] += np.where(labels == "infected", shift, -shift)
    obs = pd.DataFrame(
        {"fov_name": [f"{'A' if i < n // 2 else 'B'}/1/0" for i in range(n)], "id": np.arange(n), "t": 0}
    )
    obs.index = obs.index.astype(str)
    anndata.AnnData(X=features, obs=obs).write_zarr(path)
    annotations = obs[["fov_name", "id"]].assign(infection_state=labels)
    annotations.loc[0, "infection_state"] = "unknown"
    return labels, annotations


@pytest.fixture
def trained(tmp_path):
    labels, annotations = write_embeddings(tmp_path / "train.zarr")
    annotations.to_csv(tmp_path / "annotations.csv", index=False)
    config = {
        "task": "infection_state",
        "input_channel": "phase",
        "embedding_model": "tiny-v1",
        "train_datasets": [
            {"embeddings": str(tmp_path / "train.zarr"), "annotations": str(tmp_path / "annotations.csv")}
        ],
        "wandb_project": "offline",
    }
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(
        dynaclr_group,
        ["train-linear-classifier", "-c", str(tmp_path / "train.yaml"), "--local-dir", str(tmp_path / "m")],
    )
    assert result.exit_code == 0, result.output
    return tmp_path, result.output


def test_train_prints_metric_tables_and_saves(trained):
    tmp_path, output = trained
    assert "## Classification Metrics" in output
    assert "### Training Set" in output and "### Validation Set" in output
    assert "| Accuracy | 1.000 |" in output
    assert (tmp_path / "m" / "linear-classifier-infection_state-phase.joblib").exists()


def test_apply_writes_predictions_in_place_or_to_output(trained):
    tmp_path, _ = trained
    labels, _ = write_embeddings(tmp_path / "new.zarr", seed=1)
    config = {
        "wandb_project": "offline",
        "model_name": "linear-classifier-infection_state-phase",
        "embeddings_path": str(tmp_path / "new.zarr"),
        "output_path": str(tmp_path / "out" / "pred.zarr"),
        "include_wells": ["A/1"],
    }
    (tmp_path / "apply.yaml").write_text(yaml.safe_dump(config))
    args = ["apply-linear-classifier", "-c", str(tmp_path / "apply.yaml"), "--local-dir", str(tmp_path / "m")]
    result = CliRunner().invoke(dynaclr_group, args)
    assert result.exit_code == 0, result.output
    assert "## Prediction Summary" in result.output and "Classifier Provenance" in result.output
    adata = anndata.read_zarr(tmp_path / "out" / "pred.zarr")
    predicted = adata.obs["predicted_infection_state"]
    in_well = adata.obs["fov_name"].str.startswith("A/1/").to_numpy()
    assert predicted[~in_well].isna().all()
    assert (predicted[in_well].to_numpy() == labels[in_well]).mean() > 0.95
    assert adata.obsm["predicted_infection_state_proba"].shape == (60, 2)
    # without output_path the embeddings store itself is updated
    del config["output_path"]
    (tmp_path / "apply.yaml").write_text(yaml.safe_dump(config))
    assert CliRunner().invoke(dynaclr_group, args).exit_code == 0
    assert "predicted_infection_state" in anndata.read_zarr(tmp_path / "new.zarr").obs


def test_invalid_config_aborts_with_message(tmp_path):
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"task": "cell_shape", "wandb_project": "x"}))
    result = CliRunner().invoke(dynaclr_group, ["train-linear-classifier", "-c", str(tmp_path / "bad.yaml")])
    assert result.exit_code == 1
    assert "Invalid configuration" in result.output and "task" in result.output


def make_tree(root):
    emb, ann = root / "embeddings", root / "annotations"
    for dataset, channels in (("ds_1", ["phase", "sensor"]), ("ds_2", ["phase"]), ("ds_3", [])):
        version = emb / dataset / "4-phenotyping" / "predictions" / "model_x" / "v1"
        version.mkdir(parents=True)
        for channel in channels:
            anndata.AnnData(X=np.zeros((2, 3), np.float32)).write_zarr(version / f"{dataset}_{channel}.zarr")
    for dataset, columns in (
        ("ds_1", "fov_name,id,infection_state,cell_death_state"),
        ("ds_2", "fov_name,id,foo"),
        ("ds_3", "fov_name,id,infection_state"),
        ("ds_4", "fov_name,id,infection_state"),
    ):
        (ann / dataset).mkdir(parents=True)
        (ann / dataset / "labels.csv").write_text(columns + "\n")
    # ds_4 has annotations only, and the raw data needed to predict it
    (emb / "ds_4" / "2-assemble" / "train-test" / "ds_4_v1.zarr").mkdir(parents=True)
    (emb / "ds_4" / "1-preprocess" / "label-free" / "3-track" / "ds_4_cropped.zarr").mkdir(parents=True)
    (emb / "ds_4" / "4-phenotyping").mkdir(parents=True)
    (ann / "ds_5").mkdir()  # annotations only, no raw data
    return emb, ann


def test_build_registry_and_summary(tmp_path):
    from dynaclr.evaluation.linear_classifiers.dataset_discovery import build_registry, print_registry_summary

    emb, ann = make_tree(tmp_path)
    registry, skipped, annotations_only, predictions_only = build_registry(emb, ann, "model_*", "v1")
    assert [e["dataset"] for e in registry] == ["ds_1"]
    assert registry[0]["available_tasks"] == ["infection_state", "cell_death_state"]
    assert list(registry[0]["channel_zarrs"]) == ["phase", "sensor"]
    assert skipped == [
        {"dataset": "ds_2", "reason": "No valid task columns in CSV"},
        {"dataset": "ds_3", "reason": "No channel zarrs"},
    ]
    assert annotations_only == ["ds_4", "ds_5"] and predictions_only == []
    text = print_registry_summary(registry, skipped, annotations_only, predictions_only)
    assert "## Dataset Registry" in text and "## Gaps" in text and "| ds_1 | labels.csv | phase, sensor |" in text


def test_generate_train_config_writes_valid_configs(tmp_path):
    from viscy_utils.evaluation.linear_classifier_config import LinearClassifierTrainConfig

    emb, ann = make_tree(tmp_path)
    out = tmp_path / "configs"
    args = [
        "generate-train-config",
        "--embeddings-dir",
        emb,
        "--annotations-dir",
        ann,
        "--model-name",
        "model_*",
        "--version",
        "v1",
        "-o",
        out,
        "--wandb-project",
        "p",
    ]
    result = CliRunner().invoke(dynaclr_group, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"{t}_{c}.yaml" for t in ("cell_death_state", "infection_state") for c in ("phase", "sensor")]
    config = LinearClassifierTrainConfig(**yaml.safe_load((out / "infection_state_sensor.yaml").read_text()))
    assert config.embedding_model == "model_-v1"
    assert config.train_datasets[0]["embeddings"].endswith("ds_1_sensor.zarr")


def test_generate_prediction_scripts(tmp_path):
    emb, ann = make_tree(tmp_path)
    reference = emb / "ds_1" / "4-phenotyping" / "predictions" / "model_x" / "v1"
    (reference / "predict_phase.yml").write_text("data_path: /data/ds_1.zarr\n  ckpt_path: /old.ckpt\n")
    (reference / "predict_phase.sh").write_text("dynaclr predict -c predict_phase.yml  # ds_1\n")
    args = [
        "generate-prediction-scripts",
        "--embeddings-dir",
        emb,
        "--annotations-dir",
        ann,
        "--model-name",
        "model_*",
        "--version",
        "v1",
        "--reference-dataset",
        "ds_1",
        "--ckpt-path",
        "/new.ckpt",
    ]
    result = CliRunner().invoke(dynaclr_group, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    assert "Skipped ds_5: No train-test zarr" in result.output
    target = emb / "ds_4" / "4-phenotyping" / "predictions" / "model_x" / "v1"
    assert (target / "predict_phase.yml").read_text() == "data_path: /data/ds_4.zarr\n  ckpt_path: /new.ckpt\n"
    assert (target / "slurm_out").is_dir()
    assert "sbatch predict_phase.sh" in (target / "run_all.sh").read_text()
    assert os.access(target / "run_all.sh", os.X_OK) and os.access(target / "predict_phase.sh", os.X_OK)
    bad = CliRunner().invoke(
        dynaclr_group, [str(a) for a in args[:-4]] + ["--reference-dataset", "nope", "--ckpt-path", "x"]
    )
    assert bad.exit_code == 2 and "nope" in bad.output
