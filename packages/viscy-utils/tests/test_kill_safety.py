"""kill -9 at random points of `viscy preprocess` and `viscy predict`: never a half-written result that looks complete.

After each kill the output is the previous complete state, or visibly incomplete / absent, and a re-run
finishes it. Kill points: random times over the run, and the moment the write phase starts (found by
watching the output), plus a random delay after it.
"""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
from iohub import open_ome_zarr

from viscy_data.norm_meta import NORM_META_PENDING_KEY, check_norm_meta_complete
from viscy_utils.meta_utils import generate_normalization_metadata

TESTS_DIR = Path(__file__).resolve().parent
FOVS = [(row, str(col), "0") for row in "ABCD" for col in range(1, 17)]  # 64 FOVs: a write phase worth hitting


def _start(args, cwd):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen(
        [sys.executable, "-m", "viscy_utils.cli", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _kill_when(process, condition, delay, timeout=300):
    """SIGKILL ``process`` ``delay`` s after ``condition()`` holds; returns False if it finished first."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            return False
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("the kill point was never reached")
        time.sleep(0.002)
    time.sleep(delay)
    finished = process.poll() is not None
    process.send_signal(signal.SIGKILL)
    process.wait()
    return not finished


def _plate_attrs(path):
    zattrs = Path(path) / ".zattrs"
    try:
        return json.loads(zattrs.read_text())
    except (FileNotFoundError, json.JSONDecodeError):  # zarr writes atomically: never half a file
        return {}


# ---------------------------------------------------------------------------------------------- preprocess
def _preprocess_state(path, reference):
    """'untouched', 'pending' or 'complete'; asserts that every group is readable and consistent."""
    with open_ome_zarr(path, mode="r") as plate:
        attrs = dict(plate.zattrs)
        fovs = {name: pos.zattrs.get("normalization") for name, pos in plate.positions()}
    if NORM_META_PENDING_KEY in attrs:
        with pytest.raises(ValueError, match=r"interrupted while writing them .* `viscy preprocess --data_path"):
            check_norm_meta_complete(attrs, path)
        return "pending"
    if "normalization" in attrs:
        assert attrs["normalization"] == reference["plate"]
        assert fovs == reference["fovs"]
        return "complete"
    assert all(stats is None for stats in fovs.values()), "FOV statistics without the plate's and without the mark"
    return "untouched"


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_kill_9_during_preprocess_leaves_the_plate_untouched_marked_or_complete(tmp_path, write_plate):
    source = tmp_path / "source.zarr"
    write_plate(source, shape=(2, 1, 16, 16), fovs=FOVS, channels=["GFP", "Mito"])
    args = ["--num_workers=1", "--block_size=4"]
    reference_path = tmp_path / "reference.zarr"
    shutil.copytree(source, reference_path)
    generate_normalization_metadata(reference_path, num_workers=1, grid_spacing=4)
    with open_ome_zarr(reference_path, mode="r") as plate:
        reference = {
            "plate": plate.zattrs["normalization"],
            "fovs": {name: pos.zattrs["normalization"] for name, pos in plate.positions()},
        }

    rng = random.Random(0)
    outcomes = []
    points = [("started", rng.uniform(0.0, 2.0)), ("pending", 0.0), ("pending", rng.uniform(0.0, 0.3))]
    points += [("started", rng.uniform(2.0, 6.0))]
    for i, (after, delay) in enumerate(points):
        path = tmp_path / f"plate_{i}.zarr"
        shutil.copytree(source, path)
        process = _start(["preprocess", f"--data_path={path}", *args], tmp_path)
        condition = (lambda: True) if after == "started" else (lambda: NORM_META_PENDING_KEY in _plate_attrs(path))
        killed = _kill_when(process, condition, delay)
        state = _preprocess_state(path, reference)
        outcomes.append((after, round(delay, 3), killed, state))
        generate_normalization_metadata(path, num_workers=1, grid_spacing=4)  # the re-run finishes it
        assert _preprocess_state(path, reference) == "complete"
    # the mark was seen at least once: the kills did land inside the write phase
    assert any(state == "pending" for *_, state in outcomes), outcomes


# ---------------------------------------------------------------------------------------------- predict
def _predict_config(tmp_path, store, overwrite):
    import vu_toys

    writer = {
        "class_path": "viscy_utils.callbacks.embedding_writer.EmbeddingWriter",
        "init_args": {"output_path": str(store), "overwrite": overwrite},
    }
    config = vu_toys.toy_config(
        tmp_path,
        data={"num_samples": 3000, "batch_size": 50, "item_delay": 0.0005},
        model={"two_outputs": True},
        callbacks=[writer],
        name="predict.yml",
    )
    return config


def _store_state(store, expected_rows):
    """'absent' or the store's row count; a store that exists must be complete and readable."""
    if not store.exists():
        return "absent"
    adata = ad.read_zarr(store)
    assert adata.n_obs == expected_rows and adata.obsm["X_projections"].shape == (expected_rows, 3)
    assert np.isfinite(adata.X).all()
    return adata.n_obs


@pytest.mark.slow
@pytest.mark.timeout(1500)
@pytest.mark.parametrize("previous", [False, True], ids=["new_store", "replacing_a_store"])
def test_kill_9_during_predict_leaves_no_partial_embeddings(tmp_path, toys, monkeypatch, previous):
    monkeypatch.setattr(sys, "argv", ["viscy"])
    monkeypatch.chdir(tmp_path)  # without a logger, the in-process runs save their config.yaml in the working directory
    from viscy_utils.cli import run_cli

    store = tmp_path / "embeddings.zarr"
    config = _predict_config(tmp_path, store, overwrite=previous)
    predict = ["predict", "-c", config, "--return_predictions=false", "--trainer.logger=false"]
    if previous:
        run_cli(predict)  # the previous complete state
        before = ad.read_zarr(store).X.copy()
    rng = random.Random(1)
    points = [("started", rng.uniform(1.0, 8.0)), ("writing", rng.uniform(0.0, 0.02))]
    outcomes = []
    for after, delay in points:
        process = _start(predict, tmp_path)

        def writing():
            return any(p.name.startswith(f".{store.name}.tmp-") for p in tmp_path.iterdir())

        killed = _kill_when(process, (lambda: True) if after == "started" else writing, delay)
        state = _store_state(store, 3000)
        outcomes.append((after, round(delay, 3), killed, state))
        if previous and state != "absent":
            assert ad.read_zarr(store).X.shape == before.shape  # the old store or the new one, both complete
        if previous or state == "absent":
            run_cli(predict)  # the re-run finishes it
        assert _store_state(store, 3000) == 3000
        if not previous:
            shutil.rmtree(store)  # the next kill point starts without a store again
        leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(f".{store.name}.tmp-")]
        assert not leftovers, leftovers  # a re-run clears what a killed write left behind
    assert any(after == "writing" and killed for after, _, killed, _ in outcomes), outcomes
