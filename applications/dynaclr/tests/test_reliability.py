"""Failed reads stop fit, validate and predict with a named error; nothing is saved as if it had worked.

Small synthetic experiments (2 plates, T 6, Z 3, 48 x 48) with the shipped demo configuration; a corrupt
chunk is a truncated chunk file on disk.
"""

import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from dynaclr.datamodule import MultiExperimentDataModule
from dynaclr.demo.data import DemoExperiment, write_demo_dataset
from dynaclr.demo.run import _fit_config, _predict_config, demo_config_path
from viscy_data.errors import ImageReadError
from viscy_data.synthetic import corrupt_timepoint
from viscy_utils.cli import run_cli

EXPERIMENTS = (
    DemoExperiment("exp_a", ("Phase3D", "GFP"), 30.0, 2.0, 2),
    DemoExperiment("exp_b", ("Phase3D", "GFP"), 30.0, 0.5, 3),
    DemoExperiment("exp_c", ("Phase3D", "GFP"), 30.0, 1.0, 2),  # the demo writer wants train/val/test experiments
)
SHAPE = (6, 2, 3, 48, 48)


@pytest.fixture(scope="module")
def clean_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("reliability") / "data"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return write_demo_dataset(
            root,
            experiments=EXPERIMENTS,
            progress=False,
            n_timepoints=SHAPE[0],
            fovs_per_well=1,
            yx_size=SHAPE[3:],
            z_size=SHAPE[2],
            cells_per_fov=3,
        )


@pytest.fixture
def run_dir(tmp_path, clean_dataset):
    """A private copy of the experiments (the tests corrupt them) and a fit config writing under tmp_path."""
    data = tmp_path / "data"
    shutil.copytree(clean_dataset.experiments_yaml.parent, data)
    experiments_yaml = data / "experiments.yml"
    experiments_yaml.write_text(
        experiments_yaml.read_text().replace(str(clean_dataset.experiments_yaml.parent), str(data))
    )
    config = _fit_config(yaml.safe_load(demo_config_path().read_text()), tmp_path, experiments_yaml, "exp_b", 2)
    config["data"]["init_args"]["batch_size"] = 8
    config["trainer"]["enable_progress_bar"] = False
    return tmp_path, config


def _write(config, path):
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return str(path)


def _corrupt_fov(plate, fov):
    """Truncate every timepoint's chunks of one FOV: the first batch that reads it fails."""
    for t in range(SHAPE[0]):
        corrupt_timepoint(plate, fov, t)


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["dynaclr"])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter", category=UserWarning)
        yield


def test_a_corrupt_chunk_names_experiment_fov_timepoint_and_request(run_dir):
    tmp_path, config = run_dir
    corrupt_timepoint(tmp_path / "data" / "exp_a.zarr", "A/2/0", 3)  # exp_a is the training experiment
    init = config["data"]["init_args"]
    dm = MultiExperimentDataModule(**{k: v for k, v in init.items() if k not in ("normalizations", "augmentations")})
    dm.setup("fit")
    rows = list(range(len(dm.train_dataset)))
    with pytest.raises(ImageReadError) as info:
        for start in range(0, len(rows), 8):
            dm.train_dataset.__getitems__(rows[start : start + 8])
    message = str(info.value)
    assert "cannot read array '0' of FOV 'exp_a:A/2/0' at timepoint 3 (c=[Phase3D, GFP] z=0:3 y=" in message
    assert f"array shape {SHAPE}" in message
    assert str(tmp_path / "data" / "exp_a.zarr" / "A" / "2" / "0" / "0") in message
    assert "Invalid blosc-compressed data" in message  # the original error is kept


def test_fit_with_a_corrupt_chunk_fails_and_saves_no_checkpoint(run_dir):
    # was: the loader thread died, the epochs ran short (or 0 batches) and last.ckpt was saved as if trained
    tmp_path, config = run_dir
    _corrupt_fov(tmp_path / "data" / "exp_a.zarr", "A/2/0")
    path = _write(config, tmp_path / "fit.yml")
    with pytest.raises(ImageReadError, match=r"FOV 'exp_a:A/2/0' at timepoint \d .*array shape \(6, 2, 3, 48, 48\)"):
        run_cli(["fit", "-c", path], prog="dynaclr")
    assert not list(tmp_path.rglob("*.ckpt"))


