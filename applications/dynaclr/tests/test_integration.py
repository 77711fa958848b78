"""End-to-end DynaCLR on a synthetic plate: the ``dynaclr`` CLI, the Python API, checkpoints, DDP."""

import copy
import os
import subprocess
from pathlib import Path

import anndata
import pytest
import torch
import yaml
from click.testing import CliRunner
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from dynaclr.cli import dynaclr as dynaclr_group
from dynaclr.engine import ContrastiveModule
from viscy_data.synthetic import write_synthetic_plate
from viscy_data.triplet import TripletDataModule
from viscy_models.contrastive import ContrastiveEncoder

CONFIGS = Path(__file__).parents[1] / "examples" / "configs"
CHANNELS = ["Phase3D", "GFP"]
ENCODER = {
    "backbone": "resnet18",
    "in_channels": 2,
    "in_stack_depth": 2,
    "stem_kernel_size": [2, 2, 2],
    "stem_stride": [2, 2, 2],
    "embedding_dim": 16,
    "projection_dim": 8,
}
PATCH = [32, 32]


@pytest.fixture(scope="module")
def plate(tmp_path_factory):
    root = tmp_path_factory.mktemp("plate")
    return write_synthetic_plate(
        root / "plate.zarr",
        wells=("A/1", "B/1"),
        fovs_per_well=2,
        n_timepoints=4,
        z_size=2,
        yx_size=(64, 64),
        cells_per_fov=8,  # every FOV split of 4 FOVs keeps several tracks (negatives need two)
        channel_names=CHANNELS,
        tracks_path=root / "tracks",
    )


def data_args(plate, **overrides):
    return {
        "data_path": str(plate.store_path),
        "tracks_path": str(plate.tracks_path),
        "source_channel": CHANNELS,
        "z_range": [0, 2],
        "initial_yx_patch_size": PATCH,
        "final_yx_patch_size": PATCH,
        "split_ratio": 0.5,
        "batch_size": 4,
        "num_workers": 0,
        "time_interval": 1,
        "normalizations": [
            {
                "class_path": "viscy_transforms.NormalizeSampled",
                "init_args": {"keys": CHANNELS, "level": "fov_statistics", "subtrahend": "mean", "divisor": "std"},
            }
        ],
        **overrides,
    }


def fit_config(plate, tmp_path, **trainer):
    return {
        "seed_everything": 42,
        "trainer": {
            "accelerator": "cpu",
            "devices": 1,
            "logger": {
                "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                "init_args": {"save_dir": str(tmp_path / "logs"), "version": "test", "log_graph": False},
            },
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "log_every_n_steps": 1,
            # keep every artefact (config.yaml, checkpoints) out of the working directory
            "default_root_dir": str(tmp_path),
            **trainer,
        },
        "model": {
            "class_path": "dynaclr.engine.ContrastiveModule",
            "init_args": {
                "encoder": {"class_path": "viscy_models.contrastive.ContrastiveEncoder", "init_args": ENCODER},
                "loss_function": {
                    "class_path": "pytorch_metric_learning.losses.NTXentLoss",
                    "init_args": {"temperature": 0.5},
                },
                "lr": 0.001,
                "log_batches_per_epoch": 1,
                "example_input_array_shape": [1, 2, 2, *PATCH],
            },
        },
        "data": {"class_path": "viscy_data.triplet.TripletDataModule", "init_args": data_args(plate)},
    }


def write_yaml(path, config):
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def subprocess_env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def make_module():
    torch.manual_seed(0)
    from pytorch_metric_learning.losses import NTXentLoss

    return ContrastiveModule(
        ContrastiveEncoder(**ENCODER),
        loss_function=NTXentLoss(temperature=0.5),
        lr=0.001,
        log_batches_per_epoch=0,
        example_input_array_shape=[1, 2, 2, *PATCH],
    )


def cpu_trainer(tmp_path, **kwargs):
    defaults = dict(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    return Trainer(**{**defaults, **kwargs})


def test_cli_fit_fast_dev_run_subprocess(plate, tmp_path):
    config = write_yaml(tmp_path / "fit.yml", fit_config(plate, tmp_path))
    result = subprocess.run(
        ["dynaclr", "fit", "-c", str(config), "--trainer.fast_dev_run=true"],
        cwd=tmp_path,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "fast_dev_run" in result.stderr + result.stdout


class StepLosses(Callback):
    def __init__(self):
        self.losses = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))


