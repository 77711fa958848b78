"""dynaclr.run_configs: a run's fit config from a template, and the predict config of a fit config."""

import yaml

from dynaclr.run_configs import fit_run_config, predict_run_config, write_config

TEMPLATE = {
    "seed_everything": 42,
    "trainer": {
        "max_epochs": 10,
        "log_every_n_steps": 5,
        "limit_val_batches": 2,
        "logger": {"class_path": "lightning.pytorch.loggers.TensorBoardLogger", "init_args": {"save_dir": "EDIT"}},
        "callbacks": [
            {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint", "init_args": {"dirpath": "EDIT"}},
            {"class_path": "lightning.pytorch.callbacks.LearningRateMonitor", "init_args": {}},
        ],
    },
    "model": {"class_path": "dynaclr.engine.ContrastiveModule"},
    "data": {"class_path": "dynaclr.datamodule.MultiExperimentDataModule", "init_args": {"seed": 0, "a": 1}},
}


def test_fit_run_config_fills_paths_seed_and_data_without_touching_the_template(tmp_path):
    before = yaml.safe_dump(TEMPLATE)
    fit = fit_run_config(
        TEMPLATE, log_dir=tmp_path / "logs", checkpoint_dir=tmp_path / "ckpt", seed=3, data={"a": 2, "b": [1]}
    )
    assert yaml.safe_dump(TEMPLATE) == before
    assert fit["seed_everything"] == 3 and fit["data"]["init_args"] == {"seed": 3, "a": 2, "b": [1]}
    assert fit["trainer"]["max_epochs"] == 10 and "version" not in fit["trainer"]["logger"]["init_args"]
    assert fit["trainer"]["logger"]["init_args"]["save_dir"] == str(tmp_path / "logs")
    assert fit["trainer"]["callbacks"][0]["init_args"]["dirpath"] == str(tmp_path / "ckpt")
    assert fit["trainer"]["callbacks"][1]["init_args"] == {}
    other = fit_run_config(TEMPLATE, log_dir="l", checkpoint_dir="c", seed=0, max_epochs=2, log_version="v")
    assert other["trainer"]["max_epochs"] == 2 and other["trainer"]["logger"]["init_args"]["version"] == "v"


def test_predict_run_config_keeps_model_and_data_and_writes_embeddings(tmp_path):
    fit = fit_run_config(TEMPLATE, log_dir="l", checkpoint_dir="c", seed=1)
    predict = predict_run_config(fit, tmp_path / "e.zarr", log_dir=tmp_path, checkpoint="last.ckpt", data={"p": 1})
    assert predict["model"] == fit["model"] and predict["data"]["init_args"] == {**fit["data"]["init_args"], "p": 1}
    trainer = predict["trainer"]
    assert not {"max_epochs", "log_every_n_steps", "limit_val_batches"} & set(trainer)
    assert trainer["logger"] is False and trainer["default_root_dir"] == str(tmp_path)
    assert [c["init_args"]["output_path"] for c in trainer["callbacks"]] == [str(tmp_path / "e.zarr")]
    assert predict["ckpt_path"] == "last.ckpt" and predict["return_predictions"] is False
    assert "ckpt_path" not in predict_run_config(fit, "e.zarr", log_dir=tmp_path)
    path = write_config(predict, tmp_path / "deep" / "predict.yml")
    assert yaml.safe_load(path.read_text()) == predict
