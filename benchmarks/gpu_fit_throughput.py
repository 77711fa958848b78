"""End-to-end ``dynaclr fit`` throughput of the example multi-experiment config, and where the time goes.

Runs ``dynaclr fit`` (the real command line, in this process) with
``applications/dynaclr/examples/configs/multi_experiment_fit.yml``: its model (ConvNeXt-tiny contrastive
encoder, NT-Xent with hard negatives), batch size, read/crop geometry (384 x 384 read, 160 x 160 final),
sampling, normalisations and augmentations, which run on the device in ``on_after_batch_transfer``. Only the
paths change: two realistic experiments (``realistic_plate.py``: float32 label-free channel with
unquantised camera noise, Poisson fluorescence counts, 16 FOVs x 20 timepoints each, Z deep enough for the
config's 30 planes, pooled frames so that they fit on disk), rechunked by ``viscy rechunk`` with its
defaults (``--layout original`` reads iohub's default layout instead), no validation, no logger or
checkpoints, one device, ``--steps`` timed steps after ``--warmup`` steps.

Per step it times (synchronising the device at each boundary, so the numbers add up to the step):

- read: waiting for the loader (patch reads + collation in the loader threads, not hidden by compute);
- H2D: ``transfer_batch_to_device``;
- transforms: ``on_after_batch_transfer`` (normalisation, augmentations, crop, channel dropout);
- fwd/bwd: forward, loss, backward and optimiser step (``on_train_batch_start`` -> ``on_train_batch_end``).

and prints steps/s and samples/s (anchors; each comes with its positive).

Run on a CUDA machine: ``uv run python benchmarks/gpu_fit_throughput.py`` (``--num-workers``, ``--size``,
``--layout``, ``--steps`` as needed). Without a GPU, ``--smoke`` runs the same pipeline on CPU with small
plates, batch 4 and 3 steps, to check that everything is wired (its numbers are not a benchmark).
"""

from viscy_utils.cpu_runtime import tune_cpu_runtime

tune_cpu_runtime()

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch
import yaml
from _common import load
from lightning.pytorch import Callback

CONFIG = Path(__file__).parents[1] / "applications/dynaclr/examples/configs/multi_experiment_fit.yml"
STAGES = ("read", "H2D", "transforms", "fwd/bwd")


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class StageTimer(Callback):
    """Wall time per training-step stage, device synchronised at every boundary.

    Parameters
    ----------
    warmup : int
        Steps left out of the totals (start-up, cuDNN autotuning, opening stores).
    """

    #: every timer created in this process (the trainer instantiates it from the config)
    instances: list["StageTimer"] = []

    def __init__(self, warmup: int = 2) -> None:
        StageTimer.instances.append(self)
        self.warmup = warmup
        self.times: dict[str, list[float]] = defaultdict(list)
        self._step_end: float | None = None
        self._step_start = 0.0
        self._pending: dict[str, float] = {}

    def _timed(self, name: str, fn):
        def wrapper(*args, **kwargs):
            _sync()
            start = time.perf_counter()
            if name == "H2D" and self._step_end is not None:
                self._pending["read"] = start - self._step_end
            out = fn(*args, **kwargs)
            _sync()
            self._pending[name] = time.perf_counter() - start
            return out

        return wrapper

    def setup(self, trainer, pl_module, stage: str) -> None:
        """Wrap the batch-transfer hooks Lightning calls (instance attributes take precedence)."""
        pl_module.transfer_batch_to_device = self._timed("H2D", pl_module.transfer_batch_to_device)
        dm = trainer.datamodule
        dm.on_after_batch_transfer = self._timed("transforms", dm.on_after_batch_transfer)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        """Start timing forward/backward."""
        _sync()
        self._step_start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        """Record the step's stages."""
        _sync()
        now = time.perf_counter()
        self._pending["fwd/bwd"] = now - self._step_start
        if batch_idx >= self.warmup and "read" in self._pending:
            for stage in STAGES:
                self.times[stage].append(self._pending.get(stage, 0.0))
        self._pending = {}
        self._step_end = now