def normalized_datamodule(plate):
    from viscy_transforms import NormalizeSampled

    normalize = NormalizeSampled(keys=CHANNELS, level="fov_statistics", subtrahend="mean", divisor="std")
    return TripletDataModule(**{**data_args(plate), "normalizations": [normalize]})


def test_python_api_loss_is_finite_and_decreases(plate, tmp_path):
    datamodule = normalized_datamodule(plate)
    recorder = StepLosses()
    trainer = cpu_trainer(tmp_path, max_steps=12, overfit_batches=1, callbacks=[recorder], enable_checkpointing=False)
    trainer.fit(make_module(), datamodule=datamodule)
    losses = recorder.losses
    assert len(losses) == 12
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-3:]) / 3 < 0.9 * losses[0]


def test_resume_from_last_checkpoint_restores_optimizer(plate, tmp_path):
    n = 3
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    first = cpu_trainer(tmp_path, max_steps=n, callbacks=[checkpoint], limit_val_batches=0)
    first.fit(make_module(), datamodule=normalized_datamodule(plate))
    last = tmp_path / "ckpt" / "last.ckpt"
    saved = torch.load(last, weights_only=False)
    assert saved["global_step"] == n

    class OptimizerAtStart(Callback):
        def on_train_start(self, trainer, pl_module):
            self.state = copy.deepcopy(trainer.optimizers[0].state_dict())

    probe = OptimizerAtStart()
    second = cpu_trainer(tmp_path, max_steps=2 * n, callbacks=[probe], limit_val_batches=0, enable_checkpointing=False)
    second.fit(make_module(), datamodule=normalized_datamodule(plate), ckpt_path=last)
    assert second.global_step == 2 * n
    expected = saved["optimizer_states"][0]["state"]
    restored = probe.state["state"]
    assert expected.keys() == restored.keys() and len(expected) > 0
    for key in expected:
        assert int(restored[key]["step"]) == n
        torch.testing.assert_close(restored[key]["exp_avg"], expected[key]["exp_avg"], rtol=0, atol=0)


def test_checkpoint_predict_equals_in_memory_forward(plate, tmp_path):
    module = make_module()
    ckpt = tmp_path / "model.ckpt"
    trainer = cpu_trainer(tmp_path, max_steps=2, limit_val_batches=0, enable_checkpointing=False)
    trainer.fit(module, datamodule=normalized_datamodule(plate))
    trainer.save_checkpoint(ckpt)

    output = tmp_path / "embeddings.zarr"
    config = fit_config(plate, tmp_path)
    config["trainer"]["callbacks"] = [
        {
            "class_path": "viscy_utils.callbacks.embedding_writer.EmbeddingWriter",
            "init_args": {"output_path": str(output)},
        }
    ]
    config["trainer"]["logger"] = False
    config["return_predictions"] = False
    config["ckpt_path"] = str(ckpt)
    predict_yml = write_yaml(tmp_path / "predict.yml", config)
    result = CliRunner().invoke(dynaclr_group, ["predict", "-c", str(predict_yml)], catch_exceptions=False)
    assert result.exit_code == 0, result.output

    adata = anndata.read_zarr(output)
    reference = make_module()
    reference.load_state_dict(torch.load(ckpt, weights_only=True)["state_dict"])
    reference.eval()
    datamodule = normalized_datamodule(plate)
    datamodule.setup("predict")
    features, projections, fovs, ids = [], [], [], []
    datamodule.trainer = trainer  # on_after_batch_transfer reads the trainer state
    trainer.state.stage = "predict"
    with torch.inference_mode():
        for batch in datamodule.predict_dataloader():
            batch = datamodule.on_after_batch_transfer(batch, 0)
            f, p = reference(batch["anchor"])
            features.append(f)
            projections.append(p)
            fovs += [row["fov_name"] for row in batch["index"]]
            ids += [int(row["id"]) for row in batch["index"]]
    features = torch.cat(features).numpy()
    # predict covers every tracked cell whose patch fits inside the image (the spec's border rule)
    ann = plate.annotations
    half_h, half_w = PATCH[0] / 2, PATCH[1] / 2
    height, width = plate.shape[-2:]
    inside = ann["y"].between(half_h, height - half_h, inclusive="neither") & ann["x"].between(
        half_w, width - half_w, inclusive="neither"
    )
    assert adata.shape == features.shape and adata.n_obs == int(inside.sum()) > 0
    assert list(adata.obs["fov_name"]) == [f.strip("/") for f in fovs]
    assert list(adata.obs["id"].astype(int)) == ids
    torch.testing.assert_close(torch.as_tensor(adata.X), torch.as_tensor(features), rtol=0, atol=0)
    torch.testing.assert_close(torch.as_tensor(adata.obsm["X_projections"]), torch.cat(projections), rtol=0, atol=0)


