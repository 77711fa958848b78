import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from iohub import open_ome_zarr

from viscy_utils import cli
from viscy_utils.cli import SUBCOMMAND_HELP, TOOL_SUBCOMMANDS, run_cli, static_help, subcommand_from_args

TESTS_DIR = Path(__file__).resolve().parent


def _viscy(*args, cwd, timeout=300):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-m", "viscy_utils.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _fit_config(tmp_path, **model_args):
    config = {
        "model": {"class_path": "vu_toys.ToyModule", "init_args": {"hidden": 3, **model_args}},
        "data": {"class_path": "vu_toys.ToyDataModule", "init_args": {"num_samples": 8, "batch_size": 4}},
        "trainer": {"accelerator": "cpu", "max_epochs": 1, "enable_progress_bar": False},
    }
    path = tmp_path / "fit.yml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["fit", "-c", "export.yml"], "fit"),
        (["preprocess", "--data_path", "fit/predict.zarr"], "preprocess"),
        (["-c", "precompute.yml", "predict"], "predict"),
        (["--config=x.yml", "export"], "export"),
        (["predict", "--trainer.default_root_dir", "convert_to_anndata"], "predict"),
        (["--help"], None),
        (["notacommand", "fit"], None),
        ([], None),
    ],
)
def test_subcommand_is_read_from_its_position_only(argv, expected):
    assert subcommand_from_args(argv) == expected


def test_help_is_instant_and_lists_every_subcommand():
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "viscy_utils.cli", "--help"], capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    assert result.returncode == 0, result.stderr
    for name in ("fit", "validate", "test", "predict", "preprocess", "export", "precompute", "convert_to_anndata"):
        assert f"    {name} " in result.stdout
    assert "Computer vision models for single-cell phenotyping." in result.stdout
    assert elapsed < 10  # Lightning alone takes 10-20 s to import here; the help must not import it
    probe = "import sys, viscy_utils.cli; print('lightning' in sys.modules or 'torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout.strip() == "False"


def test_no_arguments_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        run_cli([])
    assert exc.value.code == 2
    assert "expected a subcommand" in capsys.readouterr().err


def test_static_help_matches_the_real_subcommands():
    from viscy_utils.cli import VisCyCLI
    from viscy_utils.trainer import VisCyTrainer

    # the Lightning subcommands first, then the plain tools (import-tracks, import-images)
    assert list(VisCyCLI.subcommands()) == [name for name in SUBCOMMAND_HELP if name not in TOOL_SUBCOMMANDS]
    assert list(SUBCOMMAND_HELP)[-len(TOOL_SUBCOMMANDS) :] == list(TOOL_SUBCOMMANDS)
    for name in ("preprocess", "export", "precompute", "convert_to_anndata"):
        assert getattr(VisCyTrainer, name).__doc__.strip().splitlines()[0] == SUBCOMMAND_HELP[name]
    assert static_help(prog="dynaclr", description="D.").startswith("usage: dynaclr ")


def test_print_config_round_trips_with_defaults(tmp_path, toys, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["viscy"])
    config = _fit_config(tmp_path)
    with pytest.raises(SystemExit) as exc:
        run_cli(["fit", "-c", str(config), "--print_config"])
    assert exc.value.code in (0, None)
    first = capsys.readouterr().out
    dumped = yaml.safe_load(first)
    assert dumped["seed_everything"] == 42
    assert dumped["model"]["class_path"] == "vu_toys.ToyModule"
    assert dumped["model"]["init_args"]["hidden"] == 3
    logger = dumped["trainer"]["logger"]
    assert logger["class_path"].endswith("TensorBoardLogger")
    assert logger["init_args"]["log_graph"] is True
    assert logger["init_args"]["save_dir"] == ""
    assert time.strptime(logger["init_args"]["version"], "%Y%m%d-%H%M%S")
    (tmp_path / "dumped.yml").write_text(first)
    with pytest.raises(SystemExit):
        run_cli(["fit", "-c", str(tmp_path / "dumped.yml"), "--print_config"])
    assert yaml.safe_load(capsys.readouterr().out) == dumped


def test_model_and_data_requirements_follow_the_subcommand(tmp_path, toys, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["viscy"])
    # fit without a model or data fails in parsing
    with pytest.raises(SystemExit) as exc:
        run_cli(["fit", "--trainer.accelerator=cpu"])
    assert exc.value.code != 0
    capsys.readouterr()
    # preprocess needs neither, even when a path on the line contains another subcommand's name
    with pytest.raises(SystemExit) as exc:
        run_cli(["preprocess", "--data_path", str(tmp_path / "fit_export.zarr"), "--print_config"])
    assert exc.value.code in (0, None)
    dumped = yaml.safe_load(capsys.readouterr().out)
    assert dumped["model"] is None and dumped["data"] is None
    assert dumped["data_path"].endswith("fit_export.zarr")
    assert dumped["num_workers"] == 1 and dumped["block_size"] == 32 and dumped["channel_names"] == -1
    # export needs a model but no data module
    with pytest.raises(SystemExit) as exc:
        run_cli(["export", "--export_path", "m.onnx", "--ckpt_path", "x.ckpt"])
    assert exc.value.code != 0
    assert "model" in capsys.readouterr().err
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        run_cli(
            ["export", "--model", "vu_toys.ToyModule", "--export_path", "m.onnx", "--ckpt_path", "x.ckpt"]
            + ["--print_config"]
        )
    assert exc.value.code in (0, None)
    assert yaml.safe_load(capsys.readouterr().out)["format"] == "onnx"