def _config(experiments_yaml: Path, args, root: Path) -> dict:
    config = yaml.safe_load(CONFIG.read_text())
    depth = config["model"]["init_args"]["encoder"]["init_args"]["in_stack_depth"]
    data = config["data"]["init_args"]
    data.update(
        experiments_yaml=str(experiments_yaml),
        z_range=[0, depth],
        val_experiments=[],
        num_workers=args.num_workers,
    )
    trainer = config["trainer"]
    trainer.update(
        accelerator="cpu" if args.smoke else "gpu",
        devices=1,
        strategy="auto",
        max_steps=args.warmup + args.steps,
        max_epochs=-1,
        logger=False,
        callbacks=[{"class_path": "gpu_fit_throughput.StageTimer", "init_args": {"warmup": args.warmup}}],
        enable_checkpointing=False,
        enable_progress_bar=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        default_root_dir=str(root / "fit"),
    )
    if args.smoke:
        data.update(batch_size=4, yx_patch_size=[192, 192])
    if args.batch_size:
        data["batch_size"] = args.batch_size
    config["model"]["init_args"]["log_batches_per_epoch"] = 0
    return config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="CPU, small plates, batch 4, 3 steps: a wiring check")
    parser.add_argument(
        "--size", type=int, default=512, help="FOV size of the realistic plates (2048: ~40 GB of pooled plates)"
    )
    parser.add_argument("--layout", choices=("rechunked", "original"), default="rechunked")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 30; 3 with --smoke)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed first steps (default 5; 1 with --smoke)")
    parser.add_argument("--num-workers", type=int, default=min(12, os.cpu_count() or 1))
    parser.add_argument("--batch-size", type=int, default=None, help="anchors per step (default: the config's)")
    args = parser.parse_args()
    args.steps = args.steps or (3 if args.smoke else 30)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.smoke else 5)
    if not args.smoke and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run on a GPU machine, or use --smoke for a CPU wiring check")
    sys.path.insert(0, str(Path(__file__).parent))  # the StageTimer class path
    from realistic_plate import PlateSpec, build_experiments

    from dynaclr.cli import main as dynaclr_main

    depth = yaml.safe_load(CONFIG.read_text())["model"]["init_args"]["encoder"]["init_args"]["in_stack_depth"]
    if args.smoke:
        spec = PlateSpec(size=256, n_t=6, n_z=depth, fovs_per_well=1, distinct_frames=4)
    else:
        spec = PlateSpec(size=args.size, n_z=depth, distinct_frames=16)
    configs = build_experiments(spec)[args.layout]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        experiments = root / "experiments.yml"
        experiments.write_text(yaml.safe_dump({"experiments": [dataclasses.asdict(c) for c in configs]}))
        config = _config(experiments, args, root)
        (root / "fit.yml").write_text(yaml.safe_dump(config))
        sys.argv = ["dynaclr", "fit", "-c", str(root / "fit.yml")]
        start = time.perf_counter()
        try:
            dynaclr_main()
        except SystemExit as exit_:
            if exit_.code not in (0, None):
                raise
        wall = time.perf_counter() - start
    # the trainer built its StageTimer from the class path, i.e. in the module ``gpu_fit_throughput``
    import gpu_fit_throughput

    report(args, config, wall, gpu_fit_throughput.StageTimer.instances[-1])


def report(args, config: dict, wall: float, timer: StageTimer) -> None:
    """Print steps/s, samples/s and the time per stage."""
    times = timer.times
    if not times:
        raise SystemExit("no timed steps recorded (increase --steps)")
    steps = len(times["fwd/bwd"])
    total = sum(sum(v) for v in times.values())
    batch = config["data"]["init_args"]["batch_size"]
    device = torch.cuda.get_device_name() if torch.cuda.is_available() and not args.smoke else "CPU"
    print(
        f"\n{device}; layout {args.layout}; batch {batch} anchors (+ positives); {steps} timed steps; "
        f"loader threads {config['data']['init_args']['num_workers']}; {load()}"
    )
    print(f"  {steps / total:.2f} steps/s, {steps * batch / total:.1f} samples/s (whole run {wall:.0f} s)")
    for stage in STAGES:
        seconds = sum(times[stage])
        print(f"  {stage:<11}{1000 * seconds / steps:8.1f} ms/step  ({seconds / total:5.1%})")
    if args.smoke:
        print("  (--smoke: a CPU wiring check, not a benchmark)")


if __name__ == "__main__":
    main()
