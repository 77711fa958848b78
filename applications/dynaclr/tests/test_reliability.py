"""Failed reads stop fit, validate and predict with a named error; nothing is saved as if it had worked.

Small synthetic experiments (2 plates, T 6, Z 3, 48 x 48) with the shipped demo configuration; a corrupt
chunk is a truncated chunk file on disk.
"""

import os
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest
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


def _with_z_range(config, z_range):
    data = config["data"]["init_args"]
    data["z_range"] = list(z_range)
    encoder = config["model"]["init_args"]["encoder"]["init_args"]
    depth = z_range[1] - z_range[0]
    encoder.update(in_stack_depth=depth, stem_kernel_size=[depth, 4, 4], stem_stride=[depth, 4, 4])
    config["model"]["init_args"]["example_input_array_shape"][2] = depth
    return config


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["dynaclr"])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter", category=UserWarning)
        yield


def test_z_range_beyond_the_plate_names_experiment_fov_timepoint_and_request(run_dir):
    tmp_path, config = run_dir
    init = {k: v for k, v in _with_z_range(config, (0, 6))["data"]["init_args"].items()}
    dm = MultiExperimentDataModule(**{k: v for k, v in init.items() if k not in ("normalizations", "augmentations")})
    dm.setup("fit")
    with pytest.raises(ImageReadError) as info:
        dm.train_dataset.__getitems__([0, 1])
    message = str(info.value)
    assert "of experiment 'exp_a'" in message and "FOV '" in message and "at timepoint " in message
    assert "(c=[Phase3D, GFP] z=0:6 y=" in message
    assert f"array shape {SHAPE}" in message
    assert str(tmp_path / "data" / "exp_a.zarr") in message
    assert "OUT_OF_RANGE" in message  # the original error is kept


def test_fit_with_an_out_of_range_z_range_fails_and_saves_no_checkpoint(run_dir):
    # was: every epoch's loader thread died, the epochs ran 0 batches and last.ckpt was saved at step 0
    tmp_path, config = run_dir
    path = _write(_with_z_range(config, (0, 6)), tmp_path / "fit.yml")
    with pytest.raises(ImageReadError, match=r"z=0:6 .*array shape \(6, 2, 3, 48, 48\)"):
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
    assert "FOV 'B/1/0' of experiment 'exp_b' at timepoint 4" in message
    assert str(tmp_path / "data" / "exp_b.zarr" / "B" / "1" / "0" / "0") in message


def test_predict_with_a_corrupt_chunk_fails_and_writes_no_store(run_dir):
    # was: an embeddings store with the cells read before the failure, and exit status 0
    tmp_path, config = run_dir
    corrupt_timepoint(tmp_path / "data" / "exp_a.zarr", "A/2/0", 3)
    store = tmp_path / "embeddings.zarr"
    predict = _predict_config(config, "exp_a", store, None, tmp_path / "predict_logs")
    with pytest.raises(ImageReadError, match="FOV 'A/2/0' of experiment 'exp_a' at timepoint 3"):
        run_cli(["predict", "-c", _write(predict, tmp_path / "predict.yml")], prog="dynaclr")
    assert not store.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".embeddings.zarr")]  # no temporary store left


def test_predict_of_a_clean_plate_embeds_every_cell(run_dir):
    # the counterpart of the corrupt-chunk test: the same config writes all cells when nothing fails
    import anndata

    tmp_path, config = run_dir
    store = tmp_path / "embeddings.zarr"
    predict = _predict_config(config, "exp_a", store, None, tmp_path / "predict_logs")
    run_cli(["predict", "-c", _write(predict, tmp_path / "predict.yml")], prog="dynaclr")
    tracks = [p for p in (tmp_path / "data" / "exp_a_tracks").rglob("*.csv")]
    n_cells = sum(len(np.loadtxt(p, delimiter=",", skiprows=1, ndmin=2)) for p in tracks)
    assert anndata.read_zarr(store).n_obs == n_cells > 0


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_dynaclr_fit_exits_non_zero_naming_the_failed_read(run_dir):
    """The reported case end to end: `dynaclr fit` on a Z = 3 plate with z_range [0, 6]."""
    tmp_path, config = run_dir
    path = _write(_with_z_range(config, (0, 6)), tmp_path / "fit.yml")
    dynaclr = shutil.which("dynaclr", path=os.path.dirname(sys.executable)) or "dynaclr"
    result = subprocess.run([dynaclr, "fit", "-c", path], cwd=tmp_path, capture_output=True, text=True, timeout=540)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "ImageReadError: cannot read array '0' of FOV" in result.stderr
    assert "z=0:6" in result.stderr
    assert not list(tmp_path.rglob("*.ckpt"))
