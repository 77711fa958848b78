"""Runs that did nothing, or were stopped, never end as a success."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from viscy_utils.callbacks.run_guard import EmptyEpochError
from viscy_utils.cli import EXIT_SIGINT, EXIT_SIGTERM, run_cli

TESTS_DIR = Path(__file__).resolve().parent


@pytest.fixture(autouse=True)
def _argv(monkeypatch, toys):
    monkeypatch.setattr(sys, "argv", ["viscy"])


def _config(tmp_path, **kwargs):
    import vu_toys

    return vu_toys.toy_config(tmp_path, **kwargs)


def test_fit_without_any_training_batch_fails(tmp_path):
    # Lightning logs "No training batches" and returns: the run looked like a success
    with pytest.raises(EmptyEpochError, match="no training step"):
        run_cli(["fit", "-c", _config(tmp_path, data={"num_samples": 0})])
    assert not list(tmp_path.rglob("*.ckpt"))


def test_an_epoch_without_batches_fails_before_its_checkpoint(tmp_path):
    # a length-less loader that yields nothing: Lightning runs the epoch and would save last.ckpt at step 0
    with pytest.raises(EmptyEpochError, match="epoch 0 ended without a single training batch"):
        run_cli(["fit", "-c", _config(tmp_path, data={"num_samples": 0, "iterable": True})])
    assert not list(tmp_path.rglob("*.ckpt"))


def test_a_normal_fit_passes_the_guard(tmp_path):
    cli = run_cli(["fit", "-c", _config(tmp_path)])
    assert cli.trainer.global_step == 4
    assert (tmp_path / "ckpt" / "last.ckpt").is_file()


def _start(tmp_path, subcommand, config, *extra):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen(
        [sys.executable, "-m", "viscy_utils.cli", subcommand, "-c", config, *extra],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # a shell that starts the test run in the background ignores SIGINT, and children inherit that; a user's
        # `dynaclr fit` in a terminal gets Python's default KeyboardInterrupt handler, so the child gets it too
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _wait_for(path, process, timeout=240):
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(f"exited early with {process.returncode}: {process.communicate()[1][-3000:]}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"{path} never appeared")
        time.sleep(0.1)


def _touch(path, batches=1):
    return {"class_path": "vu_toys.TouchAfterBatches", "init_args": {"path": str(path), "batches": batches}}


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize(("signum", "status"), [(signal.SIGTERM, EXIT_SIGTERM), (signal.SIGINT, EXIT_SIGINT)])
def test_a_signal_stops_fit_with_a_failure_status(tmp_path, signum, status):
    # SIGTERM (what a scheduler sends) used to exit 0: recorded as a successful job
    started = tmp_path / "started"
    data = {"num_samples": 400, "item_delay": 0.02}
    process = _start(tmp_path, "fit", _config(tmp_path, data=data, callbacks=[_touch(started)]))
    _wait_for(started, process)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == status, stderr[-3000:]
    assert f"viscy fit: interrupted by {signal.Signals(signum).name}; the run did not finish" in stderr


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sigterm_stops_predict_before_it_writes_embeddings(tmp_path):
    started = tmp_path / "started"
    store = tmp_path / "embeddings.zarr"
    writer = {
        "class_path": "viscy_utils.callbacks.embedding_writer.EmbeddingWriter",
        "init_args": {"output_path": str(store)},
    }
    config = _config(
        tmp_path,
        data={"num_samples": 400, "item_delay": 0.02},
        callbacks=[_touch(started), writer],
    )
    process = _start(tmp_path, "predict", config, "--model.init_args.two_outputs=true", "--return_predictions=false")
    _wait_for(started, process)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    # Lightning's predict loop ignores SIGTERM: the run went on and wrote a store, then exited 0
    assert process.returncode == EXIT_SIGTERM, stderr[-3000:]
    assert "viscy predict: interrupted by SIGTERM" in stderr
    assert not store.exists()
