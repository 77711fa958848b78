"""Resume, re-run and new runs with a logger of fixed version (as the shipped configs have)."""

import sys

import pytest
import torch
import yaml

from viscy_utils.callbacks.run_guard import EmptyEpochError
from viscy_utils.cli import run_cli


@pytest.fixture(autouse=True)
def _argv(monkeypatch, toys):
    monkeypatch.setattr(sys, "argv", ["viscy"])


def _config(tmp_path, **kwargs):
    import vu_toys

    record = {"class_path": "vu_toys.RecordTrainStart", "init_args": {"path": str(tmp_path / "start.pt")}}
    kwargs.setdefault("callbacks", [record])
    kwargs.setdefault("model", {"momentum": 0.9})
    return vu_toys.toy_config(tmp_path, **kwargs)


def _assert_same_optimizer_state(saved, restored):
    assert saved["param_groups"] == restored["param_groups"]
    assert saved["state"].keys() == restored["state"].keys() and saved["state"]
    for key, state in saved["state"].items():
        torch.testing.assert_close(state["momentum_buffer"], restored["state"][key]["momentum_buffer"], rtol=0, atol=0)


def test_ckpt_path_last_resumes_in_place_with_step_and_optimizer_state(tmp_path):
    config = _config(tmp_path)
    run_cli(["fit", "-c", config, "--trainer.max_epochs=1"])
    first = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)
    assert first["global_step"] == 2
    # the documented resume; Lightning's SaveConfigCallback refused it: config.yaml exists in logs/run
    cli = run_cli(["fit", "-c", config, "--trainer.max_epochs=2", "--ckpt_path=last"])
    start = torch.load(tmp_path / "start.pt", weights_only=False)
    assert start["global_step"] == 2 and start["epoch"] == 1
    _assert_same_optimizer_state(first["optimizer_states"][0], start["optimizer"])
    assert cli.trainer.global_step == 4
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == ["run"]  # no new folder
    assert yaml.safe_load((tmp_path / "logs" / "run" / "config.yaml").read_text())["ckpt_path"] == "last"


def test_rerun_after_a_run_that_saved_no_checkpoint_reuses_the_folders(tmp_path):
    with pytest.raises(EmptyEpochError):
        run_cli(["fit", "-c", _config(tmp_path, data={"num_samples": 0})])
    assert (tmp_path / "logs" / "run" / "config.yaml").is_file()
    cli = run_cli(["fit", "-c", _config(tmp_path)])
    assert cli.trainer.global_step == 4
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == ["run"]
    assert (tmp_path / "ckpt" / "last.ckpt").is_file()
    assert (
        yaml.safe_load((tmp_path / "logs" / "run" / "config.yaml").read_text())["data"]["init_args"]["num_samples"] == 8
    )


def test_rerun_of_a_finished_run_writes_new_folders_and_keeps_the_old_run(tmp_path, caplog):
    config = _config(tmp_path)
    run_cli(["fit", "-c", config])
    old = (tmp_path / "ckpt" / "last.ckpt").read_bytes()
    old_config = (tmp_path / "logs" / "run" / "config.yaml").read_text()
    with caplog.at_level("WARNING", logger="viscy_utils"):
        cli = run_cli(["fit", "-c", config, "--trainer.max_epochs=1"])
    assert "holds checkpoints of a previous run" in caplog.text and "--overwrite" in caplog.text
    assert (tmp_path / "ckpt" / "last.ckpt").read_bytes() == old
    assert (tmp_path / "logs" / "run" / "config.yaml").read_text() == old_config
    assert torch.load(tmp_path / "ckpt_1" / "last.ckpt", weights_only=False)["global_step"] == 2
    assert (tmp_path / "logs" / "run_1" / "config.yaml").is_file()
    assert cli.trainer.logger.version == "run_1"
    # and a third run goes to the next free suffix
    run_cli(["fit", "-c", config, "--trainer.max_epochs=1"])
    assert (tmp_path / "ckpt_2" / "last.ckpt").is_file() and (tmp_path / "logs" / "run_2").is_dir()


def test_overwrite_replaces_the_previous_run_in_place(tmp_path):
    config = _config(tmp_path)
    run_cli(["fit", "-c", config])
    assert {p.name for p in (tmp_path / "ckpt").iterdir()} == {"last.ckpt", "epoch=1-step=4.ckpt"}
    run_cli(["fit", "-c", config, "--trainer.max_epochs=1", "--overwrite=true"])
    assert {p.name for p in (tmp_path / "ckpt").iterdir()} == {"last.ckpt", "epoch=0-step=2.ckpt"}
    assert torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)["global_step"] == 2
    assert not (tmp_path / "ckpt_1").exists() and sorted(p.name for p in (tmp_path / "logs").iterdir()) == ["run"]


def test_default_checkpoint_folder_inside_the_logger_folder_moves_with_it(tmp_path):
    import vu_toys

    config = vu_toys.toy_config(tmp_path, checkpoint_dir=None)  # ModelCheckpoint's default: logs/run/checkpoints
    run_cli(["fit", "-c", config])
    first = (tmp_path / "logs" / "run" / "checkpoints" / "last.ckpt").read_bytes()
    run_cli(["fit", "-c", config, "--trainer.max_epochs=1"])
    assert (tmp_path / "logs" / "run" / "checkpoints" / "last.ckpt").read_bytes() == first
    second = torch.load(tmp_path / "logs" / "run_1" / "checkpoints" / "last.ckpt", weights_only=False)
    assert second["global_step"] == 2
    # --ckpt_path last resumes the run of the configured folders (logs/run), in place
    cli = run_cli(["fit", "-c", config, "--trainer.max_epochs=3", "--ckpt_path=last"])
    assert cli.trainer.global_step == 6  # resumed the original run (step 4), in place
    assert not (tmp_path / "logs" / "run_2").exists()


def test_unwritable_checkpoint_folder_fails_before_training(tmp_path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the checkpoint folder's parent should be")
    import vu_toys

    config = vu_toys.toy_config(tmp_path)
    text = (tmp_path / "config.yml").read_text().replace(str(tmp_path / "ckpt"), str(blocker / "ckpt"))
    (tmp_path / "config.yml").write_text(text)
    with pytest.raises(PermissionError, match=f"checkpoint directory {blocker / 'ckpt'} is not writable"):
        run_cli(["fit", "-c", config, "--model=vu_toys.ToyModule"])
    assert not (tmp_path / "start.pt").exists()
    assert not list((tmp_path / "logs" / "run").glob("metrics.csv"))