def test_validate_with_a_corrupt_chunk_fails_naming_it(run_dir):
    tmp_path, config = run_dir
    corrupt_timepoint(tmp_path / "data" / "exp_b.zarr", "B/1/0", 4)  # exp_b is the validation experiment
    config["trainer"]["limit_val_batches"] = None
    path = _write(config, tmp_path / "validate.yml")
    with pytest.raises(ImageReadError) as info:
        run_cli(["validate", "-c", path], prog="dynaclr")
    message = str(info.value)
    assert "FOV 'exp_b:B/1/0' at timepoint 4" in message
    assert str(tmp_path / "data" / "exp_b.zarr" / "B" / "1" / "0" / "0") in message


def test_predict_with_a_corrupt_chunk_fails_and_writes_no_store(run_dir):
    # was: an embeddings store with the cells read before the failure, and exit status 0
    tmp_path, config = run_dir
    corrupt_timepoint(tmp_path / "data" / "exp_a.zarr", "A/2/0", 3)
    store = tmp_path / "embeddings.zarr"
    predict = _predict_config(config, ["exp_a"], store, None, tmp_path / "predict_logs")
    with pytest.raises(ImageReadError, match="FOV 'exp_a:A/2/0' at timepoint 3"):
        run_cli(["predict", "-c", _write(predict, tmp_path / "predict.yml")], prog="dynaclr")
    assert not store.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".embeddings.zarr")]  # no temporary store left


def test_predict_of_a_clean_plate_embeds_every_cell(run_dir):
    # the counterpart of the corrupt-chunk test: the same config writes all cells when nothing fails
    import anndata

    tmp_path, config = run_dir
    store = tmp_path / "embeddings.zarr"
    predict = _predict_config(config, ["exp_a"], store, None, tmp_path / "predict_logs")
    run_cli(["predict", "-c", _write(predict, tmp_path / "predict.yml")], prog="dynaclr")
    tracks = [p for p in (tmp_path / "data" / "exp_a_tracks").rglob("*.csv")]
    n_cells = sum(len(np.loadtxt(p, delimiter=",", skiprows=1, ndmin=2)) for p in tracks)
    assert anndata.read_zarr(store).n_obs == n_cells > 0


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_dynaclr_fit_exits_non_zero_naming_the_failed_read(run_dir):
    """The reported case end to end: `dynaclr fit` on a plate with truncated chunk files."""
    tmp_path, config = run_dir
    _corrupt_fov(tmp_path / "data" / "exp_a.zarr", "A/2/0")
    path = _write(config, tmp_path / "fit.yml")
    dynaclr = shutil.which("dynaclr", path=os.path.dirname(sys.executable)) or "dynaclr"
    result = subprocess.run([dynaclr, "fit", "-c", path], cwd=tmp_path, capture_output=True, text=True, timeout=540)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "ImageReadError: cannot read array '0' of FOV" in result.stderr
    assert "Invalid blosc-compressed data" in result.stderr
    assert not list(tmp_path.rglob("*.ckpt"))


@pytest.mark.timeout(600)
def test_shipped_demo_config_resumes_with_ckpt_path_last(run_dir):
    """`dynaclr fit -c demo.yml --ckpt_path last`: Lightning refused it (config.yaml exists, fixed version)."""
    tmp_path, config = run_dir
    path = _write(config, tmp_path / "fit.yml")
    short = ["--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1"]  # the run's length is not the point
    run_cli(["fit", "-c", path, "--trainer.max_epochs=1", *short], prog="dynaclr")
    first = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    steps = first["global_step"]
    assert steps == 2
    cli = run_cli(["fit", "-c", path, "--ckpt_path=last", *short], prog="dynaclr")  # max_epochs 2 from the config
    assert cli.trainer.global_step == 2 * steps and cli.trainer.current_epoch == 2
    assert [p.name for p in (tmp_path / "logs").iterdir()] == ["fit"]  # the demo's fixed logger version
    resumed = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert resumed["global_step"] == 2 * steps


