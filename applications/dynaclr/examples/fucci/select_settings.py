"""Choose the FUCCI training settings on the validation lineages only; the test lineage is never scored here.

Trains once per anchor-positive offset range (``tau_range``, hours) for the largest epoch count, keeps a
checkpoint every epoch, embeds every cell with the checkpoints of the listed epochs and prints the
validation balanced accuracy of the phase probe (fitted on the training lineage) for each::

    python applications/dynaclr/examples/fucci/select_settings.py --output-dir fucci_select \\
        --tau-range 0.25 1.0 --tau-range 0.5 3.0 --epochs 5 10 20 40 60

The selection behind ``fit.yml`` (seed 0, run with a draft of this script doing the same steps) gave
validation balanced accuracies by epoch:

    tau 0.25-1.0 h:  5: 0.489  10: 0.696  20: 0.894  40: 0.857  60: 0.857
    tau 0.5-3.0 h:   5: 0.549  10: 0.671  20: 0.811  40: 0.825  60: 0.822

so ``fit.yml`` trains 20 epochs with tau 0.25-1.0 h.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import yaml

from dynaclr.run_configs import write_config

HERE = Path(__file__).resolve().parent


def _example():
    spec = importlib.util.spec_from_file_location("run_fucci", HERE / "run_fucci.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["run_fucci"] = module
    spec.loader.exec_module(module)
    return module


def validation_accuracy(features: np.ndarray, cells) -> float:
    """Balanced accuracy of the phase probe on the validation lineages (fitted on the training lineage)."""
    from sklearn.metrics import balanced_accuracy_score

    from dynaclr.evaluation.baselines import fit_linear_probe

    split = cells["split"].to_numpy()
    train, val = split == "train", split == "val"
    phase, groups = cells["phase"].to_numpy(), cells["track_id"].to_numpy()
    probe = fit_linear_probe(features[train], phase[train], groups[train])
    return round(float(balanced_accuracy_score(phase[val], probe.predict(features[val]))), 4)


def main(argv: list[str] | None = None) -> None:
    import anndata

    from viscy_utils.cli import run_cli

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", type=Path, default=Path("fucci_select"))
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "viscy" / "fucciphase-0.1.0")
    parser.add_argument("--tau-range", type=float, nargs=2, action="append", metavar=("MIN_H", "MAX_H"))
    parser.add_argument("--epochs", type=int, nargs="+", default=[5, 10, 20, 40, 60])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter", category=UserWarning)
    example = _example()
    out = args.output_dir.absolute()
    data = out / "data"
    data.mkdir(parents=True)
    prepared = example.prepare(example.fetch(args.cache_dir), data, None)
    run_cli(["preprocess", "--data_path", str(prepared.plate), "--channel_names", "[magenta, cyan]"], prog="dynaclr")
    template = yaml.safe_load((HERE / "fit.yml").read_text())
    results = {}
    for tau in args.tau_range or [[0.25, 1.0]]:
        tag = f"tau_{tau[0]}-{tau[1]}"
        config = example.fit_config(template, out / tag, prepared.experiments_fit, args.seed, max(args.epochs))
        config["data"]["init_args"]["tau_range"] = list(tau)
        checkpoint = {"dirpath": str(out / tag / "checkpoints"), "every_n_epochs": 1, "save_top_k": -1}
        config["trainer"]["callbacks"] = [
            {
                "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                "init_args": {**checkpoint, "filename": "{epoch}"},
            }
        ]
        run_cli(["fit", "-c", str(write_config(config, out / tag / "fit.yml"))], prog="dynaclr")
        results[tag] = {}
        for epochs in args.epochs:
            store = out / tag / f"embeddings_epoch{epochs}.zarr"
            ckpt = out / tag / "checkpoints" / f"epoch={epochs - 1}.ckpt"
            predict = example.predict_config(config, prepared.experiments_all, store, ckpt, out / tag / f"log{epochs}")
            run_cli(["predict", "-c", str(write_config(predict, out / tag / f"predict{epochs}.yml"))], prog="dynaclr")
            adata = anndata.read_zarr(store)
            cells = example.labelled(adata.obs.reset_index(drop=True), prepared.truth)
            results[tag][epochs] = validation_accuracy(np.asarray(adata.X), cells)
            print(f"{tag} epochs {epochs}: validation phase balanced accuracy {results[tag][epochs]}", flush=True)
    (out / "validation.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
