"""Choose DynaCLR's training settings for `dynaclr demo` on the VALIDATION experiment only.

Trains DynaCLR with each candidate setting and seed on the demo's data (the full preset, data seed 0), embeds
the training experiments and the validation experiment, and appends the read-outs to ``validation_sweep.jsonl``.
The test experiment is never embedded here. Usage (from the repository root)::

    uv run python applications/dynaclr/examples/demo_results/validation_sweep.py OUT_DIR NAME KEY=VALUE ... --seeds 0 1

``KEY`` is a dotted path into the fit config (e.g. ``data.init_args.tau_range=[0.5,3.0]``).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

import yaml

from dynaclr.demo import run as demo
from dynaclr.demo.data import PRESETS, write_demo_dataset
from dynaclr.run_configs import write_config


def _set(config: dict, dotted: str, value) -> None:
    *parents, leaf = dotted.split(".")
    for key in parents:
        config = config[key]
    config[leaf] = value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("name")
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = parser.parse_args()

    from viscy_utils.cpu_runtime import tune_cpu_runtime

    tune_cpu_runtime()
    preset = PRESETS[False]
    data_dir = args.out / "data"
    dataset = write_demo_dataset(data_dir, seed=0, progress=False, **preset["data"])
    names = [*dataset.train_experiments, dataset.validation]
    template = yaml.safe_load(demo.demo_config_path().read_text())
    for override in args.overrides:
        key, value = override.split("=", 1)
        _set(template, key, yaml.safe_load(value))
    for seed in args.seeds:
        run_dir = args.out / f"{args.name}_seed{seed}"
        config = demo._fit_config(
            template, run_dir, dataset.experiments_yaml, dataset.validation, preset["max_epochs"], seed
        )
        start = time.perf_counter()
        demo._run_cli(["fit", "-c", str(write_config(config, run_dir / "configs" / "fit.yml"))])
        labelled, _ = demo._embed(config, run_dir / "checkpoints" / "last.ckpt", names, run_dir, dataset)
        scores = demo._score(labelled, dataset.train_experiments, dataset.validation)
        record = {
            "name": args.name,
            "overrides": args.overrides,
            "seed": seed,
            "scored_experiment": dataset.validation,
            "max_epochs": preset["max_epochs"],
            **asdict(scores),
            "seconds": round(time.perf_counter() - start, 1),
        }
        print(json.dumps(record))
        with open(Path(__file__).with_name("validation_sweep.jsonl"), "a") as log:
            log.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