VU_TOYS_DIR = Path(__file__).resolve().parents[3] / "packages" / "viscy-utils" / "tests"  # probe callbacks


def _slurm_env(tmp_path, restart_count):
    """What srun sets for one task of job 4242, and an `scontrol` stub on PATH that records its arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    scontrol = bin_dir / "scontrol"
    scontrol.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "scontrol.log"}\n')
    scontrol.chmod(0o755)
    return {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": os.pathsep.join([str(VU_TOYS_DIR), os.environ.get("PYTHONPATH", "")]),
        "SLURM_JOB_ID": "4242",
        "SLURM_JOB_NAME": "dynaclr_fit",
        "SLURM_NTASKS": "1",
        "SLURM_NTASKS_PER_NODE": "1",
        "SLURM_NNODES": "1",
        "SLURM_PROCID": "0",
        "SLURM_LOCALID": "0",
        "SLURM_NODEID": "0",
        "SLURM_NODELIST": "localhost",
        "SLURM_RESTART_COUNT": str(restart_count),
    }


def _wait_for(condition, process, what, timeout=400):
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"exited with {process.returncode} before {what}: {process.communicate()[1][-3000:]}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _assert_same_state(saved, restored):
    assert saved["param_groups"] == restored["param_groups"]
    assert saved["state"].keys() == restored["state"].keys() and saved["state"]
    for key, state in saved["state"].items():
        for name, value in state.items():
            if isinstance(value, torch.Tensor):
                torch.testing.assert_close(value, restored["state"][key][name], rtol=0, atol=0)
            else:
                assert value == restored["state"][key][name]


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_slurm_warning_signal_saves_requeues_and_the_restart_resumes(run_dir):
    """SIGUSR1 (``--signal=SIGUSR1@120``) to a running `dynaclr fit` under SLURM, then a requeued restart."""
    tmp_path, config = run_dir
    config["trainer"].update(max_epochs=1, limit_train_batches=20, limit_val_batches=1)
    config["data"]["init_args"]["batch_size"] = 2  # 20 steps in the epoch
    config["trainer"]["callbacks"] += [
        {"class_path": "vu_toys.SlowSteps", "init_args": {"seconds": 0.5}},  # the signals land mid-epoch
        {"class_path": "vu_toys.TouchAfterBatches", "init_args": {"path": str(tmp_path / "started"), "batches": 2}},
        {"class_path": "vu_toys.RecordTrainStart", "init_args": {"path": str(tmp_path / "start.pt")}},
    ]
    path = _write(config, tmp_path / "fit.yml")
    dynaclr = shutil.which("dynaclr", path=os.path.dirname(sys.executable)) or "dynaclr"
    command = [dynaclr, "fit", "-c", path, "--trainer.default_root_dir", str(tmp_path / "slurm_4242")]
    popen = {"cwd": tmp_path, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}

    first = subprocess.Popen(command, env=_slurm_env(tmp_path, 0), **popen)
    _wait_for((tmp_path / "started").exists, first, "the second training batch")
    first.send_signal(signal.SIGUSR1)
    hpc = tmp_path / "slurm_4242" / "hpc_ckpt_1.ckpt"
    log = tmp_path / "scontrol.log"
    _wait_for(lambda: log.exists() and hpc.exists(), first, "the requeue checkpoint")
    assert first.poll() is None, "the run ended before SLURM's SIGTERM"
    first.send_signal(signal.SIGTERM)  # what SLURM sends the requeued job
    _, stderr = first.communicate(timeout=300)
    assert first.returncode == 143, stderr[-3000:]
    assert log.read_text().split() == ["requeue", "4242"]
    saved = torch.load(hpc, weights_only=False)
    assert 2 <= saved["global_step"] < 20

    second = subprocess.Popen(command, env=_slurm_env(tmp_path, 1), **popen)
    _, stderr = second.communicate(timeout=900)
    assert second.returncode == 0, stderr[-3000:]
    start = torch.load(tmp_path / "start.pt", weights_only=False)
    assert start["global_step"] == saved["global_step"]
    _assert_same_state(saved["optimizer_states"][0], start["optimizer"])
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 20
    assert [p.name for p in (tmp_path / "logs").iterdir()] == ["fit"]  # resumed in the run's own folder
    assert not hpc.exists()  # a finished run leaves no requeue checkpoint to resume by mistake
    assert log.read_text().split() == ["requeue", "4242"]  # and did not requeue again


def test_slurm_scripts_ask_for_the_warning_signal_and_requeue():
    configs = Path(demo_config_path()).parent
    for script in ("fit_slurm.sh", "predict_slurm.sh"):
        text = (configs / script).read_text()
        assert "#SBATCH --signal=SIGUSR1@120" in text and "#SBATCH --requeue" in text, script
        assert "--trainer.default_root_dir" in text and "slurm_${SLURM_JOB_ID}" in text, script
        assert "uv run" not in text.split("srun", 1)[1], script  # uv would forward SIGUSR1 a second time


_BUILD_INDEX = """
import sys, time
from dynaclr.experiment import ExperimentRegistry
from dynaclr.index import MultiExperimentIndex