def substitute_paths(node, plate, tmp_path):
    """Point every placeholder path of an example config at the synthetic plate or tmp_path."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "data_path":
                out[key] = str(plate.store_path)
            elif key == "tracks_path":
                out[key] = str(plate.tracks_path)
            else:
                out[key] = substitute_paths(value, plate, tmp_path)
        return out
    if isinstance(node, list):
        return [substitute_paths(v, plate, tmp_path) for v in node]
    if isinstance(node, str) and node.startswith("/path/to"):
        return str(tmp_path / node.removeprefix("/path/to/"))
    return node


def lightning_configs():
    return sorted(p.name for p in CONFIGS.glob("*.y*ml") if "model" in (yaml.safe_load(p.read_text()) or {}))


def subcommand_of(name):
    return "predict" if "predict" in name else "export" if "export" in name else "fit"


@pytest.mark.parametrize("name", lightning_configs())
def test_example_config_parses_through_the_cli(name, plate, tmp_path, capsys):
    config = substitute_paths(yaml.safe_load((CONFIGS / name).read_text()), plate, tmp_path)
    path = write_yaml(tmp_path / name, config)
    result = CliRunner().invoke(dynaclr_group, [subcommand_of(name), "-c", str(path), "--print_config"])
    assert result.exit_code == 0, result.output
    printed = yaml.safe_load(result.output)
    assert printed["model"]["class_path"] == config["model"]["class_path"]


@pytest.mark.parametrize("name", ["fit.yml", "predict.yml", "export_onnx.yml"])
def test_example_config_instantiates(name, plate, tmp_path):
    from viscy_utils.cli import run_cli

    config = substitute_paths(yaml.safe_load((CONFIGS / name).read_text()), plate, tmp_path)
    for key in ("ckpt_path", "return_predictions", "format", "export_path"):  # subcommand arguments
        config.pop(key, None)
    if "data" not in config:
        config["data"] = {"class_path": "viscy_data.triplet.TripletDataModule", "init_args": data_args(plate)}
    path = write_yaml(tmp_path / name, config)
    overrides = ["--trainer.accelerator=cpu", "--trainer.devices=1", "--trainer.strategy=auto"]
    cli = run_cli(["-c", str(path), *overrides], prog="dynaclr", run=False)
    assert isinstance(cli.model, ContrastiveModule)
    assert isinstance(cli.model.model, ContrastiveEncoder)
    assert isinstance(cli.datamodule, TripletDataModule)
    assert cli.datamodule.source_channel == config["data"]["init_args"]["source_channel"]


def test_other_example_yaml_files_load():
    for path in CONFIGS.glob("*.y*ml"):
        assert isinstance(yaml.safe_load(path.read_text()), dict), path.name


@pytest.mark.timeout(600)  # two processes each importing torch/Lightning: ~45 s on 2 idle cores
def test_ddp_fit_on_cpu_gloo(plate, tmp_path):
    config = write_yaml(tmp_path / "fit.yml", fit_config(plate, tmp_path, strategy="ddp", devices=2, max_steps=2))
    result = subprocess.run(
        ["dynaclr", "fit", "-c", str(config), "--trainer.limit_val_batches=1", "--trainer.num_sanity_val_steps=0"],
        cwd=tmp_path,
        env={**subprocess_env(), "PL_TORCH_DISTRIBUTED_BACKEND": "gloo"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "gloo" in result.stderr + result.stdout or "distributed_backend" in result.stderr + result.stdout
    assert "max_steps=2" in result.stderr + result.stdout
