import pathlib

import pytest
import torch
import yaml
from _mx_testdata import make_experiment, write_experiments_yaml  # loaded by conftest.py

CONFIGS = pathlib.Path(__file__).parents[1] / "examples" / "configs"
WELLS = {"uninfected": ["A/1"], "infected": ["B/1"]}


def _tiny(config, experiments_yaml, tmp_path, accelerator="cpu"):
    """Shrink an example config to one step on synthetic data; transforms stay as shipped."""
    config["trainer"].update(accelerator=accelerator, strategy="auto", devices=1, fast_dev_run=1, max_epochs=1)
    config["trainer"]["logger"]["init_args"]["save_dir"] = str(tmp_path / "logs")
    # fast_dev_run drops the logger, and checkpoints then go to default_root_dir (the working directory)
    config["trainer"]["default_root_dir"] = str(tmp_path)
    model = config["model"]["init_args"]
    model["encoder"]["init_args"].update(
        backbone="convnext_atto", in_stack_depth=2, stem_kernel_size=[2, 4, 4], stem_stride=[2, 4, 4]
    )
    model["example_input_array_shape"] = [1, 2, 2, 32, 32]
    data = config["data"]["init_args"]
    data.update(
        experiments_yaml=str(experiments_yaml),
        z_range=[0, 2],
        yx_patch_size=[48, 48],
        final_yx_patch_size=[32, 32],
        val_experiments=["exp_c"],
        batch_size=4,
        num_workers=1,
        tau_range=[0.5, 1.0],
    )
    return config


@pytest.fixture
def experiments(tmp_path):
    # different fluorescence channel names; exp_b carries timepoint_statistics as `viscy preprocess` writes them
    a = make_experiment(tmp_path, "exp_a", ["Phase3D", "GFP", "Mito"], ["Phase3D", "GFP"], WELLS, code=1)
    b = make_experiment(
        tmp_path,
        "exp_b",
        ["RFP", "Phase3D"],
        ["Phase3D", "RFP"],
        WELLS,
        code=2,
        timepoint_stats=True,
        interval_minutes=15,
    )
    c = make_experiment(tmp_path, "exp_c", ["Phase3D", "GFP"], ["Phase3D", "GFP"], WELLS, code=3)
    return write_experiments_yaml(tmp_path / "experiments.yml", [a, b, c])


def test_example_experiments_file_parses():
    content = yaml.safe_load((CONFIGS / "experiments.yml").read_text())
    names = [e["name"] for e in content["experiments"]]
    assert names == ["2025_07_22_SEC61", "2025_08_15_TOMM20"]
    from dynaclr.experiment import ExperimentConfig

    configs = [ExperimentConfig(**e) for e in content["experiments"]]
    assert configs[1].interval_minutes == 15.0 and configs[0].start_hpi == 3.0


@pytest.mark.parametrize("axes", ["shipped", "all_axes"])
def test_multi_experiment_fit_yaml_trains_one_step(tmp_path, experiments, axes):
    from viscy_utils.cli import run_cli

    config = yaml.safe_load((CONFIGS / "multi_experiment_fit.yml").read_text())
    config = _tiny(config, experiments, tmp_path)
    if axes == "all_axes":
        config["data"]["init_args"].update(
            leaky=0.25, experiment_weights={"exp_a": 1.0, "exp_b": 2.0}, condition_ratio={"infected": 0.75}
        )
    path = tmp_path / "fit.yml"
    path.write_text(yaml.safe_dump(config))
    cli = run_cli(["fit", "-c", str(path)])
    metrics = cli.trainer.callback_metrics
    assert cli.trainer.global_step == 1
    assert torch.isfinite(metrics["loss/train_step"]) and torch.isfinite(metrics["loss/val"])
    from dynaclr.loss import NTXentHCL

    assert isinstance(cli.model.loss_function, NTXentHCL)
    assert [type(t).__name__ for t in cli.datamodule.augmentations][0] == "BatchedRandAffined"


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_multi_experiment_fit_yaml_trains_one_step_on_gpu(tmp_path, experiments):
    """The shipped config as a GPU user runs it: augmentations and the step on the device, mixed precision."""
    from viscy_utils.cli import run_cli

    config = yaml.safe_load((CONFIGS / "multi_experiment_fit.yml").read_text())
    config = _tiny(config, experiments, tmp_path, accelerator="gpu")
    config["trainer"]["precision"] = "bf16-mixed"
    path = tmp_path / "fit.yml"
    path.write_text(yaml.safe_dump(config))
    cli = run_cli(["fit", "-c", str(path)])
    assert cli.trainer.global_step == 1
    assert cli.trainer.strategy.root_device.type == "cuda"  # Lightning moves the module back to CPU after fit
    assert torch.isfinite(cli.trainer.callback_metrics["loss/train_step"])