registry = ExperimentRegistry.from_yaml(sys.argv[1])
print("building", flush=True)
start = time.perf_counter()
MultiExperimentIndex(registry, (0, 3), (32, 32), tau_range_hours=(0.5, 1.5), cache_dir=sys.argv[2])
print(f"done {time.perf_counter() - start:.3f}", flush=True)
"""


def _index(experiments_yaml, cache_dir=None):
    from dynaclr.experiment import ExperimentRegistry
    from dynaclr.index import MultiExperimentIndex

    registry = ExperimentRegistry.from_yaml(experiments_yaml)
    return MultiExperimentIndex(registry, (0, 3), (32, 32), tau_range_hours=(0.5, 1.5), cache_dir=cache_dir)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_kill_9_while_saving_the_index_cache_leaves_no_cache_that_looks_complete(run_dir, caplog):
    import random

    import pandas as pd

    tmp_path, _ = run_dir
    experiments_yaml = tmp_path / "data" / "experiments.yml"
    reference = _index(experiments_yaml).tracks.drop(columns="position")

    def start(cache_dir):
        process = subprocess.Popen(
            [sys.executable, "-c", _BUILD_INDEX, str(experiments_yaml), str(cache_dir)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert process.stdout.readline().strip() == "building"
        return process

    full = start(tmp_path / "timing")
    build_s = float(full.communicate(timeout=300)[0].split()[-1])
    rng = random.Random(2)
    for i, fraction in enumerate([0.0, 0.5, 0.8, 0.95, 1.0, 1.05]):
        cache_dir = tmp_path / f"cache_{i}"
        process = start(cache_dir)
        time.sleep(build_s * fraction * rng.uniform(0.9, 1.1))
        process.send_signal(signal.SIGKILL)
        process.communicate()
        saved = sorted(cache_dir.glob("multi_experiment_index_*.parquet")) if cache_dir.exists() else []
        assert len(saved) <= 1
        with caplog.at_level("INFO", logger="dynaclr.index"):
            caplog.clear()
            index = _index(experiments_yaml, cache_dir)  # loads a complete cache or rebuilds and saves one
        if saved:  # a cache file that exists is complete: it loads without a rebuild
            assert "Loaded the multi-experiment index from cache" in caplog.text
            assert "Ignoring the unreadable index cache" not in caplog.text
        else:
            assert "Saved the multi-experiment index cache" in caplog.text
        pd.testing.assert_frame_equal(index.tracks.drop(columns="position"), reference)
        assert len(list(cache_dir.glob("multi_experiment_index_*.parquet"))) == 1  # the re-run finished it