def test_environment_defaults(monkeypatch):
    import logging

    monkeypatch.setenv("VISCY_LOG_LEVEL", "DEBUG")
    cli._setup_environment()
    assert logging.getLogger("lightning.pytorch").level == logging.DEBUG
    assert torch.get_float32_matmul_precision() == "high"
    monkeypatch.setenv("VISCY_LOG_LEVEL", "30")
    cli._setup_environment()
    assert logging.getLogger("lightning.pytorch").level == logging.WARNING
    torch.set_float32_matmul_precision("highest")
    logging.getLogger("lightning.pytorch").setLevel(logging.INFO)


def test_unparsable_checkpoint_hyperparameters_do_not_abort(tmp_path, toys, monkeypatch, caplog):
    monkeypatch.setattr(sys, "argv", ["viscy"])
    model = toys.ToyModule(hidden=3)
    ckpt = tmp_path / "odd.ckpt"
    import lightning

    checkpoint = {"state_dict": model.state_dict(), "hyper_parameters": {"not_an_arg": 1}}
    torch.save({**checkpoint, "pytorch-lightning_version": lightning.__version__}, ckpt)
    config = _fit_config(tmp_path)
    with caplog.at_level("WARNING", logger="viscy_utils"):
        result = run_cli(
            ["validate", "-c", str(config), "--ckpt_path", str(ckpt), "--trainer.logger=false"]
            + [f"--trainer.default_root_dir={tmp_path}"]
        )
    assert "Could not apply the hyper-parameters" in caplog.text
    assert result.trainer.state.finished


def test_fit_subprocess_fast_dev_run(tmp_path):
    config = _fit_config(tmp_path)
    result = _viscy("fit", "-c", str(config), "--trainer.fast_dev_run=true", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Running in `fast_dev_run` mode" in result.stdout + result.stderr


def _check_preprocessed(path):
    with open_ome_zarr(path, mode="r") as plate:
        assert set(plate.zattrs["normalization"]) == {"GFP", "Mito"}
        meta = plate["A/1/0"].zattrs["normalization"]["GFP"]
        assert set(meta) == {"dataset_statistics", "fov_statistics", "timepoint_statistics"}
        assert set(meta["timepoint_statistics"]) == {"0", "1"}


def test_preprocess_in_process_on_a_plate(tmp_path, write_plate, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["viscy"])
    path = tmp_path / "plate.zarr"
    write_plate(path, shape=(2, 1, 16, 16))
    run_cli(["preprocess", f"--data_path={path}", "--channel_names=[GFP, Mito]", "--num_workers=2", "--block_size=4"])
    _check_preprocessed(path)


@pytest.mark.slow
def test_preprocess_subprocess_on_a_plate(tmp_path, write_plate):
    path = tmp_path / "plate.zarr"
    write_plate(path, shape=(2, 1, 16, 16))
    args = [f"--data_path={path}", "--channel_names=[GFP, Mito]", "--num_workers=2", "--block_size=4"]
    result = _viscy("preprocess", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    _check_preprocessed(path)


def test_precompute_flags_parse(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["viscy"])
    args = ["--data_path", "p.zarr", "--output_path", "o", "--channel_names", "[Phase3D, GFP]"]
    args += ["--subtrahends", "[mean, 50]", "--divisors", "[std, [1, 99]]", "--include_wells", "[A/1, B/2]"]
    with pytest.raises(SystemExit) as exc:
        run_cli(["precompute", *args, "--print_config"])
    assert exc.value.code in (0, None)
    dumped = yaml.safe_load(capsys.readouterr().out)
    assert dumped["subtrahends"] == ["mean", 50.0]
    assert dumped["divisors"] == ["std", [1.0, 99.0]]
    assert dumped["include_wells"] == ["A/1", "B/2"] and dumped["image_array_key"] == "0"


def test_export_with_a_reused_fit_config_ignores_the_data_module(tmp_path, toys, monkeypatch):
    """A fit config keeps its ``data`` section; ``export`` must not receive the data module."""
    from lightning import LightningModule

    from viscy_utils.trainer import VisCyTrainer

    monkeypatch.setattr(sys, "argv", ["viscy"])
    received = {}

    def fake_export(self, model: LightningModule, export_path: Path, ckpt_path: Path, format: str = "onnx") -> None:
        received.update(model=model, export_path=export_path, format=format)

    monkeypatch.setattr(VisCyTrainer, "export", fake_export)
    config = _fit_config(tmp_path)
    run_cli(["export", "-c", str(config), "--export_path", str(tmp_path / "m.onnx"), "--ckpt_path", "x.ckpt"])
    assert type(received["model"]).__name__ == "ToyModule"
    assert str(received["export_path"]).endswith("m.onnx")
